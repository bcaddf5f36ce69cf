"""Rule packs: versioned YAML files of keyword and pattern rules, compiled once at load.

A pack is policy, not code: operators ship a new version as a file (a ConfigMap on
Kubernetes) and its ``name@version`` travels with every verdict, cache partition and audit
record. Keywords and patterns are matched against normalised text (:mod:`aigc_safety.normalize`),
so a pack never needs full-width, upper-case or zero-width variants of a phrase.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import logging
import os
import re
import re._constants as sre
import re._parser as sre_parse
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import ahocorasick_rs
import yaml

from aigc_common.errors import ConfigError
from aigc_safety import prefilter
from aigc_safety.native_library import load_native
from aigc_safety.normalize import is_cjk, normalize
from aigc_safety.prefilter import clauses_of
from aigc_safety.types import Action, Stage

log = logging.getLogger(__name__)

LANGUAGES = frozenset({"zh", "en", "any"})
_PACK_KEYS = frozenset({"name", "version", "description", "fragments", "rules"})
_RULE_KEYS = frozenset(
    {"id", "category", "severity", "action", "language", "stages", "description", "keywords", "patterns"}
)
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_RULE_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}")
_FRAGMENT_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
# A pattern (or a later fragment) uses a fragment as "(?&name)", the notation PCRE uses for calling
# a named group; here it is plain text substitution, done once at load, as a non-capturing group.
_FRAGMENT_REF = re.compile(r"\(\?&([^)]*)\)")

# How far back, in normalised characters, a streaming check looks for a match that ends in new
# text. Keyword matches are bounded by the longest keyword; a pattern match longer than this is
# only found when it fits in the window, so packs keep patterns short (they all are: phrases).
PATTERN_LOOKBACK_CHARS = 256

SCAN_LIBRARY = Path(__file__).resolve().parent / "native" / "libaigc_scan.so"
"""The scanner's compiled automaton pass, built by ``scripts/build-native.sh``; optional."""
SCAN_ABI = 5
"""What ``aigc_scan_abi()`` of a compatible build returns (native/scan.c)."""
MAX_NATIVE_CHARACTERS = 0xFFFF
"""Distinct characters the compiled scan's class tables take (16-bit classes); more: Python."""


class _TooManyCharacters(Exception):
    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.count = count


# The struct aigc_automaton arrays after the trie and class tables, in their C order.
_AUTOMATON_ARRAYS = (
    "word_length",
    "kw_start",
    "kw_rule",
    "kw_flags",
    "lead_start",
    "lead_clause",
    "other_start",
    "other_clause",
    "led_start",
    "led_pattern",
    "also_start",
    "also_clause",
    "width",
    "reach",
)


