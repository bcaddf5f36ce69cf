"""A small bilingual (zh/en) safety classifier the project trains itself: n-gram counts and a
linear model, scored without sklearn.

Rules catch the phrases someone thought of; this model catches paraphrases of them. It runs on
every input, so the artifact is a weight table and scoring is a handful of C-level operations.

**Features** of a normalised text (:func:`text_features`): every character n-gram of order 1 to 4
(Chinese has no spaces to split words on, and English gets prefixes, suffixes and misspellings
for free), every Latin word and every pair of adjacent Latin words ("make a" + "a bomb").

**Score**: ``sigmoid(bias + language_offset + sum(weight of each feature occurrence) / sqrt(number
of feature occurrences))``. Dividing by the square root of the length keeps a long benign document
from adding up to "unsafe" by sheer length. Occurrences the vocabulary does not know still count
in the divisor, so pruning the vocabulary does not change the scale of the rest. The language
offset gives Chinese and English their own operating point at the one shared threshold.

**Two ways to compute the same sum.** Short texts, most of the traffic, go through plain ``dict``
look-ups of n-gram strings (numpy's per-call overhead would dominate there). Long texts go through
numpy (or, when built, one compiled C pass): every character n-gram is hashed to 64 bits and
looked up in two cuckoo tables of the vocabulary's hashes. The hash mixes each code point into the
running value with the splitmix64 finaliser under a key drawn at random for every loaded model, so
nobody can compute, offline, a string whose hash equals a vocabulary n-gram's (with a linear
rolling hash a lattice search finds such 4-grams at once, and a text could then borrow the weight
of "a safe n-gram" it does not contain). All ways give the same features (a 64-bit hash is
compared whole: an accidental false match has probability about 2**-64 per n-gram) and the same
score up to float rounding in the order of summation (about 1e-15). Without numpy every text
takes the first way.

**Category.** A second linear head over the same features names the most likely unsafe category.
It is only computed for texts that score at least ``category_min_score`` (0.25 in the shipped
artifact, half the default threshold): for clearly benign texts the answer would be meaningless,
and skipping it keeps the common case fast.

The artifact is gzip-compressed JSON written by ``services/safety/training/train_classifier.py``,
which builds its training matrix with :func:`text_features` from this module, so training and
serving cannot disagree on what a feature is.
"""

from __future__ import annotations

import ctypes
import gzip
import hashlib
import json
import logging
import math
import re
import secrets
import zlib
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import add
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigc_common.errors import ConfigError
from aigc_safety.native_library import load_native

try:  # numpy speeds up long texts only; the pure-Python path gives the same scores without it
    import numpy
except ImportError:  # pragma: no cover - numpy is installed with the inference stack
    numpy = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import numpy.typing as npt

log = logging.getLogger(__name__)

ARTIFACT_FORMAT = "aigc-safety-ngram-lr"
"""The ``format`` field every artifact carries; anything else is refused at load."""
FORMAT_VERSION = 1
"""Bumped whenever the artifact layout or the meaning of :func:`text_features` changes."""
MODEL_FAMILY = "ngram-lr-1"
"""First part of :attr:`SafetyClassifier.version`; the rest is a hash of the artifact bytes."""
DEFAULT_ARTIFACT = "classifier-v1.json.gz"
"""File name of the artifact shipped in ``aigc_safety/models/``."""

MAX_CHAR_ORDER = 4
"""Longest character n-gram (``_char_grams`` unrolls its loop to this order)."""
WORD_PREFIX = "\x00"
"""Marks word features. Normalised text never contains control characters, so a word feature
cannot collide with a character n-gram made of the same letters."""
LANGUAGES = ("zh", "en")
"""Languages with their own offset; see :func:`detect_language`."""
VECTOR_MIN_CHARS = 64
"""Texts at least this long take the numpy path: below it numpy's fixed per-call cost is larger
than what vectorising saves (measured on the development machine; only speed depends on it)."""
NATIVE_MIN_CHARS = 8
"""With the compiled look-up, texts at least this long take it (its call costs a few us)."""
NATIVE_LIBRARY = Path(__file__).resolve().parent / "native" / "libaigc_ngram.so"
"""The compiled n-gram look-up, built by ``scripts/build-native.sh``; optional."""

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")

