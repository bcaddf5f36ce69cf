"""Text normalisation before rule matching, with a map back to the original text.

Evasion tricks change how text looks, not what it says: full-width letters (ｉｇｎｏｒｅ),
upper case, zero-width characters between letters, accents and "zalgo" marks, Cyrillic
look-alikes, spaces between Chinese characters (制 作 炸 弹). Rules are matched against a
normalised form that undoes these, and every normalised character remembers the code point of
the original it came from, so a hit can name its place in what the caller actually sent.

The normalisation is character by character, so it also works incrementally on a stream
(:class:`StreamNormalizer`), which output moderation needs to stay linear in the answer length.
"""

from __future__ import annotations

import ctypes
import re
import threading
import unicodedata
from array import array
from collections.abc import Sequence
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from aigc_safety.native_library import load_native

try:
    import numpy as _np
except ImportError:  # then every text takes str.translate and the index map the stream loop
    _np = None  # type: ignore[assignment]

# Look-alikes from Cyrillic and Greek that pass for Latin letters after case folding. Kept small
# on purpose: these are the ones seen in evasion attempts; a full confusables table comes later.
_CONFUSABLES = str.maketrans(
    {
        "а": "a",
        "е": "e",
        "о": "o",
        "р": "p",
        "с": "c",
        "у": "y",
        "х": "x",
        "і": "i",
        "ј": "j",
        "ѕ": "s",
        "ԁ": "d",
        "ο": "o",
        "ν": "v",
        "ι": "i",
        "ɡ": "g",
    }
)

# Invisible characters: controls (Cc), format characters such as ZWSP, ZWJ, ZWNJ, word joiner,
# BOM, soft hyphen and bidi overrides (Cf), and combining marks (Mn, Me), which carry accents and
# zalgo noise. Whitespace is handled before this check, so newlines and tabs are not dropped.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Mn", "Me"})


_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2EBEF),
    (0xF900, 0xFAFF),
    (0x3040, 0x30FF),
    (0xAC00, 0xD7AF),
)
_CJK = "".join(f"{chr(low)}-{chr(high)}" for low, high in _CJK_RANGES)  # is_cjk, as a class


def is_cjk(ch: str) -> bool:
    """True for Han ideographs, kana and Hangul: scripts written without spaces between words
    (``_CJK_RANGES``, spelt out: this runs for every character of a streamed answer)."""
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2EBEF
        or 0xF900 <= cp <= 0xFAFF
        or 0x3040 <= cp <= 0x30FF
        or 0xAC00 <= cp <= 0xD7AF
    )


def _fold(ch: str) -> str:
    """The normalised form of one code point: possibly empty, possibly several characters."""
    if ch.isascii():
        # Fast path: most answers are mostly ASCII, which only needs lower-casing.
        return "" if not ch.isprintable() else ch.lower()
    if unicodedata.category(ch) in _DROPPED_CATEGORIES:
        return ""
    # NFKD then dropping marks strips accents; NFKC then recomposes and folds width variants
    # (full-width Latin, half-width katakana, ideographic space).
    decomposed = unicodedata.normalize("NFKD", ch)
    kept = "".join(c for c in decomposed if unicodedata.category(c) not in _DROPPED_CATEGORIES)
    return unicodedata.normalize("NFKC", kept).casefold().translate(_CONFUSABLES)


# A pure function of one code point, so memoised: texts repeat the same few thousand characters.
_fold_cached = lru_cache(maxsize=65536)(_fold)


