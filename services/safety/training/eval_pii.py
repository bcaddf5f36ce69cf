"""Measures the PII detectors on labelled text: precision, recall and F1 per entity type.

Run from the repository root::

    .venv/bin/python services/safety/training/eval_pii.py
    .venv/bin/python services/safety/training/eval_pii.py --format json
    .venv/bin/python services/safety/training/eval_pii.py --show-errors 10 --timing

Lines are JSON objects ``{"text", "has_pii", "entities": [{"type", "value", "start", "end", ...}],
"lang", ...}`` as described in ``../shared/eval/README.md``; spans are code-point offsets into
``text``, like ours. The file's types are coarser than our detectors, so ours are mapped onto
them (:data:`TYPE_MAP`); PERSON is a type we do not detect and is reported as not covered, and
our types the file does not label (IP addresses, passports, SSNs) are counted but not scored.

Two ways to count the gold entities, both reported:

- ``valid`` (the headline): an identity number or card number whose ``checksum_valid`` is false
  is not a gold entity. A number that fails the GB 11643 checksum or the Luhn check is not a valid
  identity or card number, and our detectors reject it on purpose (that is what keeps order
  numbers from being redacted). Such spans are ignored: missing them is no miss, and finding one
  would not count as a false positive.
- ``all``: every labelled entity counts, as the file's authors labelled it.

Matching is one to one within a type: ``exact`` needs the same start and end, ``overlap`` any
shared character. The printed figures never include the text or the values unless
``--show-errors`` asks for examples.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aigc_safety.normalize import normalize
from aigc_safety.pii import PII_TYPES, find_pii

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "eval" / "pii_dev.jsonl"

# Our detector -> the dataset's type. Several of ours fold into one of theirs: the file has one
# PHONE type for every country and one BANK_CARD type for UnionPay and international cards.
TYPE_MAP: dict[str, str] = {
    "cn_resident_id": "CN_ID_CARD",
    "cn_mobile": "PHONE",
    "cn_landline": "PHONE",
    "us_phone": "PHONE",
    "intl_phone": "PHONE",
    "email": "EMAIL",
    "bank_card": "BANK_CARD",
    "credit_card": "BANK_CARD",
}
COVERED: tuple[str, ...] = ("CN_ID_CARD", "PHONE", "EMAIL", "BANK_CARD")
NOT_COVERED: tuple[str, ...] = ("PERSON",)
POLICIES: tuple[str, ...] = ("valid", "all")
MODES: tuple[str, ...] = ("exact", "overlap")

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Line:
    """One labelled line with our predictions, both as (dataset type, span)."""

    number: int
    text: str
    lang: str
    gold: tuple[tuple[str, Span, bool], ...]  # (type, span, counts under the "valid" policy)
    predicted: tuple[tuple[str, Span, str], ...]  # (dataset type or "", span, our type)


@dataclass(slots=True)
class Score:
    """Counts for one type, policy and matching mode."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    misses: list[tuple[int, Span]] = field(default_factory=list)
    false_positives: list[tuple[int, Span]] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
        }


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, 1):
            if raw.strip():
                try:
                    yield json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise SystemExit(f"{path}:{number}: not JSON ({exc})") from None


def predict(raw: Iterable[dict[str, Any]]) -> list[Line]:
    """Runs every detector on every line."""
    lines = []
    for number, record in enumerate(raw, 1):
        text = record["text"]
        gold = tuple(
            (e["type"], (e["start"], e["end"]), e.get("checksum_valid", True) is not False)
            for e in record.get("entities", ())
        )
        predicted = tuple((TYPE_MAP.get(m.type, ""), m.span, m.type) for m in find_pii(normalize(text)))
        lines.append(Line(number, text, record.get("lang", ""), gold, predicted))
    return lines