class RulePackError(ConfigError):
    """A rule pack file is unreadable or invalid; the message names the file and the rule."""

    def __init__(self, path: Path, where: str, problem: str) -> None:
        super().__init__(f"rule pack {path}: {where}: {problem}" if where else f"rule pack {path}: {problem}")


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule."""

    rule_id: str
    category: str
    severity: int
    action: Action
    language: str
    stages: frozenset[Stage]
    description: str
    matchers: tuple[re.Pattern[str], ...]
    longest_keyword: int
    keywords: tuple[str, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()

    def find(self, normalized: str, pos: int = 0) -> list[tuple[int, int]]:
        """Spans of the normalised text (from ``pos``) where the rule matches, merged and sorted."""
        spans = sorted(m.span() for matcher in self.matchers for m in matcher.finditer(normalized, pos))
        merged: list[tuple[int, int]] = []
        for start, end in spans:
            if merged and start < merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged


_SURROGATE = re.compile("[\ud800-\udfff]")


def _is_word_char(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


class PackScanner:
    """Every rule of one stage over a text in one automaton pass plus the few patterns it points at.

    One Aho-Corasick automaton holds all keywords of all rules and the words of every pattern's
    required sets (:mod:`aigc_safety.prefilter`: literals every match contains one of, up to four
    sets per pattern). A keyword hit is a rule hit (after the word-boundary check for Latin
    keywords); a hit of a pattern's leading set marks where to search it, and a window is searched
    only when each of its other sets occurs there too ("how to" near "bomb", not "bomb" alone).
    Patterns without usable sets always run. Finds exactly what ``Rule.find`` finds, rule by rule,
    at a cost that barely grows with the size of the pack.

    Where ``scripts/build-native.sh`` has built ``native/scan.c``, the automaton pass and all this
    bookkeeping run there (one call returns the keyword hits and the windows to search) and only
    the regular expressions stay in Python; otherwise ahocorasick-rs and Python do the same.
    """

    def __init__(self, rules: tuple[Rule, ...], *, use_native: bool = True) -> None:
        """``use_native=False`` keeps the scan in Python even where ``scripts/build-native.sh``
        has built the compiled pass (the tests compare the two)."""
        self.rules = rules
        self._automaton: Any = None
        self._values: list[tuple[int, tuple[tuple[int, bool, bool], ...], tuple[int, ...], int]] = []
        keywords: dict[str, list[tuple[int, bool, bool]]] = {}
        # Every required set of literals of every pattern, once however many patterns share it.
        clause_ids: dict[frozenset[str], int] = {}
        self._patterns: list[tuple[int, re.Pattern[str]]] = []
        self._widths: list[int | None] = []
        self._reaches: list[int] = []  # pattern id -> how far past a match it may read
        self._also: list[tuple[int, ...]] = []  # pattern id -> its other required sets
        self._led_by: dict[int, list[int]] = {}  # required set -> patterns it marks where to search
        always: list[int] = []
        for index, rule in enumerate(rules):
            for keyword in rule.keywords:
                # Latin ends match at word boundaries only, as in Rule.find.
                keywords.setdefault(keyword, []).append(
                    (index, not is_cjk(keyword[0]), not is_cjk(keyword[-1]))
                )
            for pattern in rule.patterns:
                pattern_id = len(self._patterns)
                self._patterns.append((index, pattern))
                facts = _facts(pattern)
                self._widths.append(facts.width)
                self._reaches.append(facts.reach)
                ids = [clause_ids.setdefault(c, len(clause_ids)) for c in facts.clauses]
                self._also.append(tuple(ids[1:]))
                if ids:
                    self._led_by.setdefault(ids[0], []).append(pattern_id)
                else:
                    always.append(pattern_id)
        self._always = tuple(always)
        # A leading set's hits are collected per set; the other sets' words are only noted per
        # word, and a set is looked up from its words when a pattern that needs it runs.
        leads: dict[str, list[int]] = {}
        word_ids: dict[str, int] = {}
        self._clause_words: list[tuple[int, ...]] = [()] * len(clause_ids)
        self._clause_words_text: list[tuple[str, ...]] = [()] * len(clause_ids)
        for clause, clause_id in clause_ids.items():
            self._clause_words_text[clause_id] = tuple(sorted(clause))
            self._clause_words[clause_id] = tuple(
                word_ids.setdefault(w, len(word_ids)) for w in sorted(clause)
            )
            if clause_id in self._led_by:
                for word in clause:
                    leads.setdefault(word, []).append(clause_id)
        vocabulary = sorted(set(keywords) | set(word_ids))
        self._vocabulary = vocabulary
        if vocabulary:
            # _values[index] says what the automaton's word ``index`` is for.
            self._values = [
                (
                    len(word),
                    tuple(keywords.get(word, ())),
                    tuple(leads.get(word, ())),
                    word_ids.get(word, -1),
                )
                for word in vocabulary
            ]
        self._native: _NativeScan | None = None
        library = _scan_library() if use_native and vocabulary else None
        if library is not None:
            others: dict[str, list[int]] = {}  # word -> the non-leading required sets it is in
            for clause_id in sorted({c for also in self._also for c in also}):
                for word in self._clause_words_text[clause_id]:
                    others.setdefault(word, []).append(clause_id)
            try:
                self._native = _NativeScan(
                    library,
                    vocabulary,
                    [
                        (owners, leads, others.get(w, ()))
                        for w, (_, owners, leads, _) in zip(vocabulary, self._values, strict=True)
                    ],
                    [self._led_by.get(c, ()) for c in range(len(clause_ids))],
                    self._also,
                    self._widths,
                    self._reaches,
                )
            except _TooManyCharacters as exc:
                log.warning(
                    "rule scanner: the packs' words hold %d distinct characters, the compiled scan "
                    "takes at most %d; scanning in Python",
                    exc.count,
                    MAX_NATIVE_CHARACTERS,
                )

    @property
    def always_run(self) -> int:
        """Patterns that run on every text (no usable trigger words)."""
        return len(self._always)

    @property
    def scanning_path(self) -> str:
        """``native`` when the compiled automaton pass does the scan's bookkeeping, else ``python``."""
        return "python" if self._native is None else "native"

    def scan(self, normalized: str, pos: int = 0) -> list[tuple[Rule, list[tuple[int, int]]]]:
        """``(rule, merged spans)`` for each rule that matches at or after ``pos``, in rule order."""
        if self._native is None:
            return self._scan_python(normalized, pos)
        found: dict[int, list[tuple[int, int]]] = {}
        n = len(normalized)
        if n > pos:
            hits, windows = self._native.scan(normalized, pos)
            for index, start, end in hits:
                found.setdefault(index, []).append((start, end))
            patterns = self._patterns
            for pattern_id, lo, hi in windows:
                index, pattern = patterns[pattern_id]
                if lo < 0:
                    spans = [m.span() for m in pattern.finditer(normalized, pos)]
                else:
                    spans = _search_window(pattern, normalized, lo, hi)
                if spans:
                    found.setdefault(index, []).extend(spans)
        for pattern_id in self._always:
            index, pattern = self._patterns[pattern_id]
            spans = [m.span() for m in pattern.finditer(normalized, pos)]
            if spans:
                found.setdefault(index, []).extend(spans)
        return [(self.rules[i], _merged(spans)) for i, spans in sorted(found.items())]

    def _scan_python(self, normalized: str, pos: int) -> list[tuple[Rule, list[tuple[int, int]]]]:
        """What :meth:`scan` does, all in Python around the ahocorasick-rs automaton."""
        found: dict[int, list[tuple[int, int]]] = {}
        led: dict[int, list[tuple[int, int]]] = {}  # leading required set -> where its words occur
        words: dict[int, list[tuple[int, int]]] = {}  # word of a required set -> where it occurs
        n = len(normalized)
        if self._vocabulary and n > pos:
            if self._automaton is None:
                # Built on first use: where the compiled pass scans, it is never needed (and its
                # build holds the interpreter lock for tens of milliseconds on every reload).
                # Every occurrence of every word, overlapping ones included; a match's index
                # names the word.
                self._automaton = ahocorasick_rs.AhoCorasick(
                    self._vocabulary, matchkind=ahocorasick_rs.MatchKind.Standard
                )
            # Patterns report matches that start at or after ``pos`` (as Rule.find does), and a
            # match contains its required words, so only the text from ``pos`` on is searched: a
            # streaming check costs the new text plus the look-back, not the whole answer again.
            values = self._values
            tail = normalized[pos:] if pos else normalized
            try:
                matches = self._automaton.find_matches_as_indexes(tail, overlapping=True)
            except UnicodeEncodeError:
                # A lone surrogate (from a JSON "\\ud800" or an in-process caller) cannot be UTF-8,
                # which the automaton reads; no word holds one, so any stand-in gives the same matches.
                matches = self._automaton.find_matches_as_indexes(
                    _SURROGATE.sub("\ufffd", tail), overlapping=True
                )
            for word, start, _ in matches:
                length, owners, leads, word_id = values[word]
                start += pos
                end = start + length - 1  # the last character of the match
                if word_id >= 0:
                    words.setdefault(word_id, []).append((start, end + 1))
                for clause_id in leads:
                    led.setdefault(clause_id, []).append((start, end + 1))
                for index, check_left, check_right in owners:
                    if check_left and start > 0 and _is_word_char(normalized[start - 1]):
                        continue
                    if check_right and end + 1 < n and _is_word_char(normalized[end + 1]):
                        continue
                    found.setdefault(index, []).append((start, end + 1))
        # pattern id -> where its leading required set occurs (None: search the whole text)
        to_run: dict[int, list[tuple[int, int]] | None] = dict.fromkeys(self._always)
        for clause_id, where in led.items():
            for pattern_id in self._led_by[clause_id]:
                to_run[pattern_id] = where
        resolved: dict[int, list[tuple[int, int]]] = {}
        for pattern_id in sorted(to_run):
            index, pattern = self._patterns[pattern_id]
            width, at = self._widths[pattern_id], to_run[pattern_id]
            also = []
            for clause_id in self._also[pattern_id]:
                spots = resolved.get(clause_id)
                if spots is None:
                    spots = resolved[clause_id] = [
                        s for w in self._clause_words[clause_id] if w in words for s in words[w]
                    ]
                if not spots:
                    break  # a required set occurs nowhere: no match
                also.append(spots)
            else:
                if width is None or at is None:
                    spans = [m.span() for m in pattern.finditer(normalized, pos)]
                else:
                    spans = _search_near(pattern, normalized, pos, width, at, also, self._reaches[pattern_id])
                if spans:
                    found.setdefault(index, []).extend(spans)
        return [(self.rules[i], _merged(spans)) for i, spans in sorted(found.items())]


