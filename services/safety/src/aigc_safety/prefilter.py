"""Trigger words of a regular expression: literals at least one of which occurs in every match.

A rule pack has hundreds of patterns and most texts match none of them. Running every pattern over
every text costs about a millisecond per line; instead each pattern's triggers go into one
Aho-Corasick automaton, one pass finds which triggers occur, and only the patterns they name run.
A pattern whose triggers cannot be worked out (or are too short to be selective) always runs, so
the prefilter changes speed, never results.

The analysis walks the parsed pattern (``re._parser``, the parser ``re.compile`` itself uses):
concatenated literals form runs, alternations union their branches, optional parts extend a run
with the empty string, and anything open-ended (``.``, ``\\w+``, character classes) ends a run.
Of all the runs that every match must contain, the most selective (longest shortest member) wins.
"""

from __future__ import annotations

import functools
import re
import re._constants as sre
import re._parser as sre_parse
from collections.abc import Iterable
from typing import Any

# Bigger sets stop being selective and cost automaton memory; such nodes count as unknown.
MAX_SET = 64
MIN_TRIGGER_CHARS = 2

Strings = frozenset[str]


def _product(left: Strings, right: Strings) -> Strings | None:
    if len(left) * len(right) > MAX_SET:
        return None
    return frozenset(a + b for a in left for b in right)


def _quality(strings: Strings | None) -> int:
    if not strings:
        return 0
    return min(len(s.strip()) for s in strings)


def _best(*candidates: Strings | None) -> Strings | None:
    usable = [c for c in candidates if c is not None and _quality(c) > 0]
    if not usable:
        return None
    return max(usable, key=lambda c: (_quality(c), -len(c)))


def _charset(items: list[tuple[Any, Any]]) -> Strings | None:
    chars = []
    for op, value in items:
        if op is sre.LITERAL:
            chars.append(chr(value))
        else:
            return None  # ranges, categories, negation: too wide to enumerate
    return frozenset(chars) if len(chars) <= 8 else None


def _node(op: Any, value: Any) -> tuple[Strings | None, Strings | None]:
    """(exact, required) of one parsed node: every string it can match when few, and a set of
    which every match contains one."""
    if op is sre.LITERAL:
        return frozenset({chr(value)}), None
    if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
        return frozenset({""}), None  # zero-width: consumes nothing
    if op is sre.IN:
        return _charset(value), None
    if op is sre.SUBPATTERN:
        return _sequence(value[-1])
    if op is sre.BRANCH:
        exacts, requireds = [], []
        for branch in value[1]:
            exact, required = _sequence(branch)
            exacts.append(exact)
            requireds.append(_best(exact, required))
        exact_union: Strings | None = None
        if all(e is not None for e in exacts):
            merged = frozenset().union(*(e for e in exacts if e is not None))
            exact_union = merged if len(merged) <= MAX_SET else None
        required_union: Strings | None = None
        if all(r is not None for r in requireds):
            merged = frozenset().union(*(r for r in requireds if r is not None))
            required_union = merged if len(merged) <= MAX_SET else None
        return exact_union, required_union
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", None)):
        low, high, sub = value
        exact, required = _sequence(sub)
        if low == 0 and high == 1 and exact is not None:
            return exact | {""}, None
        if low == 1 and high == 1:
            return exact, required
        return None, (_best(exact, required) if low >= 1 else None)
    return None, None  # ANY, CATEGORY, NOT_LITERAL, group references, ...


def _sequence(items: Iterable[tuple[Any, Any]]) -> tuple[Strings | None, Strings | None]:
    run: Strings | None = frozenset({""})
    broken = False
    candidates: list[Strings | None] = []
    for op, value in items:
        exact, required = _node(op, value)
        if exact is not None and run is not None:
            joined = _product(run, exact)
            if joined is not None:
                run = joined
                continue
        # The run ends here: what it holds is required; so is whatever this node requires.
        broken = True
        candidates += [run, required]
        run = exact if exact is not None else frozenset({""})
    candidates.append(run)
    return (None if broken else run), _best(*candidates)


@functools.lru_cache(maxsize=4096)  # a pack's patterns are analysed once for all its stages and policies
def triggers(pattern: str) -> frozenset[str] | None:
    """Case-folded literals one of which occurs in every match of ``pattern``; None when unknown."""
    try:
        parsed = sre_parse.parse(pattern, re.IGNORECASE)
    except re.error:
        return None
    exact, required = _sequence(parsed.data)
    found = _best(exact, required)
    if found is None or _quality(found) < MIN_TRIGGER_CHARS:
        return None
    return frozenset(s.casefold() for s in found)
