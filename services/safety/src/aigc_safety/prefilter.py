"""Trigger words of a regular expression: literals at least one of which occurs in every match.

A rule pack has hundreds of patterns and most texts match none of them. Running every pattern over
every text costs about a millisecond per line; instead each pattern's triggers go into one
Aho-Corasick automaton, one pass finds which triggers occur, and only the patterns they name run.
A pattern whose triggers cannot be worked out (or are too short to be selective) always runs, so
the prefilter changes speed, never results.

The analysis walks the parsed pattern (``re._parser``, the parser ``re.compile`` itself uses):
concatenated literals form runs, alternations union their branches, optional parts extend a run
with the empty string, and anything open-ended (``.``, ``\\w+``, character classes) ends a run.
Every run a match must contain is a required set; an alternation's required set is one required
set of each branch, united. A pattern keeps up to four sets, most selective (longest shortest
member, a very common English word counting as one character) first: the first decides where to
search, the others must occur there too, so "how to" + "bomb" runs a pattern that "bomb" alone
would have run on every news article about one.
"""

from __future__ import annotations

import functools
import itertools
import re
import re._constants as sre
import re._parser as sre_parse
from collections.abc import Iterable
from typing import Any

# Bigger sets stop being selective and cost automaton memory; such nodes count as unknown.
MAX_SET = 64
# An alternation's required set is the union of one per branch, and may be larger.
MAX_UNION = 256
MIN_TRIGGER_CHARS = 2
# Required sets kept per node while walking the pattern, and per pattern in the end: the best one
# marks where to search, the others must occur there too.
MAX_CLAUSES = 6
MAX_REQUIRED = 4

Strings = frozenset[str]
Clauses = tuple[Strings, ...]


def _product(left: Strings, right: Strings) -> Strings | None:
    if len(left) * len(right) > MAX_SET:
        return None
    return frozenset(a + b for a in left for b in right)


# English words so common that a set holding one is no filter at all ("be", "the", "can").
_COMMON_WORDS = frozenset(
    (  # noqa: SIM905 - a word list reads better as text than as a hundred quoted items
        "a about after all also am an and any are as at be been before being both but by can could "
        "did do does each few for from had has have he her here him his how i if in into is it its "
        "just may me might more most must my no nor not now of off on once only or other our out "
        "over own same shall she should so some such than that the their them then there these they "
        "this those to too under until up us very was we were what when where which while who whom "
        "why will with would you your"
    ).split()
)


def _length(literal: str) -> int:
    core = literal.strip()
    return 1 if core.casefold() in _COMMON_WORDS else len(core)


def _filters_well(strings: Strings) -> bool:
    """Whether a set is worth checking besides the leading one: two Latin letters ("ai", "ot")
    occur inside half the words of an English text."""
    return all(len(s.strip()) > 2 or not s.isascii() for s in strings)


@functools.lru_cache(maxsize=65536)  # the walk ranks the same sets many times over
def _quality(strings: Strings | None) -> int:
    """How selective a set is: the length of its shortest member (a common word counts as 1)."""
    if not strings:
        return 0
    return min(_length(s) if s.strip() else 0 for s in strings)


def _charset(items: list[tuple[Any, Any]]) -> Strings | None:
    chars = []
    for op, value in items:
        if op is sre.LITERAL:
            chars.append(chr(value))
        else:
            return None  # ranges, categories, negation: too wide to enumerate
    return frozenset(chars) if len(chars) <= 8 else None


def _clauses(candidates: Iterable[Strings | None]) -> Clauses:
    """The usable sets among ``candidates``, best first, at most MAX_CLAUSES of them."""
    usable = {c for c in candidates if c is not None and _quality(c) > 0}
    ranked = sorted(usable, key=lambda c: (-_quality(c), len(c), sorted(c)))
    return tuple(ranked[:MAX_CLAUSES])