def _overlaps(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def score(lines: Iterable[Line], kind: str, policy: str, mode: str) -> Score:
    """Precision and recall of one dataset type under a gold policy and a matching mode."""
    result = Score()
    same = (lambda a, b: a == b) if mode == "exact" else _overlaps
    for line in lines:
        gold = [(span, valid) for t, span, valid in line.gold if t == kind]
        counted = [span for span, valid in gold if valid or policy == "all"]
        ignored = [span for span, valid in gold if not valid and policy == "valid"]
        unmatched = list(counted)
        for t, span, _ in line.predicted:
            if t != kind:
                continue
            hit = next((g for g in unmatched if same(span, g)), None)
            if hit is not None:
                unmatched.remove(hit)
                result.tp += 1
            elif any(same(span, g) for g in ignored) or any(same(span, g) for g in counted):
                # Matches a span we were told to ignore, or a second prediction on a gold span
                # already matched (overlap mode): neither right nor wrong.
                continue
            else:
                result.fp += 1
                result.false_positives.append((line.number, span))
        result.fn += len(unmatched)
        result.misses.extend((line.number, span) for span in unmatched)
    return result


def report(lines: list[Line]) -> dict[str, Any]:
    """Every figure the script prints, as one JSON-ready object."""
    out: dict[str, Any] = {"lines": len(lines), "policies": {}}
    for policy in POLICIES:
        per_policy: dict[str, Any] = {}
        for mode in MODES:
            per_type = {kind: score(lines, kind, policy, mode) for kind in COVERED}
            micro = Score(
                tp=sum(s.tp for s in per_type.values()),
                fp=sum(s.fp for s in per_type.values()),
                fn=sum(s.fn for s in per_type.values()),
            )
            per_lang: dict[str, dict[str, Any]] = {}
            for lang in sorted({line.lang for line in lines}):
                subset = [line for line in lines if line.lang == lang]
                per_lang[lang] = {kind: score(subset, kind, policy, mode).as_dict() for kind in COVERED}
            per_policy[mode] = {
                "types": {kind: s.as_dict() for kind, s in per_type.items()},
                "micro": micro.as_dict(),
                "by_lang": per_lang,
            }
        out["policies"][policy] = per_policy
    gold_counts = Counter(t for line in lines for t, _, _ in line.gold)
    out["gold_entities"] = dict(sorted(gold_counts.items()))
    out["gold_failing_checksum"] = dict(
        sorted(Counter(t for line in lines for t, _, valid in line.gold if not valid).items())
    )
    out["not_covered"] = {kind: gold_counts.get(kind, 0) for kind in NOT_COVERED}
    out["predictions_by_detector"] = dict(
        sorted(Counter(ours for line in lines for _, _, ours in line.predicted).items())
    )
    out["unscored_predictions"] = dict(
        sorted(Counter(ours for line in lines for t, _, ours in line.predicted if not t).items())
    )
    out["detectors"] = list(PII_TYPES)
    return out


def timing(lines: list[Line], rounds: int = 7) -> dict[str, float]:
    """Per-call time of detection on each dev line and on 2,000-character texts made of dev lines.

    CPU time (``process_time``), and for each text the best of ``rounds`` calls, so other work on
    a shared machine disturbs the figures less; p50 and p99 are then taken across texts.
    Normalisation is reported apart because the safety core does it once for the rule pack
    anyway. A rough figure for this script's report, not a benchmark with a baseline.
    """
    texts = [line.text for line in lines]
    long_texts = []
    current = ""
    for text in texts * 4:
        current += text
        if len(current) >= 2000:
            long_texts.append(current[:2000])
            current = ""
    out: dict[str, float] = {}
    for name, sample in (("per_line", texts), ("per_2000_chars", long_texts)):
        detect: list[float] = []
        norm: list[float] = []
        for text in sample:
            normalized = normalize(text)
            best_detect = best_norm = float("inf")
            for _ in range(rounds):
                t0 = time.process_time_ns()
                find_pii(normalized)
                t1 = time.process_time_ns()
                normalize(text)
                t2 = time.process_time_ns()
                best_detect = min(best_detect, (t1 - t0) / 1000)
                best_norm = min(best_norm, (t2 - t1) / 1000)
            detect.append(best_detect)
            norm.append(best_norm)
        detect.sort()
        out[f"{name}_texts"] = len(sample)
        out[f"{name}_detect_p50_us"] = round(statistics.median(detect), 1)
        out[f"{name}_detect_p99_us"] = round(detect[int(len(detect) * 0.99)], 1)
        out[f"{name}_detect_max_us"] = round(detect[-1], 1)
        out[f"{name}_normalize_p50_us"] = round(statistics.median(norm), 1)
    return out


def _print_text(result: dict[str, Any]) -> None:
    print(f"{result['lines']} lines; gold entities {result['gold_entities']}")
    print(f"gold entities failing their checksum: {result['gold_failing_checksum']}")
    for policy in POLICIES:
        label = "checksum-valid gold only" if policy == "valid" else "all gold, as labelled"
        print(f"\n== gold: {label}")
        for mode in MODES:
            block = result["policies"][policy][mode]
            print(f"-- {mode} span match")
            print(f"{'type':12s} {'tp':>5s} {'fp':>5s} {'fn':>5s} {'prec':>7s} {'recall':>7s} {'f1':>7s}")
            for kind, s in [*block["types"].items(), ("micro", block["micro"])]:
                print(
                    f"{kind:12s} {s['tp']:5d} {s['fp']:5d} {s['fn']:5d} "
                    f"{s['precision']:7.3f} {s['recall']:7.3f} {s['f1']:7.3f}"
                )
            for lang, types in block["by_lang"].items():
                cells = "  ".join(f"{k} R {v['recall']:.3f} P {v['precision']:.3f}" for k, v in types.items())
                print(f"   {lang}: {cells}")
    for kind, count in result["not_covered"].items():
        print(f"\n{kind}: not covered (no detector); {count} gold entities not scored")
    print(f"predictions by detector: {result['predictions_by_detector']}")
    print(f"predictions of types the file does not label (not scored): {result['unscored_predictions']}")
    if "timing" in result:
        print(f"timing (CPU, microseconds): {result['timing']}")


def _print_errors(lines: list[Line], limit: int) -> None:
    by_number = {line.number: line for line in lines}
    for kind in COVERED:
        s = score(lines, kind, "valid", "exact")
        for title, items in (("missed", s.misses), ("false positive", s.false_positives)):
            for number, (start, end) in items[:limit]:
                text = by_number[number].text
                window = text[max(0, start - 20) : start] + "⟦" + text[start:end] + "⟧" + text[end : end + 20]
                print(f"{kind} {title} line {number}: {window!r}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--dataset", type=Path, default=DEFAULT_DATA, help="JSONL file with labelled entities"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    parser.add_argument(
        "--show-errors",
        type=int,
        default=0,
        metavar="N",
        help="print N misses and false positives per type (with their text) to stderr",
    )
    parser.add_argument("--timing", action="store_true", help="also measure detection time")
    args = parser.parse_args(argv)
    if not args.dataset.is_file():
        print(f"no dataset at {args.dataset}; pass --dataset", file=sys.stderr)
        return 2
    lines = predict(read_lines(args.dataset))
    result = report(lines)
    if args.timing:
        result["timing"] = timing(lines)
    if args.format == "json":
        print(json.dumps(result, ensure_ascii=False))
    else:
        _print_text(result)
    if args.show_errors:
        _print_errors(lines, args.show_errors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
