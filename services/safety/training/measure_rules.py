"""Measures a rule pack alone on labelled lines: recall on unsafe lines, false positives on safe ones.

The pack is one layer of the input check; the category classifier catches paraphrases. So a rule
earns its place by precision: this script shows, per language and tier, how many unsafe lines any
input-stage rule fires on and how many safe lines it wrongly fires on, and per rule its hits on
safe lines, so an imprecise rule can be found and fixed.

Run from the repository root, on the TRAIN file only (the dev file is for final measurement)::

    .venv/bin/python services/safety/training/measure_rules.py
    .venv/bin/python services/safety/training/measure_rules.py --show-safe-hits 5 --show-misses zh:insult

Lines are JSON objects with ``text``, ``label`` (safe | unsafe), ``category``, ``lang`` and
``tier`` (core | soft | plain | tricky), as described in ``../shared/eval/README.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aigc_safety.normalize import normalize
from aigc_safety.rules import Rule, RulePack, default_pack_path, load_pack
from aigc_safety.types import Stage

DEFAULT_DATA = Path("../shared/eval/safety_train.jsonl")
# Targets for the rules alone (the classifier carries the rest of the recall).
FP_TARGET = {"plain": 0.01, "tricky": 0.03}


@dataclass(frozen=True, slots=True)
class Line:
    """One labelled line and the input rules that fired on it."""

    text: str
    label: str
    category: str
    lang: str
    tier: str
    fired: tuple[tuple[Rule, str], ...]  # (rule, first matched normalised text)


def read_lines(path: Path) -> Iterator[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, 1):
            if raw.strip():
                try:
                    yield json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise SystemExit(f"{path}:{number}: not JSON ({exc})") from None


def evaluate(pack: RulePack, path: Path) -> list[Line]:
    rules = pack.rules_for(Stage.INPUT)
    lines = []
    for item in read_lines(path):
        normalized = normalize(item["text"]).text
        fired = []
        for rule in rules:
            spans = rule.find(normalized)
            if spans:
                start, end = spans[0]
                fired.append((rule, normalized[start:end]))
        lines.append(
            Line(
                text=item["text"],
                label=item["label"],
                category=item.get("category", ""),
                lang=item.get("lang", "?"),
                tier=item.get("tier", "?"),
                fired=tuple(fired),
            )
        )
    return lines


def _rate(hit: int, total: int) -> str:
    return f"{hit:5d}/{total:<5d} {hit / total if total else 0.0:6.3f}"


def report(lines: list[Line], show_safe_hits: int, show_misses: list[str], show_hits: list[str]) -> bool:
    """Prints the figures; returns False when a false-positive target is missed."""
    ok = True
    by_group: dict[tuple[str, str, str], list[Line]] = defaultdict(list)
    for line in lines:
        by_group[(line.lang, line.label, line.tier)].append(line)

    print("== per language and tier (any input rule fires) ==")
    print("lang  label   tier     fired/total  rate    what it is")
    for (lang, label, tier), group in sorted(by_group.items()):
        fired = sum(1 for line in group if line.fired)
        what = "recall" if label == "unsafe" else "false positives"
        target = FP_TARGET.get(tier) if label == "safe" else None
        verdict = ""
        if target is not None:
            passed = fired / len(group) <= target
            ok = ok and passed
            verdict = f" (target <= {target}: {'ok' if passed else 'MISSED'})"
        print(f"{lang:4}  {label:6}  {tier:7}  {_rate(fired, len(group))}  {what}{verdict}")

    print("\n== recall per language and category (unsafe lines; soft tier apart) ==")
    by_category: dict[tuple[str, str, str], list[Line]] = defaultdict(list)
    for line in lines:
        if line.label == "unsafe":
            by_category[(line.lang, line.category, line.tier)].append(line)
    for (lang, category, tier), group in sorted(by_category.items()):
        fired = sum(1 for line in group if line.fired)
        same = sum(1 for line in group if any(rule.category == category for rule, _ in line.fired))
        print(f"{lang:4}  {category:26} {tier:5} {_rate(fired, len(group))}  (same-category rule: {same})")

    print("\n== per rule: hits on unsafe lines, and on safe lines by tier ==")
    unsafe_hits: Counter[str] = Counter()
    safe_hits: dict[str, Counter[str]] = defaultdict(Counter)
    examples: dict[str, list[str]] = defaultdict(list)
    rule_ids: dict[str, Rule] = {}
    for line in lines:
        for rule, matched in line.fired:
            rule_ids[rule.rule_id] = rule
            if line.label == "unsafe":
                unsafe_hits[rule.rule_id] += 1
            else:
                safe_hits[rule.rule_id][line.tier] += 1
                if len(examples[rule.rule_id]) < show_safe_hits:
                    examples[rule.rule_id].append(f"[{line.tier}] «{matched}» {line.text[:160]!r}")
    for rule_id in sorted(set(unsafe_hits) | set(safe_hits)):
        safe = safe_hits[rule_id]
        safe_text = ", ".join(f"{tier} {n}" for tier, n in sorted(safe.items())) or "0"
        print(f"{rule_id:52} unsafe {unsafe_hits[rule_id]:4d}   safe {safe_text}")
        for example in examples[rule_id]:
            print(f"      {example}")

    for spec in show_misses:
        lang, _, category = spec.partition(":")
        print(f"\n== unsafe {lang} {category} lines no rule fires on ==")
        for line in lines:
            if line.label == "unsafe" and line.lang == lang and line.category == category and not line.fired:
                print(f"  [{line.tier}] {line.text[:200]!r}")

    for rule_id in show_hits:
        print(f"\n== lines rule {rule_id} fires on ==")
        for line in lines:
            for rule, matched in line.fired:
                if rule.rule_id == rule_id:
                    print(f"  [{line.label}/{line.tier}] «{matched}» {line.text[:160]!r}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", type=Path, default=default_pack_path(), help="rule pack YAML")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labelled JSONL (the train file)")
    parser.add_argument("--show-safe-hits", type=int, default=3, metavar="N", help="safe examples per rule")
    parser.add_argument(
        "--show-misses", action="append", default=[], metavar="LANG:CATEGORY", help="list unsafe lines missed"
    )
    parser.add_argument(
        "--show-hits", action="append", default=[], metavar="RULE_ID", help="list a rule's hits"
    )
    args = parser.parse_args(argv)
    pack = load_pack(args.pack)
    print(f"pack {pack.policy_version}: {len(pack.rules)} rules; data {args.data}\n")
    ok = report(evaluate(pack, args.data), args.show_safe_hits, args.show_misses, args.show_hits)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