def _node(op: Any, value: Any) -> tuple[Strings | None, Clauses]:
    """(exact, clauses) of one parsed node: every string it can match when few, and sets of which
    every match contains a member of each."""
    if op is sre.LITERAL:
        return frozenset({chr(value)}), ()
    if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
        return frozenset({""}), ()  # zero-width: consumes nothing
    if op is sre.IN:
        return _charset(value), ()
    if op is sre.SUBPATTERN:
        return _sequence(value[-1])
    if op is sre.BRANCH:
        return _branch(value[1])
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", None)):
        low, high, sub = value
        exact, clauses = _sequence(sub)
        if low == 0 and high == 1 and exact is not None:
            return exact | {""}, ()
        if low == 1 and high == 1:
            return exact, clauses
        return None, (_clauses((exact, *clauses)) if low >= 1 else ())
    return None, ()  # ANY, CATEGORY, NOT_LITERAL, group references, ...


def _branch(branches: list[Any]) -> tuple[Strings | None, Clauses]:
    """An alternation: every string of every branch when few; a required set is one required set
    of each branch, united (tried with each branch's best, then each branch's smallest set)."""
    exacts, options = [], []
    for branch in branches:
        exact, clauses = _sequence(branch)
        exacts.append(exact)
        options.append(_clauses((exact, *clauses)))
    exact_union: Strings | None = None
    if all(e is not None for e in exacts):
        merged = frozenset().union(*(e for e in exacts if e is not None))
        exact_union = merged if len(merged) <= MAX_SET else None
    if not all(options):
        return exact_union, ()
    picks = [[o[min(rank, len(o) - 1)] for o in options] for rank in range(MAX_CLAUSES)]
    picks.append([min(o, key=len) for o in options])
    if len(options) <= 4:  # few branches: every mix of their two best sets
        picks += [list(mix) for mix in itertools.product(*(o[:2] for o in options))]
    united = []
    for pick in picks:
        merged = frozenset().union(*pick)
        united.append(merged if len(merged) <= MAX_UNION else None)
    return exact_union, _clauses(united)


def _sequence(items: Iterable[tuple[Any, Any]]) -> tuple[Strings | None, Clauses]:
    run: Strings | None = frozenset({""})
    broken = False
    candidates: list[Strings | None] = []
    for op, value in items:
        exact, clauses = _node(op, value)
        if exact is not None and run is not None:
            joined = _product(run, exact)
            if joined is not None:
                run = joined
                candidates += clauses
                continue
        # The run ends here: what it holds is required; so is whatever this node requires.
        broken = True
        candidates += [run, *clauses]
        run = exact if exact is not None else frozenset({""})
    candidates.append(run)
    return (None if broken else run), _clauses(candidates)


# The flags rule patterns are compiled with (re adds UNICODE to str patterns).
PATTERN_FLAGS = re.IGNORECASE | re.UNICODE


def trigger_clauses(pattern: str) -> tuple[frozenset[str], ...] | None:
    """Sets of case-folded literals such that every match of ``pattern`` contains a member of each,
    most selective first; None when not even one selective set is known. (The scanner reads them
    from the parse tree it already has, through :func:`clauses_of`.)"""
    try:
        tree = sre_parse.parse(pattern, PATTERN_FLAGS)
    except re.error:
        return None
    return clauses_of(tree)


def clauses_of(tree: Any) -> tuple[frozenset[str], ...] | None:
    """:func:`trigger_clauses` of a pattern already parsed by ``re._parser`` (read, never changed)."""
    exact, clauses = _sequence(tree.data)
    found: list[Strings] = []
    words: list[Strings] = []
    for clause in _clauses((exact, *clauses)):
        # A set holding all the words of one already chosen adds nothing: whatever passes that passes it.
        stripped = frozenset(s.strip() for s in clause)
        if (
            _quality(clause) >= MIN_TRIGGER_CHARS
            and (not found or _filters_well(clause))
            and not any(stripped >= other for other in words)
        ):
            found.append(clause)
            words.append(stripped)
            if len(found) == MAX_REQUIRED:
                break
    if not found:
        return None
    return tuple(frozenset(s.casefold() for s in c) for c in found)


def triggers(pattern: str) -> frozenset[str] | None:
    """Case-folded literals one of which occurs in every match of ``pattern``; None when unknown."""
    clauses = trigger_clauses(pattern)
    return clauses[0] if clauses else None