class _Facts(NamedTuple):
    """What the scanner needs to know about one pattern, worked out from its parse tree."""

    clauses: tuple[frozenset[str], ...]  # required sets of trigger words, most selective first
    width: int | None  # longest match, when bounded by the pack's look-back
    reach: int  # how far past a match's end it may read


# Facts read from the on-disk cache (load_pattern_facts), by _facts_key; consulted before parsing.
_FACTS_FROM_DISK: dict[str, _Facts] = {}
_facts_on_disk: dict[Path, frozenset[str]] = {}  # cache file -> the keys it holds (read or written)
# What the facts depend on besides the pattern: this analysis, the prefilter's, Python's parser.
_FACTS_FORMAT = 1
_FACTS_CODE = hashlib.sha256(
    b"".join(Path(m).read_bytes() for m in (__file__, prefilter.__file__)) + sys.version.encode()
).hexdigest()[:16]


def _facts_key(pattern: re.Pattern[str]) -> str:
    return hashlib.sha256(f"{pattern.flags}\0{pattern.pattern}".encode("utf-8", "surrogatepass")).hexdigest()[
        :32
    ]


def load_pattern_facts(path: Path) -> int:
    """Reads facts worked out by an earlier load (``save_pattern_facts``), so that this one parses
    only the patterns that are new: half of loading the shipped policy set is that analysis. A
    file from other code or another Python, or one that does not read, is ignored (the facts are
    then worked out again). Returns how many facts were read."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != _FACTS_FORMAT or document.get("code") != _FACTS_CODE:
            return 0
        loaded = {
            key: _Facts(
                tuple(frozenset(words) for words in clauses),
                None if width is None else int(width),
                int(reach),
            )
            for key, (clauses, width, reach) in document["facts"].items()
        }
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("pattern facts cache %s not used: %s", path, exc)
        return 0
    _FACTS_FROM_DISK.update(loaded)
    _facts_on_disk[path] = frozenset(loaded)
    return len(loaded)


def save_pattern_facts(path: Path, packs: Sequence[RulePack]) -> bool:
    """Writes the facts of every pattern of ``packs`` for the next load, unless the file already
    holds exactly those (atomically; a failure to write is logged, not raised: the cache only
    saves time). Returns True when the file was written."""
    facts = {_facts_key(p): _facts(p) for pack in packs for rule in pack.rules for p in rule.patterns}
    if _facts_on_disk.get(path) == frozenset(facts):
        return False
    document = {
        "format": _FACTS_FORMAT,
        "code": _FACTS_CODE,
        "facts": {
            key: [[sorted(words) for words in f.clauses], f.width, f.reach]
            for key, f in sorted(facts.items())
        },
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(document, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
        partial.replace(path)
    except (OSError, ValueError) as exc:  # ValueError: a path with no file name
        log.warning("pattern facts cache %s not written: %s", path, exc)
        return False
    _facts_on_disk[path] = frozenset(facts)
    return True


@functools.lru_cache(maxsize=4096)  # one analysis per pattern, however many scanners use it
def _facts(pattern: re.Pattern[str]) -> _Facts:
    """Parses ``pattern`` once and keeps only the facts: a pack's parse trees hold hundreds of
    thousands of objects, which kept alive would make every full garbage collection of the
    serving process slow (and building them with the trees alive, the load itself). Facts read
    from the on-disk cache (:func:`load_pattern_facts`) are taken as they are.

    ``reach`` is the widest look-ahead, plus one for ``\\b`` and ``$``; the pack's look-back when
    that is unbounded, nested or unknown. A window searched for the pattern extends this far past
    the furthest possible match end."""
    known = _FACTS_FROM_DISK.get(_facts_key(pattern)) if _FACTS_FROM_DISK else None
    if known is not None:
        return known
    try:
        tree = sre_parse.parse(pattern.pattern, pattern.flags)
    except re.error:
        return _Facts((), None, PATTERN_LOOKBACK_CHARS)
    try:
        width: int | None = int(tree.getwidth()[1])
    except (OverflowError, RecursionError):
        width = None
    if width is not None and width > PATTERN_LOOKBACK_CHARS:
        width = None
    try:
        reach = min(PATTERN_LOOKBACK_CHARS, _lookahead_width(tree.data, inside=False) + 1)
    except (OverflowError, RecursionError):
        reach = PATTERN_LOOKBACK_CHARS
    return _Facts(clauses_of(tree) or (), width, reach)


def _lookahead_width(items: Any, *, inside: bool) -> int:
    """The widest look-ahead among parsed ``items`` (any depth); the cap for one inside another
    assertion, where widths add up in ways this does not follow."""
    widest = 0
    for op, value in items:
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            direction, sub = value
            if inside:
                return PATTERN_LOOKBACK_CHARS
            if direction == 1:
                widest = max(widest, min(PATTERN_LOOKBACK_CHARS, int(sub.getwidth()[1])))
            widest = max(widest, _lookahead_width(sub.data, inside=True))
            continue
        for sub in _subpatterns(value):
            widest = max(widest, _lookahead_width(sub.data, inside=inside))
    return widest


def _subpatterns(value: Any) -> list[Any]:
    """The parsed subpatterns held in a node's value, however nested in tuples and lists."""
    if isinstance(value, sre_parse.SubPattern):
        return [value]
    if isinstance(value, (tuple, list)):
        return [sub for item in value for sub in _subpatterns(item)]
    return []