_MASK64 = (1 << 64) - 1
_HASH_MULTIPLIER = 0x100000001B3  # FNV-1 64-bit prime (odd)
# Added at each step of the hash, one per n-gram order.
_ORDER_TAGS = (0, 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5)
# Added at each step of a word's hash (words and pairs); no order tag equals it.
_WORD_TAG = 0x2545F4914F6CDD1D
NATIVE_ABI = 4
"""What ``aigc_ngram_abi()`` of a compatible compiled look-up returns (native/ngram.c)."""


def text_features(normalized_text: str) -> list[str]:
    """Every feature occurrence of an already normalised text, with repeats: character 1- to
    4-grams, then Latin words and adjacent word pairs marked with :data:`WORD_PREFIX`. The model
    weighs each occurrence, and the number of occurrences is the score's divisor. Training builds
    its matrix from this; scoring computes the same thing without materialising the list."""
    text = normalized_text
    words = _WORD.findall(text)
    return [
        *chain(*_char_grams(text)),
        *(WORD_PREFIX + w for w in words),
        *(WORD_PREFIX + p for p in _word_pairs(words)),
    ]


def _char_grams(text: str) -> tuple[str, list[str], list[str], list[str]]:
    """The text's character 1- to 4-grams, one sequence per order (the text itself is the
    1-grams). ``map`` over the string and its shifted copies keeps the loops in C: this is the hot
    path of every check."""
    bigrams = list(map(add, text, text[1:]))
    trigrams = list(map(add, bigrams, text[2:]))
    return text, bigrams, trigrams, list(map(add, trigrams, text[3:]))


def _word_pairs(words: list[str]) -> list[str]:
    return list(map(add, map(add, words, repeat(" ")), words[1:]))


def _occurrences(length: int, words: int) -> int:
    """How many features :func:`text_features` yields for a text of ``length`` characters and
    ``words`` Latin words: 1- to 4-grams number 4 * length - 6 once the text has 3 characters."""
    chars = 4 * length - 6 if length >= 3 else (0, 1, 3)[length]
    return chars + words + max(0, words - 1)


def detect_language(normalized_text: str) -> str:
    """``"zh"`` when the text has a CJK character and at least as many non-ASCII characters as
    Latin words, else ``"en"``. It only chooses which language offset applies."""
    return _language(normalized_text, len(_WORD.findall(normalized_text)))


def _language(text: str, word_count: int) -> str:
    if _CJK.search(text) is None:
        return "en"
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    return "zh" if non_ascii >= word_count else "en"


def char_gram_hash(gram: str, key: int) -> int:
    """The 64-bit hash of one character n-gram under ``key``, as the vectorised paths compute it
    over a text: starting from the key, each code point is added to the running value times an
    odd constant plus its order's tag, and the sum goes through the splitmix64 finaliser."""
    h = key
    for order, ch in enumerate(gram, start=1):
        h = _mix((h * _HASH_MULTIPLIER + ord(ch) + _ORDER_TAGS[order]) & _MASK64)
    return h


def word_hash(word: str, key: int) -> int:
    """The 64-bit hash of a word or a word pair ("make a") under ``key``: as
    :func:`char_gram_hash`, with one tag at every step; the compiled pass computes it over the
    text's words."""
    h = key
    for ch in word:
        h = _mix((h * _HASH_MULTIPLIER + ord(ch) + _WORD_TAG) & _MASK64)
    return h


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@dataclass(frozen=True, slots=True)
class ClassifierScore:
    """What the classifier says about one text."""

    unsafe: float
    """Probability-like score in [0, 1]; flag the text when it is >= the model's threshold."""
    category: str
    """Most likely unsafe category, one of :attr:`SafetyClassifier.categories`; "" when the model
    has no category head or the score is below its ``category_min_score`` (clearly benign) or
    below the ``category_from`` the caller asked for."""


