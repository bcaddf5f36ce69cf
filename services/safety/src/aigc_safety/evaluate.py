"""``aigc safety eval``: precision, recall, F1 and false-positive rate of input checks on labelled
JSON lines, overall and per language, category and tier, with latency per check.

A line is ``{"text", "label": "safe" | "unsafe", "category"?, "lang"?, "tier"?, "source"?}``. A check
counts as flagging the line when its verdict blocks or sends it to review; redaction of personal
data is not a safety finding. Checks run one after another on one thread, as one core serves them.

Beyond the groups the command promises, the report shows where its findings come from: per source
(when lines name one; ``owner/repo/path`` sources group by ``owner/repo``), and per language and
tier how many flagged lines a rule found and how many the classifier alone.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aigc_common.errors import InvalidArgument
from aigc_safety.types import Action, Verdict

FLAGGED = frozenset({Action.BLOCK, Action.REVIEW})
# The length the latency target is stated for (issue 5: p99 <= 2 ms per check of up to 2,000 characters).
TARGET_CHARS = 2000


@dataclass(frozen=True, slots=True)
class LabelledText:
    """One line of an evaluation file."""

    text: str
    unsafe: bool
    category: str
    lang: str
    tier: str
    source: str = ""

    @property
    def lang_tier(self) -> str:
        """The cut the targets are stated per: ``zh/core``, ``en/tricky``."""
        return f"{self.lang}/{self.tier}"


def load_dataset(path: Path) -> list[LabelledText]:
    """Reads JSON lines; a bad line raises InvalidArgument naming the file, line and field."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path} line {number}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidArgument(f"{where}: not JSON ({exc.msg})", field="dataset") from None
            if not isinstance(raw, dict) or not isinstance(raw.get("text"), str):
                raise InvalidArgument(f"{where}: needs a string `text`", field="dataset")
            label = raw.get("label")
            if label not in ("safe", "unsafe"):
                raise InvalidArgument(
                    f"{where}: `label` must be safe or unsafe, got {label!r}", field="dataset"
                )
            rows.append(
                LabelledText(
                    raw["text"],
                    label == "unsafe",
                    str(raw.get("category") or "unknown"),
                    str(raw.get("lang") or "unknown"),
                    str(raw.get("tier") or "unknown"),
                    _source_group(raw.get("source")),
                )
            )
    if not rows:
        raise InvalidArgument(f"{path}: no lines to evaluate", field="dataset")
    return rows


def _source_group(source: object) -> str:
    """``owner/repo/path/...`` (the shared data's form) groups by repository; anything else as is."""
    if not isinstance(source, str) or not source.strip():
        return ""
    parts = source.strip().split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else source.strip()


_NOT_RULES = ("classifier.", "pii.")


def _found_by(verdict: Verdict) -> str:
    """Whether a flagging verdict had a rule among its hits or only the classifier (PII hits are
    not findings)."""
    if any(not h.rule_id.startswith(_NOT_RULES) for h in verdict.hits):
        return "rules"
    return "classifier_only"


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def group_figures(pairs: Sequence[tuple[bool, bool]]) -> dict[str, Any]:
    """``pairs`` of (gold unsafe, flagged). Figures that divide by zero are null."""
    tp = sum(1 for gold, got in pairs if gold and got)
    fp = sum(1 for gold, got in pairs if not gold and got)
    fn = sum(1 for gold, got in pairs if gold and not got)
    tn = sum(1 for gold, got in pairs if not gold and not got)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = (
        round(2 * precision * recall / (precision + recall), 4)
        if precision is not None and recall is not None and precision + recall > 0
        else None
    )
    return {
        "n": len(pairs),
        "unsafe": tp + fn,
        "safe": fp + tn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "false_positive_rate": _ratio(fp, fp + tn),
    }


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