def _search_near(
    pattern: re.Pattern[str],
    text: str,
    pos: int,
    width: int,
    triggers_at: list[tuple[int, int]],
    also: Sequence[list[tuple[int, int]]] = (),
    reach: int = PATTERN_LOOKBACK_CHARS,
) -> list[tuple[int, int]]:
    """Matches of a pattern of bounded ``width`` searched only around its trigger occurrences.

    Every match contains a trigger, so it lies within ``width`` characters of one; searching those
    windows instead of the whole text is what keeps a 2,000-character check fast when a common
    word triggers a long pattern. A window is cut ``reach`` past the furthest possible match end
    (room for the pattern's look-aheads, :func:`_facts`) and every match found in a cut window is
    confirmed on the whole text, so the cut never invents a match. A window that does not hold an occurrence of each of the
    pattern's other required sets (``also``: where their words occur) cannot hold a match either.
    """
    n = len(text)
    windows: list[list[int]] = []
    for start, end in sorted(triggers_at):
        lo, hi = max(pos, end - width), min(n, start + width + reach)
        if windows and lo <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], hi)
        else:
            windows.append([lo, hi])
    spans = []
    for lo, hi in windows:
        if all(any(lo <= a and b <= hi for a, b in spots) for spots in also):
            spans += _search_window(pattern, text, lo, hi)
    return spans