class _NativeTables(ctypes.Structure):
    """The C mirror of ``struct aigc_tables`` (native/ngram.c): the tables' parameters and the
    addresses of their arrays, built once per model and passed by reference to every call."""

    _fields_ = [
        ("max_order", ctypes.c_int64),
        ("key", ctypes.c_uint64),
        ("multiplier", ctypes.c_uint64),
        ("tags", ctypes.c_void_p),
        ("word_tag", ctypes.c_uint64),
        ("slots", ctypes.c_void_p),
        ("mask", ctypes.c_uint64),
    ]


@dataclass(frozen=True, slots=True)
class _Native:
    """The compiled library's two entry points."""

    classify: Any
    category: Any


@dataclass(frozen=True, slots=True)
class _Features:
    """What the compiled pass reports about one text."""

    total: float  # summed weights of the known feature occurrences
    words: int
    language: str
    out: array[int]  # the compiled pass's output: the occurrences' table slots from out[4]
    found: int  # how many there are


class _VectorTables:
    """The vocabulary as two cuckoo hash tables of 64-bit hashes, plus the weights in numpy arrays:
    the long-text path. Character n-grams for numpy; words and word pairs too, for the compiled
    pass. Built once at load, read-only afterwards."""

    def __init__(
        self,
        np: Any,
        char_features: Sequence[tuple[str, int]],
        word_features: Sequence[tuple[str, int]],
        weights: Sequence[float],
        native: _Native | None = None,
    ) -> None:
        self.np = np
        while True:  # a fresh key on the (2**-64-likely) event of a clash or of 0, the empty slot
            self.key = secrets.randbits(64)
            keys = [char_gram_hash(gram, self.key) for gram, _ in char_features]
            keys += [word_hash(word, self.key) for word, _ in word_features]
            if len(set(keys)) == len(keys) and 0 not in keys:
                break
        size = 1 << max(4, (2 * len(keys) - 1).bit_length())
        while True:
            placed = _cuckoo_place(keys, size)
            if placed is not None:
                break
            size *= 2
        self.mask = size - 1
        table_keys = [[0] * size, [0] * size]
        table_index = [[-1] * size, [-1] * size]
        features = chain(char_features, word_features)
        for (table, slot), key, (_, index) in zip(placed, keys, features, strict=True):
            table_keys[table][slot] = key
            table_index[table][slot] = index
        self.keys = [np.array(k, dtype=np.uint64) for k in table_keys]
        self.index = [np.array(i, dtype=np.int64) for i in table_index]
        self.weights = np.array(weights, dtype=np.float64)
        self.multiplier = np.uint64(_HASH_MULTIPLIER)
        self.tags = [np.uint64(t) for t in _ORDER_TAGS]
        # The first step of every n-gram's hash, key included: key * multiplier + tag of order 1.
        self.first = np.uint64((self.key * _HASH_MULTIPLIER + _ORDER_TAGS[1]) & _MASK64)
        self.tag_array = np.array(_ORDER_TAGS, dtype=np.uint64)  # read in place by the compiled pass
        # For the compiled pass: both tables as one array of (hash, weight) slots, so a probe that
        # finds a feature reads one cache line, and the slots' vocabulary indices apart.
        self.slots = np.zeros((2 * size, 2), dtype=np.uint64)
        self.slot_index = np.concatenate(self.index)
        self.slots[:, 0] = np.concatenate(self.keys)
        known = self.slot_index >= 0
        self.slots[known, 1] = self.weights[self.slot_index[known]].view(np.uint64)
        # The arrays' addresses, once: the compiled pass reads them in place.
        self._native_tables = _NativeTables(
            MAX_CHAR_ORDER,
            self.key,
            _HASH_MULTIPLIER,
            self.tag_array.ctypes.data,
            _WORD_TAG,
            self.slots.ctypes.data,
            self.mask,
        )
        self.slot_index_address = self.slot_index.ctypes.data
        self._native_ref = ctypes.byref(self._native_tables)
        self.native = native

    def scan(self, text: str) -> tuple[float, npt.NDArray[Any]]:
        """The summed weights of the known character n-gram occurrences of ``text`` and their
        vocabulary indices, with numpy."""
        hits = self.char_indices(text)
        return float(self.weights[hits].sum()), hits

    def features(self, text: str) -> _Features:
        """Every known feature occurrence of ``text`` (n-grams, words, pairs) in one compiled pass."""
        data = text.encode("utf-32-le", "surrogatepass")
        length = len(data) // 4
        out = array("q", bytes(8 * (4 + (MAX_CHAR_ORDER + 2) * length)))
        assert self.native is not None
        total = self.native.classify(self._native_ref, data, length, out.buffer_info()[0])
        found, words, non_ascii, cjk = out[:4]
        language = "zh" if cjk and non_ascii >= words else "en"
        return _Features(total, words, language, out, found)

    def indices(self, features: _Features) -> npt.NDArray[Any]:
        """The vocabulary indices of the occurrences the compiled pass found."""
        np = self.np
        slots = np.frombuffer(features.out, dtype=np.int64, count=features.found, offset=32)
        return self.slot_index[slots]

    def char_indices(self, text: str) -> npt.NDArray[Any]:
        """Vocabulary indices of every character n-gram occurrence in ``text`` that the model knows."""
        np = self.np
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
        length = len(codes)
        z = np.empty(sum(max(0, length - k + 1) for k in range(1, MAX_CHAR_ORDER + 1)), dtype=np.uint64)
        # Order 1, then each order from the one before, as char_gram_hash does one n-gram.
        rolling = _mix_array(np, codes + self.first)
        z[:length] = rolling
        start = length
        for order in range(2, MAX_CHAR_ORDER + 1):
            rolling = _mix_array(np, rolling[:-1] * self.multiplier + codes[order - 1 :] + self.tags[order])
            z[start : start + len(rolling)] = rolling
            start += len(rolling)
        mask = np.uint64(self.mask)
        slot1 = (z & mask).astype(np.intp)
        slot2 = ((z >> np.uint64(32)) & mask).astype(np.intp)
        hit1 = slot1[self.keys[0][slot1] == z]
        hit2 = slot2[self.keys[1][slot2] == z]
        return np.concatenate((self.index[0][hit1], self.index[1][hit2]))