def evaluate(
    rows: Sequence[LabelledText],
    check: Callable[[str], Verdict],
    *,
    progress: Callable[[int, int], None] | None = None,
    wrong: Callable[[LabelledText, Verdict], None] | None = None,
) -> dict[str, Any]:
    """Runs ``check`` on every line and returns the report (the JSON the command prints).
    ``wrong`` is called, outside the timed check, for each line whose verdict disagrees with its label."""
    results: list[tuple[LabelledText, bool]] = []
    latencies: list[float] = []
    found_by: dict[str, dict[str, int]] = {}
    for i, row in enumerate(rows, start=1):
        start = time.perf_counter()
        verdict = check(row.text)
        latencies.append(time.perf_counter() - start)
        flagged = verdict.action in FLAGGED
        results.append((row, flagged))
        if wrong is not None and flagged != row.unsafe:
            wrong(row, verdict)
        counts = found_by.setdefault(row.lang_tier, {"rules": 0, "classifier_only": 0})
        if flagged:
            counts[_found_by(verdict)] += 1
        if progress is not None and (i % 500 == 0 or i == len(rows)):
            progress(i, len(rows))

    def grouped(key: Callable[[LabelledText], str]) -> dict[str, dict[str, Any]]:
        groups: dict[str, list[tuple[bool, bool]]] = {}
        for row, flagged in results:
            groups.setdefault(key(row), []).append((row.unsafe, flagged))
        return {name: group_figures(pairs) for name, pairs in sorted(groups.items())}

    ordered = sorted(latencies)
    # The latency target covers checks of up to TARGET_CHARS characters; longer lines count above.
    in_scope = sorted(t for t, row in zip(latencies, rows, strict=True) if len(row.text) <= TARGET_CHARS)
    report: dict[str, Any] = {
        "n": len(rows),
        "overall": group_figures([(row.unsafe, flagged) for row, flagged in results]),
        "by_lang": grouped(lambda r: r.lang),
        "by_category": grouped(lambda r: r.category),
        "by_tier": grouped(lambda r: r.tier),
        # The targets are per language with soft lines apart, so this cut is reported too.
        "by_lang_tier": grouped(lambda r: r.lang_tier),
        "flagged_by": dict(sorted(found_by.items())),
        "latency_ms": {
            "p50": round(_percentile(ordered, 0.50) * 1000, 4),
            "p99": round(_percentile(ordered, 0.99) * 1000, 4),
            f"up_to_{TARGET_CHARS}_chars": {
                "n": len(in_scope),
                "p50": round(_percentile(in_scope, 0.50) * 1000, 4) if in_scope else None,
                "p99": round(_percentile(in_scope, 0.99) * 1000, 4) if in_scope else None,
            },
        },
        "checks_per_second": round(len(rows) / sum(latencies), 1) if sum(latencies) else None,
    }
    if any(row.source for row in rows):
        report["by_source"] = grouped(lambda r: r.source or "unknown")
    return report


def _fmt(value: float | None) -> str:
    return "    -" if value is None else f"{value:5.3f}"


def format_report(report: dict[str, Any], title: str = "") -> str:
    """The report as aligned text tables."""
    lines = [title] if title else []

    def table(name: str, groups: Iterable[tuple[str, dict[str, Any]]]) -> None:
        groups = list(groups)
        width = max([28, *(len(group) for group, _ in groups)])
        lines.append("")
        lines.append(f"{name}")
        lines.append(
            f"{'group':<{width}} {'n':>5} {'unsafe':>6} {'prec':>5} {'recall':>6} {'f1':>5} {'fpr':>5}"
        )
        for group, g in groups:
            lines.append(
                f"{group:<{width}} {g['n']:>5} {g['unsafe']:>6} {_fmt(g['precision'])} {_fmt(g['recall']):>6} "
                f"{_fmt(g['f1'])} {_fmt(g['false_positive_rate'])}"
            )

    table("overall", [("all", report["overall"])])
    table("by language", report["by_lang"].items())
    table("by tier", report["by_tier"].items())
    table("by language and tier", report["by_lang_tier"].items())
    table("by category", report["by_category"].items())
    if "by_source" in report:
        table("by source", report["by_source"].items())
    if report.get("flagged_by"):
        lines.append("")
        lines.append("flagged lines found by a rule / by the classifier alone")
        for group, counts in report["flagged_by"].items():
            lines.append(f"{group:<28} {counts['rules']:>5} / {counts['classifier_only']}")
    lat = report["latency_ms"]
    lines.append("")
    lines.append(
        f"latency per check: p50 {lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms; "
        f"{report['checks_per_second']} checks/s on one thread"
    )
    scoped = lat.get(f"up_to_{TARGET_CHARS}_chars")
    if scoped and scoped["n"]:
        lines.append(
            f"  on the {scoped['n']} lines of up to {TARGET_CHARS:,} characters: "
            f"p50 {scoped['p50']:.3f} ms, p99 {scoped['p99']:.3f} ms"
        )
    return "\n".join(lines)


def progress_to_stderr(done: int, total: int) -> None:
    print(f"[safety eval] {done}/{total} checked", file=sys.stderr, flush=True)