def _search_window(pattern: re.Pattern[str], text: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """Matches of ``pattern`` found in ``text[lo:hi]``, each confirmed on the whole text."""
    spans = []
    n = len(text)
    at = lo
    while at <= hi:
        m = pattern.search(text, at, hi)
        if m is None:
            break
        if hi < n:
            begin = m.start()
            m = pattern.match(text, begin)  # the whole text decides, not the cut
            if m is None:
                at = begin + 1
                continue
        spans.append(m.span())
        at = max(m.end(), m.start() + 1)
    return spans


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


class _NativeAutomaton(ctypes.Structure):
    """The C mirror of ``struct aigc_automaton`` (native/scan.c)."""

    _fields_ = [
        ("states", ctypes.c_void_p),
        ("edge_class", ctypes.c_void_p),
        ("edge_child", ctypes.c_void_p),
        ("bmp_class", ctypes.c_void_p),
        ("astral", ctypes.c_void_p),
        ("astral_class", ctypes.c_void_p),
        ("n_astral", ctypes.c_int64),
        ("root_next", ctypes.c_void_p),
        *((name, ctypes.c_void_p) for name in _AUTOMATON_ARRAYS),
        ("n_clauses", ctypes.c_int64),
        ("n_patterns", ctypes.c_int64),
    ]


class _NativeScan:
    """One scanner's Aho-Corasick automaton and word roles as flat arrays for native/scan.c, which
    walks a text once and returns the keyword hits and the windows each pattern must be searched
    in. Read-only after construction; the C call runs without the GIL."""

    def __init__(
        self,
        library: _ScanLibrary,
        vocabulary: Sequence[str],
        roles: Sequence[tuple[Sequence[tuple[int, bool, bool]], Sequence[int], Sequence[int]]],
        led_by: Sequence[Sequence[int]],
        also: Sequence[Sequence[int]],
        widths: Sequence[int | None],
        reaches: Sequence[int],
    ) -> None:
        self._library = library
        # Characters by class (1, 2, ...; 0: in no word): a character no word has costs one array
        # read, and the root's children are one array indexed by class.
        alphabet = sorted({ord(ch) for word in vocabulary for ch in word})
        if len(alphabet) > MAX_NATIVE_CHARACTERS:
            raise _TooManyCharacters(len(alphabet))
        classes = {code: cls for cls, code in enumerate(alphabet, start=1)}
        self._bmp_class = array("H", bytes(2 * 0x10000))
        for code, cls in classes.items():
            if code < 0x10000:
                self._bmp_class[code] = cls
        self._astral = array("I", (c for c in alphabet if c >= 0x10000))
        self._astral_class = array("H", (classes[c] for c in self._astral))
        self._root_next = array("i", bytes(4 * (len(alphabet) + 1)))

        def csr(lists: Sequence[Sequence[int]]) -> tuple[array[int], array[int]]:
            starts = array("i", [0])
            for items in lists:
                starts.append(starts[-1] + len(items))
            return starts, array("i", (x for items in lists for x in items))

        kw_start, kw_rule = csr([[index for index, _, _ in owners] for owners, _, _ in roles])
        kw_flags = array("i", (left | right << 1 for owners, _, _ in roles for _, left, right in owners))
        tables = {
            "word_length": array("i", (len(w) for w in vocabulary)),
            "kw_start": kw_start,
            "kw_rule": kw_rule,
            "kw_flags": kw_flags,
        }
        tables["lead_start"], tables["lead_clause"] = csr([leads for _, leads, _ in roles])
        tables["other_start"], tables["other_clause"] = csr([others for _, _, others in roles])
        tables["led_start"], tables["led_pattern"] = csr(led_by)
        tables["also_start"], tables["also_clause"] = csr(also)
        tables["width"] = array("i", (-1 if w is None else w for w in widths))
        tables["reach"] = array("i", reaches)
        self._tables = tables  # kept alive: the C side reads them in place
        self._automaton = _NativeAutomaton(
            0,  # states and edges: below, once built
            0,
            0,
            _address(self._bmp_class),
            _address(self._astral) if self._astral else 0,
            _address(self._astral_class) if self._astral_class else 0,
            len(self._astral),
            _address(self._root_next),
            *(_address(tables[name]) for name in _AUTOMATON_ARRAYS),
            len(led_by),
            len(also),
        )
        # The trie with its failure links, built in C (in Python it took ~0.6 s a scanner):
        # struct aigc_state per state, the children of states with several in the edge arrays.
        offsets = array("q", [0])
        for word in vocabulary:
            offsets.append(offsets[-1] + len(word))
        total = offsets[-1]
        self._states = array("i", bytes(4 * 6 * (total + 1)))
        self._edge_class, self._edge_child = (
            array("I", bytes(4 * (total + 1))),
            array("i", bytes(4 * (total + 1))),
        )
        n_edges = ctypes.c_int64()
        states = library.build(
            ctypes.byref(self._automaton),
            "".join(vocabulary).encode("utf-32-le", "surrogatepass"),
            _address(offsets),
            len(vocabulary),
            _address(self._states),
            _address(self._edge_class),
            _address(self._edge_child),
            ctypes.byref(n_edges),
            _address(self._root_next),
        )
        if states < 0:
            raise MemoryError("rule scanner: out of memory building the automaton")
        del self._states[6 * states :], self._edge_class[n_edges.value :], self._edge_child[n_edges.value :]
        # Addresses only now: shrinking may have moved the arrays.
        self._automaton.states = _address(self._states)
        self._automaton.edge_class = _address(self._edge_class) if self._edge_class else 0
        self._automaton.edge_child = _address(self._edge_child) if self._edge_child else 0
        self._ref = ctypes.byref(self._automaton)

    def scan(self, text: str, pos: int) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """Keyword hits ``(rule index, start, end)`` and windows ``(pattern id, lo, hi)`` (-1, -1:
        the whole text) of the matches that start at or after ``pos``."""
        base = pos - 1 if pos > 0 else 0  # one character before pos for the word-boundary check
        data = (text[base:] if base else text).encode("utf-32-le", "surrogatepass")
        capacity = 2 + 3 * 64  # the two counts and room for 64 hits or windows; grown when short
        while True:
            out = array("q", bytes(8 * capacity))
            needed = self._library.scan(
                self._ref, data, len(data) // 4, base, len(text), pos, _address(out), capacity
            )
            if needed < 0:
                raise MemoryError("rule scanner: out of memory")
            if needed <= capacity:
                break
            capacity = needed
        hits = out[0]  # then out[1] windows; the values run to `needed`
        values = out[2:needed].tolist()
        split = 3 * hits
        return (
            list(zip(values[0:split:3], values[1:split:3], values[2:split:3], strict=True)),
            list(zip(values[split::3], values[split + 1 :: 3], values[split + 2 :: 3], strict=True)),
        )


def _address(buffer: array[Any]) -> int:
    return int(buffer.buffer_info()[0])


@dataclass(frozen=True, slots=True)
class _ScanLibrary:
    scan: Any
    build: Any


@functools.cache
def _scan_library() -> _ScanLibrary | None:
    """The compiled scan, or None when it is not built (or built from another scan.c)."""
    functions = load_native(
        SCAN_LIBRARY,
        "aigc_scan_abi",
        SCAN_ABI,
        ["aigc_scan", "aigc_scan_build"],
        "rule scanner",
        "scanning in Python",
    )
    if functions is None:
        return None
    scan, build = functions
    scan.restype = ctypes.c_int64
    scan.argtypes = [ctypes.c_void_p, ctypes.c_char_p, *[ctypes.c_int64] * 4, ctypes.c_void_p, ctypes.c_int64]
    build.restype = ctypes.c_int64
    build.argtypes = [
        ctypes.c_void_p,  # the automaton, its class tables filled
        ctypes.c_char_p,  # the words' code points, UTF-32-LE
        ctypes.c_void_p,  # offsets, int64
        ctypes.c_int64,
        ctypes.c_void_p,  # states
        ctypes.c_void_p,  # edge classes
        ctypes.c_void_p,  # edge children
        ctypes.c_void_p,  # number of edges, int64
        ctypes.c_void_p,  # the root's children by class
    ]
    return _ScanLibrary(scan, build)


@dataclass(frozen=True, slots=True)
class RulePack:
    """A loaded pack: its identity and its compiled rules."""

    name: str
    version: str
    description: str
    rules: tuple[Rule, ...]
    _scanners: dict[Stage, PackScanner] = field(default_factory=dict, init=False, compare=False, repr=False)

    def scanner(self, stage: Stage) -> PackScanner:
        """A scanner of this pack's rules for one stage, built on first use (policies scan with
        their own, over all their packs: :meth:`aigc_safety.policy.Policy.scanner`)."""
        scanner = self._scanners.get(stage)
        if scanner is None:
            scanner = self._scanners[stage] = PackScanner(self.rules_for(stage))
        return scanner

    @property
    def policy_version(self) -> str:
        """What verdicts carry, e.g. ``default@1``."""
        return f"{self.name}@{self.version}"

    def rules_for(self, stage: Stage) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if stage in r.stages)

    @property
    def stream_lookback(self) -> int:
        """Normalised characters a streaming check re-reads before the newly added text."""
        return max([PATTERN_LOOKBACK_CHARS, *(r.longest_keyword for r in self.rules)])