def _mix_array(np: Any, z: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The splitmix64 finaliser over an array of uint64, in place (see ``_mix``)."""
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def _cuckoo_place(keys: Sequence[int], size: int) -> list[tuple[int, int]] | None:
    """(table, slot) for every key in two tables of ``size`` slots (slot from the low and from the
    high 32 bits of the hash), or None when the tables are too small."""
    mask = size - 1
    occupant: list[list[int]] = [[-1] * size, [-1] * size]
    where: list[tuple[int, int]] = [(0, 0)] * len(keys)
    for start in range(len(keys)):
        key_index, table = start, 0
        for _ in range(64):
            key = keys[key_index]
            slot = key & mask if table == 0 else (key >> 32) & mask
            evicted = occupant[table][slot]
            occupant[table][slot] = key_index
            where[key_index] = (table, slot)
            if evicted < 0:
                break
            key_index, table = evicted, 1 - table
        else:
            return None
    return where


class SafetyClassifier:
    """A trained n-gram linear model: an unsafe score and the most likely unsafe category.

    Immutable after construction and free of I/O, so one instance serves every request and
    thread. Build it with :meth:`load`.
    """

    __slots__ = (
        "_bias",
        "_category_address",
        "_category_bias",
        "_category_bias_address",
        "_category_bias_vector",
        "_category_matrix",
        "_category_rows",
        "_char_index",
        "_char_weight",
        "_offsets",
        "_vector",
        "_word_index",
        "_word_weight",
        "categories",
        "category_min_score",
        "threshold",
        "version",
    )

    def __init__(
        self,
        *,
        features: Sequence[str],
        weights: Sequence[float],
        bias: float,
        language_offsets: Mapping[str, float],
        threshold: float,
        categories: Sequence[str] = (),
        category_bias: Sequence[float] = (),
        category_weights: Sequence[tuple[int, int, float]] = (),
        category_min_score: float = 0.0,
        version: str = MODEL_FAMILY,
        use_numpy: bool = True,
        use_native: bool = True,
    ) -> None:
        """``features`` are as :func:`text_features` yields them; ``category_weights`` holds
        (feature index, category index, weight) triples, zeros left out. ``use_numpy=False``
        forces the pure-Python path for every length, ``use_native=False`` the numpy one for long
        texts instead of the compiled look-up (tests compare the three)."""
        if len(features) != len(weights):
            raise ValueError("features and weights differ in length")
        if len(set(features)) != len(features):
            raise ValueError("duplicate features")
        if len(category_bias) != len(categories):
            raise ValueError("categories and category_bias differ in length")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), not {threshold}")
        # Word features live in their own tables without the prefix, so scoring never has to
        # build prefixed strings; "how to" (a pair) and "how" (a word) cannot collide there.
        self._char_weight: dict[str, float] = {}
        self._char_index: dict[str, int] = {}
        self._word_weight: dict[str, float] = {}
        self._word_index: dict[str, int] = {}
        for i, (feature, weight) in enumerate(zip(features, weights, strict=True)):
            if feature.startswith(WORD_PREFIX):
                self._word_weight[feature[1:]] = float(weight)
                self._word_index[feature[1:]] = i
            else:
                self._char_weight[feature] = float(weight)
                self._char_index[feature] = i
        self._bias = float(bias)
        self._offsets = {lang: float(language_offsets.get(lang, 0.0)) for lang in LANGUAGES}
        self.threshold: float = float(threshold)
        """Default decision threshold on :attr:`ClassifierScore.unsafe`, chosen by cross-validation
        on the training data; the language offsets put both languages' operating points on it."""
        self.categories: tuple[str, ...] = tuple(categories)
        """Names the category head can return."""
        self._category_bias = [float(b) for b in category_bias]
        self.category_min_score: float = float(category_min_score)
        """Scores below this get no category (""): the head's answer would be meaningless for a
        clearly benign text, and skipping it keeps the common case fast. A policy that flags at a
        lower threshold than this gets no category name for the texts in between."""
        rows: dict[int, list[tuple[int, float]]] = {}
        for feature_index, category_index, weight in category_weights:
            if not 0 <= category_index < len(self.categories) or not 0 <= feature_index < len(features):
                raise ValueError("category weight index out of range")
            rows.setdefault(int(feature_index), []).append((int(category_index), float(weight)))
        self._category_rows = {i: tuple(pairs) for i, pairs in rows.items()}
        self._vector: _VectorTables | None = None
        self._category_matrix: Any = None
        self._category_bias_vector: Any = None
        if use_numpy and numpy is not None:
            native = _native_library() if use_native else None
            self._vector = _VectorTables(
                numpy, list(self._char_index.items()), list(self._word_index.items()), weights, native
            )
            matrix = numpy.zeros((len(features), max(1, len(self.categories))), dtype=numpy.float64)
            for feature_index, pairs in self._category_rows.items():
                for category_index, weight in pairs:
                    matrix[feature_index, category_index] = weight
            self._category_matrix = matrix
            self._category_bias_vector = numpy.array(self._category_bias, dtype=numpy.float64)
            self._category_address = matrix.ctypes.data
            self._category_bias_address = self._category_bias_vector.ctypes.data
            if native is not None and not self._native_agrees():
                log.warning(
                    "safety classifier: %s finds other features than Python (stale build?); "
                    "scoring with numpy",
                    NATIVE_LIBRARY.name,
                )
                self._vector.native = None
        self.version: str = version
        """``ngram-lr-1+<hash>``: names the exact artifact in verdicts, cache keys and audit records."""

    @classmethod
    def load(
        cls, path: Path | None = None, *, use_numpy: bool = True, use_native: bool = True
    ) -> SafetyClassifier:
        """Loads an artifact written by the training script; ``None`` loads the one shipped in the
        package. Reads only the local file, never the network. A missing, unreadable or malformed
        file raises :class:`ConfigError` naming the path, so a bad deployment fails at start-up.
        ``use_numpy=False`` keeps every text on the pure-Python path, ``use_native=False`` off the
        compiled look-up (tests compare the three)."""
        path = path if path is not None else default_artifact_path()
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"safety classifier {path}: cannot read the file ({exc.strerror or exc})"
            ) from exc
        try:
            document = json.loads(gzip.decompress(raw).decode("utf-8"))
        except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(
                f"safety classifier {path}: not a gzip-compressed JSON artifact ({exc})"
            ) from exc
        try:
            version = f"{MODEL_FAMILY}+{hashlib.sha256(raw).hexdigest()[:12]}"
            return cls._from_document(document, version=version, use_numpy=use_numpy, use_native=use_native)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"safety classifier {path}: malformed artifact ({exc!r})") from exc

    @classmethod
    def _from_document(
        cls, document: Any, *, version: str, use_numpy: bool, use_native: bool = True
    ) -> SafetyClassifier:
        if not isinstance(document, dict) or document.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"format is not {ARTIFACT_FORMAT!r}")
        if document.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"format_version is {document.get('format_version')!r}, this code reads {FORMAT_VERSION}"
            )
        head = document["category_head"]
        triples = zip(head["feature_index"], head["category_index"], head["weight"], strict=True)
        return cls(
            features=[str(f) for f in document["features"]],
            weights=[float(w) for w in document["weights"]],
            bias=float(document["bias"]),
            language_offsets={str(k): float(v) for k, v in document["language_offsets"].items()},
            threshold=float(document["threshold"]),
            categories=[str(c) for c in head["categories"]],
            category_bias=[float(b) for b in head["bias"]],
            category_weights=[(int(f), int(c), float(w)) for f, c, w in triples],
            category_min_score=float(head["min_score"]),
            version=version,
            use_numpy=use_numpy,
            use_native=use_native,
        )

    @property
    def scoring_path(self) -> str:
        """How the character n-grams of all but the shortest texts are looked up: ``native`` (the
        compiled look-up, from :data:`NATIVE_MIN_CHARS` characters), ``numpy`` (from
        :data:`VECTOR_MIN_CHARS`) or ``python``. All give the same scores; only speed differs."""
        if self._vector is None:
            return "python"
        return "numpy" if self._vector.native is None else "native"

    def _native_agrees(self) -> bool:
        """Whether the compiled pass finds what the dictionaries find, on a sample with words,
        pairs and both scripts (a library built from another version of ngram.c would not)."""
        sample = "请帮我总结这份报告的要点 please summarise the report, don't wait 2 days! ①ﬁ\U0001f600"
        assert self._vector is not None
        words = _WORD.findall(sample)
        grams = list(chain(*_char_grams(sample)))
        expected = [self._char_index[g] for g in grams if g in self._char_index]
        expected += [self._word_index[w] for w in chain(words, _word_pairs(words)) if w in self._word_index]
        found = self._vector.features(sample)
        weights = self._vector.weights
        return bool(
            sorted(self._vector.indices(found).tolist()) == sorted(expected)
            and abs(found.total - float(weights[expected].sum())) < 1e-9
            and found.words == len(words)
            and found.language == _language(sample, len(words))
        )

    def score(self, normalized_text: str, *, category_from: float = 0.0) -> ClassifierScore:
        """Scores one text that the caller has already normalised with
        :func:`aigc_safety.normalize.normalize`, as the training texts were. The category is
        named only for scores of at least ``category_from`` (and :attr:`category_min_score`): a
        caller that flags at a threshold passes it and skips the head for texts it lets through."""
        text = normalized_text
        category_at = max(self.category_min_score, category_from)
        vector = self._vector
        if vector is not None and vector.native is not None and len(text) >= NATIVE_MIN_CHARS:
            found = vector.features(text)
            scale = 1.0 / math.sqrt(_occurrences(len(text), found.words))
            unsafe = _sigmoid(self._bias + self._offsets[found.language] + scale * found.total)
            if not self.categories or unsafe < category_at:
                return ClassifierScore(unsafe, "")
            best = vector.native.category(
                self._category_address,
                len(self.categories),
                self._category_bias_address,
                scale,
                found.out.buffer_info()[0] + 32,
                found.found,
                vector.slot_index_address,
            )
            if best < 0:  # more categories than the compiled head takes
                return ClassifierScore(unsafe, self._category_of(vector.indices(found), [], scale))
            return ClassifierScore(unsafe, self.categories[best])
        words = _WORD.findall(text)
        pairs = _word_pairs(words)
        occurrences = _occurrences(len(text), len(words))
        if occurrences == 0:
            return ClassifierScore(_sigmoid(self._bias + self._offsets["en"]), "")
        vector = self._vector
        if vector is not None and len(text) < VECTOR_MIN_CHARS:
            vector = None
        grams: tuple[str, list[str], list[str], list[str]] | None = None
        char_hits: Any = None
        if vector is not None:
            total, char_hits = vector.scan(text)
        else:
            grams = _char_grams(text)
            total = sum(map(self._char_weight.get, chain(*grams), repeat(0.0)))
        total += sum(map(self._word_weight.get, chain(words, pairs), repeat(0.0)))
        scale = 1.0 / math.sqrt(occurrences)
        unsafe = _sigmoid(self._bias + self._offsets[_language(text, len(words))] + scale * total)
        if not self.categories or unsafe < category_at:
            return ClassifierScore(unsafe, "")
        # Only texts that may be flagged get this far, so the second pass is off the common path.
        if grams is not None:
            char_ids = list(map(self._char_index.get, chain(*grams), repeat(-1)))
        else:
            char_ids = char_hits
        word_ids = list(map(self._word_index.get, chain(words, pairs), repeat(-1)))
        return ClassifierScore(unsafe, self._category_of(char_ids, word_ids, scale))

    def _category_of(self, char_ids: Any, word_ids: list[int], scale: float) -> str:
        """Arg-max of the category head over the vocabulary indices of the feature occurrences
        (-1: not in the vocabulary); ``char_ids`` is a list or, from the numpy path, an array."""
        if self._category_matrix is not None:
            np = numpy
            known = np.concatenate((np.asarray(char_ids, dtype=np.intp), np.array(word_ids, dtype=np.intp)))
            sums = self._category_matrix[known[known >= 0]].sum(axis=0)
            return self.categories[int(np.argmax(self._category_bias_vector + scale * sums))]
        sums = [0.0] * len(self.categories)
        for i in chain(char_ids, word_ids):
            for category_index, weight in self._category_rows.get(i, ()):
                sums[category_index] += weight
        scores = [b + scale * s for b, s in zip(self._category_bias, sums, strict=True)]
        return self.categories[max(range(len(scores)), key=scores.__getitem__)]


def _native_library() -> _Native | None:
    """The compiled feature pass and category head, or None when they are not built (or built
    from another version of ngram.c)."""
    functions = load_native(
        NATIVE_LIBRARY,
        "aigc_ngram_abi",
        NATIVE_ABI,
        ["aigc_classify", "aigc_category"],
        "safety classifier",
        "scoring with numpy",
    )
    if functions is None:
        return None
    classify, category = functions
    # Few arguments, plain types: ctypes converts each one on every call.
    classify.restype = ctypes.c_double
    classify.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64, ctypes.c_void_p]
    category.restype = ctypes.c_int64
    category.argtypes = [
        ctypes.c_void_p,  # matrix, features x categories, row-major
        ctypes.c_int64,
        ctypes.c_void_p,  # bias per category
        ctypes.c_double,
        ctypes.c_void_p,  # the found features' table slots
        ctypes.c_int64,
        ctypes.c_void_p,  # slot -> vocabulary index
    ]
    return _Native(classify, category)


def default_artifact_path() -> Path:
    """The artifact shipped inside this package (``aigc_safety/models/``)."""
    return Path(__file__).resolve().parent / "models" / DEFAULT_ARTIFACT