class ErrorsFile:
    """Writes the lines a policy got wrong to a JSON-lines file the operator named, to find the
    gaps a rule could close and the benign phrasings it must not touch: the line's own fields
    (``source`` grouped as in ``by_source``), ``outcome`` (``missed`` or ``false_positive``), the verdict's action and hits (rule id,
    category, score), and the classifier's unsafe score for the text (for a miss: how far below
    the threshold it was). The file holds the dataset's texts, so it is created readable by its
    owner only; nothing of it is printed or logged."""

    def __init__(self, path: Path, score: Callable[[str], float | None]) -> None:
        self._path = path
        self._score = score
        self._file = open(path, "w", encoding="utf-8", opener=lambda p, flags: os.open(p, flags, 0o600))  # noqa: SIM115 (closed by close())
        os.chmod(path, 0o600)  # also when it was there before, with wider permissions
        self.missed = 0
        self.false_positives = 0

    def __call__(self, row: LabelledText, verdict: Verdict) -> None:
        score = self._score(row.text)
        record = {
            "text": row.text,
            "label": "unsafe" if row.unsafe else "safe",
            "category": row.category,
            "lang": row.lang,
            "tier": row.tier,
            "source": row.source,
            "outcome": "missed" if row.unsafe else "false_positive",
            "action": verdict.action.value,
            "hits": [
                {"rule_id": h.rule_id, "category": h.category, **({"score": h.score} if h.score else {})}
                for h in verdict.hits
            ],
            "classifier_score": None if score is None else round(score, 4),
        }
        if row.unsafe:
            self.missed += 1
        else:
            self.false_positives += 1
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self._file.close()
        print(
            f"[safety eval] wrote {self.missed} missed unsafe lines and {self.false_positives} "
            f"flagged safe lines to {self._path}",
            file=sys.stderr,
        )


class _DiscardAudit:
    """Evaluation checks are not requests: their verdicts are not audit records."""

    def record(self, record: object) -> None:
        return None


def run(dataset: Path, policy: str = "", output_format: str = "text", errors: Path | None = None) -> int:
    """The command: builds the safety core from ``AIGC_SAFETY_*`` settings (packs, policies,
    classifier) in this process, evaluates, prints; with ``errors``, also writes the lines it got
    wrong there (see :class:`ErrorsFile`). Returns the exit code."""
    from prometheus_client import CollectorRegistry

    from aigc_common.errors import ConfigError
    from aigc_common.settings import load_settings
    from aigc_safety.classifier import SafetyClassifier
    from aigc_safety.core import SafetyCore
    from aigc_safety.metrics import SafetyMetrics
    from aigc_safety.normalize import use_native_fold
    from aigc_safety.policy import PolicyStore
    from aigc_safety.settings import SafetySettings

    try:
        settings = load_settings(SafetySettings)
        use_native_fold(settings.fold_native)
        core = SafetyCore(
            PolicyStore(
                settings.packs_dir,
                settings.policies_dir,
                native_scan=settings.scanner_native,
                facts_cache=settings.facts_cache,
            ),
            SafetyMetrics(CollectorRegistry()),
            classifier=SafetyClassifier.load(settings.classifier_path, use_native=settings.classifier_native)
            if settings.classifier_enabled
            else None,
            audit=_DiscardAudit(),
            default_policy=settings.default_policy,
            max_text_chars=settings.max_text_chars,
        )
        chosen = core.policy("", policy)
        rows = load_dataset(dataset)
        wrong = ErrorsFile(errors, core.classifier_score) if errors is not None else None
    except (ConfigError, InvalidArgument, OSError) as exc:
        print(f"aigc safety eval: {exc}", file=sys.stderr)
        return 2
    print(
        f"[safety eval] {len(rows)} lines from {dataset}, policy {chosen.version}, "
        f"classifier {core.classifier_version or 'off'} ({core.scoring_paths})",
        file=sys.stderr,
    )
    # As the service does at start-up: the one-time work of first checks stays out of the figures.
    core.warm_up()
    core.check_input("eval", chosen.name, "warm up")
    try:
        report = evaluate(
            rows,
            lambda text: core.check_input("eval", chosen.name, text),
            progress=progress_to_stderr,
            wrong=wrong,
        )
    finally:
        if wrong is not None:
            wrong.close()
    report["policy_version"] = chosen.version
    report["classifier_version"] = core.classifier_version
    if output_format == "json":
        print(json.dumps(report, ensure_ascii=False, sort_keys=True))
    else:
        print(format_report(report, f"{dataset} under {chosen.version}"))
    return 0