# libyaml's safe loader when PyYAML was built with it: ten times faster on the shipped packs
# (0.18 -> 0.015 s), the same documents.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def default_pack_path() -> Path:
    """The pack shipped inside this package."""
    return Path(__file__).resolve().parent / "packs" / "default.yaml"


def load_pack(path: Path, data: bytes | None = None) -> RulePack:
    """Reads and compiles a pack; any problem raises :class:`RulePackError` naming file and rule.
    ``data``: the file's bytes when the caller has already read them."""
    try:
        text = data.decode("utf-8") if data is not None else path.read_text(encoding="utf-8")
        raw = yaml.load(text, Loader=_YAML_LOADER)
    except OSError as exc:
        raise RulePackError(path, "", f"cannot read the file ({exc.strerror or exc})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RulePackError(path, "", f"not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise RulePackError(path, "", "expected a mapping with name, version and rules")
    unknown = set(raw) - _PACK_KEYS
    if unknown:
        raise RulePackError(path, "", f"unknown keys {sorted(unknown)}; allowed: {sorted(_PACK_KEYS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RulePackError(path, "name", "must be lower-case letters, digits, '-' or '_'")
    version = raw.get("version")
    if isinstance(version, bool) or not isinstance(version, (int, str)) or not str(version).strip():
        raise RulePackError(path, "version", "must be a non-empty string or number")
    rules_raw = raw.get("rules")
    if not isinstance(rules_raw, list) or not rules_raw:
        raise RulePackError(path, "rules", "must be a non-empty list")
    fragments = _fragments(path, raw.get("fragments", {}))
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, rule_raw in enumerate(rules_raw):
        rule = _compile_rule(path, i, rule_raw, fragments)
        if rule.rule_id in seen:
            raise RulePackError(path, f"rule {rule.rule_id!r}", "duplicate id")
        seen.add(rule.rule_id)
        rules.append(rule)
    return RulePack(
        name=name,
        version=str(version).strip(),
        description=str(raw.get("description", "")),
        rules=tuple(rules),
    )


def _fragments(path: Path, raw: Any) -> dict[str, str]:
    """A pack's named pattern pieces (request frames, object lists) shared by its rules, each
    expanded over the fragments defined before it. Validated here so an error names the fragment."""
    if not isinstance(raw, dict):
        raise RulePackError(path, "fragments", "must be a mapping of name to pattern")
    fragments: dict[str, str] = {}
    for name, text in raw.items():
        where = f"fragments.{name}"
        if not isinstance(name, str) or not _FRAGMENT_NAME.fullmatch(name):
            raise RulePackError(path, where, "name must be lower-case letters, digits or '_'")
        if not isinstance(text, str) or not text:
            raise RulePackError(path, where, "must be a non-empty pattern string")
        expanded = _expand(path, where, text, fragments)
        try:
            re.compile(expanded)
        except re.error as exc:
            raise RulePackError(path, where, f"not a valid regular expression: {exc}") from None
        fragments[name] = expanded
    return fragments


def _expand(path: Path, where: str, pattern: str, fragments: dict[str, str]) -> str:
    def substitute(ref: re.Match[str]) -> str:
        name = ref.group(1)
        if name not in fragments:
            known = ", ".join(sorted(fragments)) or "none"
            raise RulePackError(
                path, where, f"(?&{name}) names no fragment defined before it (defined: {known})"
            )
        return f"(?:{fragments[name]})"

    return _FRAGMENT_REF.sub(substitute, pattern)


def _keyword_regex(keywords: list[str]) -> re.Pattern[str]:
    parts = []
    # Longest first, so the alternation reports the longest keyword at a position.
    for keyword in sorted(keywords, key=len, reverse=True):
        part = re.escape(keyword)
        # Latin keywords match whole words only ("ass" must not fire inside "class"); CJK text
        # has no word separators, so CJK ends stay free.
        if not is_cjk(keyword[0]):
            part = r"(?<![a-z0-9])" + part
        if not is_cjk(keyword[-1]):
            part += r"(?![a-z0-9])"
        parts.append(part)
    return re.compile("|".join(parts))


def _compile_rule(path: Path, index: int, raw: Any, fragments: dict[str, str]) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(raw, dict):
        raise RulePackError(path, where, "must be a mapping")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.fullmatch(rule_id):
        raise RulePackError(path, where, "id must be lower-case letters, digits, '.', '-' or '_'")
    where = f"rule {rule_id!r}"
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise RulePackError(path, where, f"unknown keys {sorted(unknown)}; allowed: {sorted(_RULE_KEYS)}")
    for key in ("category", "description"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise RulePackError(path, where, f"{key} must be a non-empty string")
    severity = raw.get("severity")
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise RulePackError(path, where, f"severity must be an integer from 1 to 5, got {severity!r}")
    try:
        action = Action(str(raw.get("action")))
    except ValueError:
        raise RulePackError(
            path, where, f"action must be one of {[a.value for a in Action]}, got {raw.get('action')!r}"
        ) from None
    if action == Action.ALLOW:
        raise RulePackError(
            path, where, "action allow makes the rule do nothing; use redact, review or block"
        )
    language = raw.get("language")
    if language not in LANGUAGES:
        raise RulePackError(path, where, f"language must be one of {sorted(LANGUAGES)}, got {language!r}")
    stages_raw = raw.get("stages", [s.value for s in Stage])
    try:
        stages = frozenset(Stage(s) for s in stages_raw) if isinstance(stages_raw, list) else frozenset()
    except ValueError:
        stages = frozenset()
    if not stages:
        raise RulePackError(path, where, "stages must be a non-empty list of input and output")

    keywords_raw = raw.get("keywords", [])
    patterns_raw = raw.get("patterns", [])
    if not isinstance(keywords_raw, list) or not isinstance(patterns_raw, list):
        raise RulePackError(path, where, "keywords and patterns must be lists of strings")
    if not keywords_raw and not patterns_raw:
        raise RulePackError(path, where, "needs at least one keyword or pattern")
    keywords = []
    for k, keyword in enumerate(keywords_raw):
        folded = normalize(keyword).text if isinstance(keyword, str) else ""
        if not folded:
            raise RulePackError(path, where, f"keywords[{k}] is empty after normalisation")
        keywords.append(folded)
    matchers: list[re.Pattern[str]] = [_keyword_regex(keywords)] if keywords else []
    patterns: list[re.Pattern[str]] = []
    for p, pattern in enumerate(patterns_raw):
        if not isinstance(pattern, str) or not pattern:
            raise RulePackError(path, where, f"patterns[{p}] must be a non-empty string")
        pattern = _expand(path, f"{where}: patterns[{p}]", pattern, fragments)
        try:
            # IGNORECASE forgives an upper-case pattern; the text it runs on is case-folded anyway.
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise RulePackError(
                path, where, f"patterns[{p}] is not a valid regular expression: {exc}"
            ) from None
        if compiled.fullmatch("") is not None:
            raise RulePackError(path, where, f"patterns[{p}] matches the empty string")
        matchers.append(compiled)
        patterns.append(compiled)
    return Rule(
        rule_id=rule_id,
        category=raw["category"].strip(),
        severity=severity,
        action=action,
        language=language,
        stages=stages,
        description=" ".join(raw["description"].split()),
        matchers=tuple(matchers),
        longest_keyword=max((len(k) for k in keywords), default=0),
        keywords=tuple(dict.fromkeys(keywords)),
        patterns=tuple(patterns),
    )