class NormalizedText:
    """Normalised text and, per normalised character, the original code point it came from.

    The index map is only needed when something matched, which is rare; :func:`normalize` leaves
    it to be computed on first use from the original text (``original``)."""

    __slots__ = ("_offsets", "_original", "_source", "text")

    def __init__(
        self, text: str, offsets: Sequence[int] | None = None, *, original: str = "", source: Any = None
    ) -> None:
        self.text = text
        self._offsets = offsets
        self._original = original
        self._source = source  # the index map as a numpy array, when the vectorised fold made it

    @property
    def offsets(self) -> Sequence[int]:
        if self._offsets is None:
            source = self._source
            if source is None:
                if _np is None:
                    normalizer = StreamNormalizer()
                    normalizer.feed(self._original)
                    self._offsets = normalizer.view().offsets
                    return self._offsets
                source = _fold_with_map(self._original)[1]
            self._offsets = source.tolist()
        return self._offsets

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NormalizedText):
            return NotImplemented
        return self.text == other.text and list(self.offsets) == list(other.offsets)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"NormalizedText({self.text!r})"

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Maps a non-empty [start, end) range of the normalised text to the original text."""
        offsets = self.offsets
        return offsets[start], offsets[end - 1] + 1


class _FoldTable(dict[int, str]):
    """``str.translate`` table: code point -> its normalised form ("" drops it, whitespace -> " "),
    filled on first sight of each code point (a memo of a pure function)."""

    def __missing__(self, cp: int) -> str:
        ch = chr(cp)
        out = " " if ch.isspace() else _fold(ch)
        out = "".join(" " if c.isspace() else c for c in out)
        self[cp] = out
        return out


_FOLD_TABLE = _FoldTable()


# Texts at least this long and not pure ASCII take the vectorised fold: str.translate leaves its
# fast path at the first non-ASCII character and then costs ~0.1 us a character (1,700 characters
# of Chinese: ~200 us), the arrays ~100 us, most of it the fixed cost of some 25 numpy calls, which
# shorter texts do not repay. ASCII text stays with translate (~4 us for 1,700 characters).
VECTOR_FOLD_MIN_CHARS = 512
_UNKNOWN = 255


class _FoldArrays:
    """The fold table as arrays over all code points, for whole-text numpy operations: per code
    point the length of its normalised form and where that form starts in one flat array of
    output code points. Filled on first sight of each code point, like ``_FOLD_TABLE``."""

    def __init__(self) -> None:
        np = _np
        self.lengths = np.full(0x110000, _UNKNOWN, dtype=np.uint8)  # 1.1 MB
        self.starts = np.zeros(0x110000, dtype=np.uint32)  # 4.5 MB
        self.flat = np.zeros(1024, dtype=np.uint32)  # grows by doubling; only the used part is read
        self._used = 0
        self.cjk = np.zeros(0x110000, dtype=bool)  # 1.1 MB
        for low, high in _CJK_RANGES:
            self.cjk[low : high + 1] = True
        self._lock = threading.Lock()
        # For the compiled fold: the addresses of the arrays that never move (flat grows).
        self.addresses = (self.lengths.ctypes.data, self.starts.ctypes.data, self.cjk.ctypes.data)

    def lengths_of(self, codes: Any) -> Any:
        lengths = self.lengths[codes]
        if (lengths == _UNKNOWN).any():
            with self._lock:
                unknown = _np.unique(codes[self.lengths[codes] == _UNKNOWN]).tolist()
                forms = {cp: _FOLD_TABLE[cp] for cp in unknown}
                outputs = [ord(c) for form in forms.values() for c in form]
                used = self._used
                flat = self.flat
                if used + len(outputs) > len(flat):
                    flat = _np.zeros(max(2 * len(flat), used + len(outputs)), dtype=_np.uint32)
                    flat[:used] = self.flat[:used]
                flat[used : used + len(outputs)] = outputs
                # The outputs are in place before any reader can see their lengths.
                self.flat, self._used = flat, used + len(outputs)
                for cp, form in forms.items():
                    self.starts[cp] = used
                    self.lengths[cp] = len(form)
                    used += len(form)
            lengths = self.lengths[codes]
        return lengths


_fold_arrays: _FoldArrays | None = None

FOLD_LIBRARY = Path(__file__).resolve().parent / "native" / "libaigc_fold.so"
"""The compiled fold, built by ``scripts/build-native.sh``; optional."""


def _native_fold() -> Any:
    """The compiled fold (native/fold.c), or None when it is off, not built or numpy is missing."""
    return _load_fold() if _fold_enabled else None


@cache
def _load_fold() -> Any:
    if _np is None:
        return None
    functions = load_native(
        FOLD_LIBRARY, "aigc_fold_abi", 1, ["aigc_fold"], "normaliser", "folding with numpy"
    )
    if functions is None:
        return None
    (fold,) = functions
    fold.restype = ctypes.c_int64
    fold.argtypes = [
        ctypes.c_char_p,  # code points, UTF-32-LE
        ctypes.c_int64,
        *[ctypes.c_void_p] * 3,  # lengths, starts, flat
        ctypes.c_int64,
        *[ctypes.c_void_p] * 3,  # cjk, out, source
        ctypes.c_int64,
    ]
    return fold


_fold_enabled = True


def use_native_fold(enabled: bool) -> None:
    """Turns the compiled fold on or off for the whole process (setting ``fold_native``)."""
    global _fold_enabled
    _fold_enabled = enabled


def folding_path() -> str:
    """How texts that are not pure ASCII are folded: ``native``, ``numpy`` (from
    :data:`VECTOR_FOLD_MIN_CHARS` characters) or ``python``; all give the same result."""
    return "native" if _native_fold() is not None else ("numpy" if _np is not None else "python")


def _fold_with_map(original: str) -> tuple[str, Any]:
    """``normalize(original).text`` and its index map, compiled when built, else with numpy."""
    fold = _native_fold()
    if fold is None:
        return _vector_fold(original)
    global _fold_arrays
    if _fold_arrays is None:
        _fold_arrays = _FoldArrays()
    arrays = _fold_arrays
    data = original.encode("utf-32-le", "surrogatepass")
    n = len(data) // 4
    capacity = 2 * n + 16
    lengths, starts, cjk = arrays.addresses
    while True:
        flat = arrays.flat  # held for the call: a concurrent fill may replace it
        out, source = array("I", bytes(4 * capacity)), array("i", bytes(4 * capacity))
        count = fold(data, n, lengths, starts, flat.ctypes.data, len(flat), cjk, out.buffer_info()[0],
                     source.buffer_info()[0], capacity)  # fmt: skip
        if count >= 0:
            return str(memoryview(out)[:count], "utf-32-le", "surrogatepass"), source[:count]
        if count == -2:  # forms longer than two characters each: room for the longest there is
            capacity = 18 * n + 16
        else:  # a code point seen for the first time: fill the tables, as numpy would
            arrays.lengths_of(_np.frombuffer(data, dtype=_np.uint32))


def _vector_fold(original: str) -> tuple[str, Any]:
    """``normalize(original).text`` and its index map (a numpy array), with whole-array operations:
    each code point is replaced by its normalised form, then every whitespace run becomes one
    space kept only between two visible characters neither of which is CJK, carrying the index
    of the run's first character, exactly as the stream normaliser decides."""
    global _fold_arrays
    np = _np
    if _fold_arrays is None:
        _fold_arrays = _FoldArrays()
    arrays = _fold_arrays
    codes = np.frombuffer(original.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    lengths = arrays.lengths_of(codes)
    flat = arrays.flat
    if (lengths == 1).all():
        folded = flat[arrays.starts[codes]]
        source = np.arange(len(codes))
    else:
        counts = lengths.astype(np.intp)
        source = np.repeat(np.arange(len(codes)), counts)
        within = np.arange(len(source)) - np.repeat(np.cumsum(counts) - counts, counts)
        folded = flat[np.repeat(arrays.starts[codes].astype(np.intp), counts) + within]
    space = folded == ord(" ")  # the fold table turns every kind of whitespace into " "
    keep = ~space
    if space.any():
        after_space = np.concatenate(([False], space[:-1]))
        before_space = np.concatenate((space[1:], [False]))
        starts = np.flatnonzero(space & ~after_space)
        ends = np.flatnonzero(space & ~before_space) + 1
        inside = (starts > 0) & (ends < len(folded))
        starts, ends = starts[inside], ends[inside]
        cjk = arrays.cjk[folded[starts - 1]] | arrays.cjk[folded[ends]]
        keep[starts[~cjk]] = True
        folded, source = folded[keep], source[keep]
    return folded.tobytes().decode("utf-32-le", "surrogatepass"), source


_SPACE_RUNS = re.compile(" {2,}")
_SPACE_NEXT_TO_CJK = re.compile(f"(?<=[{_CJK}]) | (?=[{_CJK}])")


class StreamNormalizer:
    """Normalises text fed in pieces; the result equals normalising the concatenation at once.

    Whitespace runs become one space, and whitespace next to a CJK character is dropped (those
    scripts do not separate words, so a space there is only ever an evasion). Whether a space is
    kept depends on the next visible character, so a trailing space is held until it arrives.
    """

    def __init__(self) -> None:
        self._text = ""  # normalised text of earlier feeds
        self._new: list[str] = []  # characters of the current feed, joined once at its end
        self._last = ""  # last normalised character emitted
        self._offsets: list[int] = []
        self._consumed = 0
        self._pending_space = -1  # original offset of held whitespace; -1 when none

    @property
    def text(self) -> str:
        """Normalised text so far (a held trailing space is not part of it)."""
        return self._text

    def __len__(self) -> int:
        return len(self._text)

    def feed(self, piece: str) -> None:
        """Normalises ``piece``, the next part of the original text."""
        # The hot loop of every check: state lives in locals and the common case (one visible
        # character folds to one character) takes no calls besides the cached fold.
        fold = _fold_cached
        new, offsets = self._new, self._offsets
        last, pending = self._last, self._pending_space
        index = self._consumed
        for ch in piece:
            if ch.isspace():
                if pending < 0:
                    pending = index
                index += 1
                continue
            for out in fold(ch):
                if out.isspace():  # NFKC can produce spaces, e.g. from U+00A8 DIAERESIS
                    if pending < 0:
                        pending = index
                    continue
                if pending >= 0:
                    if last and not is_cjk(last) and not is_cjk(out):
                        new.append(" ")
                        offsets.append(pending)
                    pending = -1
                new.append(out)
                offsets.append(index)
                last = out
            index += 1
        self._consumed, self._last, self._pending_space = index, last, pending
        self._text += "".join(new)
        new.clear()

    def result(self) -> NormalizedText:
        """A snapshot of what has been normalised so far."""
        return NormalizedText(self.text, tuple(self._offsets))

    def view(self) -> NormalizedText:
        """Like :meth:`result` without copying the index map; valid only until the next ``feed``.
        Streaming checks take one per delta, so copying would make a long answer quadratic."""
        return NormalizedText(self.text, self._offsets)


# Code points most text is made of: Latin with its accents, general punctuation, CJK symbols and
# punctuation, the CJK Unified Ideographs block and the full- and half-width forms.
_COMMON_RANGES = ((0x0000, 0x0250), (0x2000, 0x2070), (0x3000, 0x3040), (0x4E00, 0xA000), (0xFF00, 0xFFF0))


def warm_up() -> None:
    """Folds the common code points ahead of traffic (about 0.3 s): otherwise a check pays some
    10 us for every character it is the first to see, and the first long non-ASCII text builds
    the vectorised fold's arrays (and numpy's lazily imported modules) inside its latency."""
    sample = "".join(chr(cp) for low, high in _COMMON_RANGES for cp in range(low, high))
    sample.translate(_FOLD_TABLE)
    if _np is not None:
        _fold_with_map(sample)


def normalize(text: str) -> NormalizedText:
    """Normalises ``text`` for rule matching: NFKC width folding, case folding, accents, zero-width
    and control characters removed, look-alikes mapped, whitespace collapsed, index map kept.

    Equal to feeding ``text`` to a :class:`StreamNormalizer` (tests hold them equal), but done in
    one compiled pass for text that is not pure ASCII (``native/fold.c``; without it numpy for long
    texts) and with ``str.translate`` and two regular expressions for the rest."""
    if not text.isascii():
        if _native_fold() is not None:
            folded, source = _fold_with_map(text)
            return NormalizedText(folded, original=text, source=source)
        if _np is not None and len(text) >= VECTOR_FOLD_MIN_CHARS:
            folded, source = _vector_fold(text)
            return NormalizedText(folded, original=text, source=source)
    folded = _SPACE_RUNS.sub(" ", text.translate(_FOLD_TABLE)).strip(" ")
    return NormalizedText(_SPACE_NEXT_TO_CJK.sub("", folded), original=text)
