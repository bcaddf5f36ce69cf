"""Trains the safety classifier shipped in ``aigc_safety/models/`` and prints its cross-validated
figures per language and tier.

Usage, from the repository root (needs the dev extras: scikit-learn, numpy)::

    .venv/bin/python services/safety/training/train_classifier.py            # train and write the artifact
    .venv/bin/python services/safety/training/train_classifier.py --dry-run  # figures only, write nothing
    .venv/bin/python services/safety/training/train_classifier.py --train PATH --out PATH

Data: ``../shared/eval/safety_train.jsonl`` (relative to the repository root; ``--train`` overrides)
plus every ``*.jsonl`` in ``services/safety/training/data/`` (examples the project wrote itself),
all normalised with :func:`aigc_safety.normalize.normalize` as the service normalises its input.
The development and hold-out sets are never read: the script refuses a ``--train`` path that
looks like one of them, and every threshold below comes from cross-validation on the training
data alone.

Method, single-threaded and with fixed seeds, so that the same data and library versions give the
same bytes (about 60 seconds on one core):

1. Features are :func:`aigc_safety.classifier.text_features` (character 1-4-grams, Latin words and
   word pairs), counted and divided by the square root of the text's number of features: exactly
   what the serving code computes.
2. Binary head: n-grams seen in at least two training texts, scaled by their naive-Bayes log-count
   ratio (NB-LR, Wang & Manning 2012), then an L2 logistic regression with balanced classes. The
   vocabulary is pruned to the ``--max-features`` largest effective weights and the model refitted
   on what is kept. The project's own lines and the tricky benign lines weigh more
   (``--project-weight``, ``--tricky-weight``). The weight of a line in one of
   ``--source-balance-langs`` (Chinese) is divided by the number of lines of its source and label
   raised to ``--source-balance``, each language's and label's total weight kept: otherwise a few
   large sources (XSafety's risk files, COLD, JADE-RAG) set most of the weights and the model
   learns their style. "soft" lines (labelled unsafe by their source but harmless on their face)
   are left out of the binary head and reported apart.
3. Operating point: 5-fold stratified cross-validation of the whole of step 2 gives an
   out-of-fold score for every line. For each language the lowest threshold that keeps the
   false-positive rate at most ``--max-fpr-plain`` on plain benign lines and ``--max-fpr-tricky``
   on tricky benign lines is taken, and stored as a per-language offset so that the artifact's
   one threshold (0.5) is that operating point in both languages.
4. Category head: one-vs-rest logistic regressions over the unsafe lines' categories (soft lines
   included) on the same features, sparsified to the ``--category-weights`` largest weights; its
   accuracy is cross-validated in the same folds.
5. Source-grouped cross-validation of the binary head (every source file held out whole) reports
   how the model does on sources it has never seen, at the shipped operating point and at the one
   it would choose itself; it is stored in the artifact and does not set the threshold.
6. The artifact is loaded back through :class:`aigc_safety.classifier.SafetyClassifier` and its
   scores compared with the trained model's, on both scoring paths.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from threadpoolctl import threadpool_limits

from aigc_safety.classifier import (
    ARTIFACT_FORMAT,
    FORMAT_VERSION,
    MODEL_FAMILY,
    SafetyClassifier,
    default_artifact_path,
    detect_language,
    text_features,
)
from aigc_safety.normalize import normalize
from aigc_safety.types import CATEGORIES

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_TRAIN = REPO_ROOT.parent / "shared" / "eval" / "safety_train.jsonl"
PROJECT_DATA = Path(__file__).resolve().parent / "data"
SEED = 20240611
LANGS = ("zh", "en")
TIERS = ("core", "soft", "plain", "tricky")
# The category head names CATEGORIES (aigc_safety.types). The train file's six "inappropriate_advice"
# lines (misinformation and fraud from JailBench's seed set) fall outside that taxonomy: they train
# the binary head but not the category head.
THRESHOLD = 0.5
CATEGORY_MIN_SCORE = 0.25


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled line, normalised."""

    text: str
    label: int  # 1 = unsafe
    category: str
    lang: str  # as labelled
    detected: str  # as the classifier's language offset will see it
    tier: str
    source: str
    group: str  # the source file (project lines: language + subcategory), for source-grouped CV
    weight: float


@dataclass(frozen=True, slots=True)
class BinaryModel:
    """Effective weights (NB ratio already folded in) over columns of the global feature matrix."""

    columns: np.ndarray
    weights: np.ndarray
    bias: float

    def logits(self, x: sp.csr_matrix) -> np.ndarray:
        return np.asarray(x[:, self.columns] @ self.weights).ravel() + self.bias


def log(message: str) -> None:
    print(message, flush=True)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_examples(
    train_path: Path, data_dir: Path, project_weight: float, tricky_weight: float
) -> list[Example]:
    """Training lines plus the project's own lines, deduplicated on normalised text. A text that
    appears with both labels is dropped entirely rather than guessed. Tricky benign lines weigh
    more because over-blocking them is the failure business users notice first."""
    sources = [(train_path, 1.0)] + [(p, project_weight) for p in sorted(data_dir.glob("*.jsonl"))]
    by_text: dict[str, list[Example]] = collections.defaultdict(list)
    for path, weight in sources:
        lines = read_jsonl(path)
        log(f"  {path}: {len(lines)} lines")
        for line in lines:
            if (
                line["label"] not in ("safe", "unsafe")
                or line["lang"] not in LANGS
                or line["tier"] not in TIERS
            ):
                raise SystemExit(f"{path}: unexpected label/lang/tier in {line!r:.200}")
            text = normalize(line["text"]).text
            by_text[text].append(
                Example(
                    text=text,
                    label=int(line["label"] == "unsafe"),
                    category=line["category"],
                    lang=line["lang"],
                    detected=detect_language(text),
                    tier=line["tier"],
                    source=line["source"],
                    group=_group(line),
                    weight=weight * (tricky_weight if line["tier"] == "tricky" else 1.0),
                )
            )
    examples, conflicts, duplicates = [], 0, 0
    for copies in by_text.values():
        if len({c.label for c in copies}) > 1:
            conflicts += 1
            continue
        duplicates += len(copies) - 1
        examples.append(copies[0])
    log(
        f"  {len(examples)} distinct texts ({duplicates} duplicates merged, {conflicts} texts with both labels dropped)"
    )
    return examples


def balance_sources(examples: Sequence[Example], power: float, langs: Sequence[str]) -> np.ndarray:
    """Sample weights with the weight of each line in one of ``langs`` divided by (lines sharing
    its source group and label) ** power, rescaled so that each language and label keeps its total
    weight. Power 0 leaves the weights as they are; 1 gives every source the same say."""
    weights = np.array([e.weight for e in examples], dtype=float)
    if power == 0:
        return weights
    size = collections.Counter((e.group, e.label) for e in examples)
    balanced = weights * np.array(
        [size[(e.group, e.label)] ** -power if e.lang in langs else 1.0 for e in examples]
    )
    language = np.array([e.lang for e in examples])
    label = np.array([e.label for e in examples])
    for lang in langs:
        for value in (0, 1):
            chosen = (language == lang) & (label == value)
            if chosen.any():
                balanced[chosen] *= weights[chosen].sum() / balanced[chosen].sum()
    return balanced


def _group(line: dict[str, Any]) -> str:
    """The unit source-grouped cross-validation holds out whole: the source file of a public line,
    the language and subcategory of a project line (the project writes its lines in batches by
    kind, so a batch is the closest thing it has to a source)."""
    source = str(line["source"])
    if source == "aigc-project":
        return f"aigc-project/{line['lang']}/{line.get('subcategory', '')}"
    if source.endswith(".md"):  # one prompt per file (awesome-chatgpt-prompts-zh): the folder is the source
        return source.rsplit("/", 1)[0]
    return source


def feature_matrix(examples: Sequence[Example]) -> tuple[sp.csr_matrix, list[str]]:
    """Rows: texts; columns: every feature seen in at least two texts (a feature seen once can
    carry no weight in any fold, so dropping it here changes nothing); values: occurrence count
    divided by the square root of the text's total number of feature occurrences."""
    per_text = [collections.Counter(text_features(e.text)) for e in examples]
    document_frequency: collections.Counter[str] = collections.Counter()
    for counts in per_text:
        document_frequency.update(counts.keys())
    names = sorted(f for f, df in document_frequency.items() if df >= 2)
    column = {f: i for i, f in enumerate(names)}
    indptr: list[int] = [0]
    indices: list[int] = []
    data: list[float] = []
    for counts in per_text:
        scale = 1.0 / math.sqrt(max(1, sum(counts.values())))
        kept = sorted((column[f], n * scale) for f, n in counts.items() if f in column)
        indices.extend(i for i, _ in kept)
        data.extend(v for _, v in kept)
        indptr.append(len(indices))
    matrix = sp.csr_matrix(
        (np.array(data), np.array(indices), np.array(indptr)), shape=(len(examples), len(names))
    )
    return matrix, names


def fit_binary(x: sp.csr_matrix, y: np.ndarray, w: np.ndarray, *, c: float, max_features: int) -> BinaryModel:
    """Step 2 of the module docstring, on the given rows only."""
    present = x.copy()
    present.data[:] = 1.0
    columns = np.flatnonzero(np.asarray(present.sum(axis=0)).ravel() >= 2)
    model = _fit_nb_lr(x, y, w, columns, c)
    if len(columns) > max_features:
        keep = np.sort(np.argsort(-np.abs(model.weights), kind="stable")[:max_features])
        model = _fit_nb_lr(x, y, w, model.columns[keep], c)
    return model


def _fit_nb_lr(x: sp.csr_matrix, y: np.ndarray, w: np.ndarray, columns: np.ndarray, c: float) -> BinaryModel:
    sub = x[:, columns]
    present = sub.copy()
    present.data[:] = 1.0
    positive = 1.0 + np.asarray(present[y == 1].sum(axis=0)).ravel()
    negative = 1.0 + np.asarray(present[y == 0].sum(axis=0)).ravel()
    ratio = np.log((positive / positive.sum()) / (negative / negative.sum()))
    classifier = LogisticRegression(
        C=c, class_weight="balanced", solver="liblinear", max_iter=5000, random_state=SEED
    )
    classifier.fit(sub @ sp.diags(ratio), y, sample_weight=w)
    return BinaryModel(columns, classifier.coef_.ravel() * ratio, float(classifier.intercept_[0]))


def operating_logit(
    logits: np.ndarray, examples: Sequence[Example], lang: str, max_plain: float, max_tricky: float
) -> float:
    """Lowest logit threshold at which this language's plain and tricky benign lines stay within
    their false-positive budgets (texts grouped by detected language, as at serving time)."""
    limits = []
    for tier, budget in (("plain", max_plain), ("tricky", max_tricky)):
        scores = np.sort(
            [z for z, e in zip(logits, examples, strict=True) if e.detected == lang and e.tier == tier]
        )
        if len(scores) == 0:
            continue
        allowed = math.floor(budget * len(scores))  # false positives this tier may have
        # flagged = scores >= t; the threshold just above the (allowed+1)-th highest score
        limits.append(
            float(np.nextafter(scores[len(scores) - allowed - 1], np.inf))
            if allowed < len(scores)
            else -math.inf
        )
    return max(limits) if limits else 0.0


def report(
    scores: np.ndarray, examples: Sequence[Example], threshold: float, title: str
) -> dict[str, dict[str, float]]:
    """Flag rate per language and tier (recall for core/soft, false-positive rate for plain/tricky)."""
    log(f"\n{title} (flagged = score >= {threshold}):")
    log(f"  {'lang':4} {'tier':6} {'lines':>6} {'flagged':>8}  meaning")
    figures: dict[str, dict[str, float]] = {}
    for lang in LANGS:
        figures[lang] = {}
        for tier in TIERS:
            sel = [
                s >= threshold
                for s, e in zip(scores, examples, strict=True)
                if e.lang == lang and e.tier == tier
            ]
            if not sel:
                continue
            rate = float(np.mean(sel))
            figures[lang][tier] = round(rate, 4)
            meaning = {
                "core": "recall",
                "soft": "flag rate (soft, reported apart)",
                "plain": "FPR",
                "tricky": "FPR",
            }[tier]
            log(f"  {lang:4} {tier:6} {len(sel):6d} {rate:8.3f}  {meaning}")
    return figures


def report_sources(scores: np.ndarray, examples: Sequence[Example], threshold: float) -> None:
    groups: dict[tuple[str, str, str], list[bool]] = collections.defaultdict(list)
    for s, e in zip(scores, examples, strict=True):
        groups[(e.lang, "unsafe" if e.label else "safe", _source_group(e))].append(s >= threshold)
    log("\n  per source (out-of-fold; unsafe: recall, safe: FPR):")
    for key in sorted(groups):
        log(f"    {key[0]} {key[1]:6} {key[2]:58} {len(groups[key]):5d} {np.mean(groups[key]):.3f}")


def _source_group(e: Example) -> str:
    parts = e.source.split("/")
    if parts[0] == "Jarviswang94":
        return f"XSafety {e.category}"
    return "/".join(parts[:2])


def fit_category(x: sp.csr_matrix, labels: np.ndarray, *, c: float) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest logistic regressions over the categories: (weights, biases), one row per entry
    of :data:`CATEGORIES`. Serving takes the arg-max of the linear scores, as ``predict`` does."""
    heads = OneVsRestClassifier(LogisticRegression(C=c, solver="liblinear", max_iter=5000, random_state=SEED))
    heads.fit(x, labels)
    coef = np.zeros((len(CATEGORIES), x.shape[1]))
    bias = np.full(len(CATEGORIES), -1e3)  # a category absent from the data is never chosen
    for label, estimator in zip(heads.classes_, heads.estimators_, strict=True):
        coef[label] = estimator.coef_.ravel()
        bias[label] = estimator.intercept_[0]
    return coef, bias


def predict_category(coef: np.ndarray, bias: np.ndarray, x: sp.csr_matrix) -> np.ndarray:
    return np.asarray(np.argmax(x @ coef.T + bias, axis=1)).ravel()


def sparsify(coef: np.ndarray, keep: int) -> list[tuple[int, int, float]]:
    """The ``keep`` largest-magnitude weights of a (categories x features) matrix as
    (feature, category, weight) triples."""
    flat = np.abs(coef).ravel()
    if keep < flat.size:
        cut = np.partition(flat, flat.size - keep)[flat.size - keep]
        mask = np.abs(coef) >= cut
    else:
        mask = coef != 0
    cats, feats = np.nonzero(mask)
    order = np.lexsort((cats, feats))
    return [(int(feats[i]), int(cats[i]), float(coef[cats[i], feats[i]])) for i in order]


def round_sig(value: float, digits: int) -> float:
    return float(f"{value:.{digits}g}")


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", type=Path, default=DEFAULT_TRAIN, help="labelled training lines (JSONL)")
    parser.add_argument(
        "--data", type=Path, default=PROJECT_DATA, help="directory of the project's own *.jsonl lines"
    )
    parser.add_argument(
        "--out", type=Path, default=default_artifact_path(), help="where to write the artifact"
    )
    parser.add_argument("--dry-run", action="store_true", help="cross-validate and report, write nothing")
    parser.add_argument("--c", type=float, default=10.0, help="inverse L2 strength of the binary head")
    parser.add_argument("--max-features", type=int, default=30000, help="vocabulary size after pruning")
    parser.add_argument(
        "--project-weight", type=float, default=2.0, help="sample weight of the project's own lines"
    )
    parser.add_argument(
        "--tricky-weight", type=float, default=2.0, help="sample weight multiplier of tricky benign lines"
    )
    parser.add_argument(
        "--source-balance",
        type=float,
        default=0.7,
        help="divide a line's weight by its source's line count (per label) to this power",
    )
    parser.add_argument(
        "--source-balance-langs",
        type=lambda v: [lang for lang in v.split(",") if lang],
        default=["zh"],
        help="comma-separated languages whose lines are source-balanced",
    )
    parser.add_argument(
        "--max-fpr-plain", type=float, default=0.03, help="CV false-positive budget, plain benign lines"
    )
    parser.add_argument(
        "--max-fpr-tricky", type=float, default=0.07, help="CV false-positive budget, tricky benign lines"
    )
    parser.add_argument(
        "--category-c", type=float, default=30.0, help="inverse L2 strength of the category head"
    )
    parser.add_argument(
        "--category-weights", type=int, default=120000, help="non-zero weights kept in the category head"
    )
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(list(argv) if argv is not None else None)

    lowered = str(args.train).lower()
    if "dev" in args.train.name.lower() or "holdout" in lowered or "hold_out" in lowered:
        parser.error(f"{args.train} looks like an evaluation set; the classifier never trains on one")

    started = time.perf_counter()
    with threadpool_limits(limits=1):
        log("loading")
        examples = load_examples(args.train, args.data, args.project_weight, args.tricky_weight)
        mismatched = sum(e.lang != e.detected for e in examples)
        log(f"  detected language differs from the label on {mismatched} texts")
        x_all, names = feature_matrix(examples)
        log(
            f"  {x_all.shape[1]} features seen in >= 2 texts, {x_all.nnz} non-zeros ({time.perf_counter() - started:.0f}s)"
        )

        y_all = np.array([e.label for e in examples])
        w_all = balance_sources(examples, args.source_balance, args.source_balance_langs)
        binary_rows = np.array([i for i, e in enumerate(examples) if e.tier != "soft"])
        soft_rows = np.array([i for i, e in enumerate(examples) if e.tier == "soft"])
        strata = np.array([f"{examples[i].lang}/{examples[i].label}/{examples[i].tier}" for i in binary_rows])
        category_of = np.array(
            [CATEGORIES.index(e.category) if e.label and e.category in CATEGORIES else -1 for e in examples]
        )

        log(f"\ncross-validating ({args.folds} folds; binary head C={args.c}, {args.max_features} features)")
        oof = np.zeros(len(examples))
        oof_category = np.full(len(examples), -1)
        folds = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=SEED)
        soft_fold = np.arange(len(soft_rows)) % args.folds
        for k, (train_pos, test_pos) in enumerate(folds.split(binary_rows, strata)):
            train, test = binary_rows[train_pos], binary_rows[test_pos]
            held_soft = soft_rows[soft_fold == k]
            model = fit_binary(
                x_all[train], y_all[train], w_all[train], c=args.c, max_features=args.max_features
            )
            oof[test] = model.logits(x_all[test])
            if len(held_soft):
                oof[held_soft] = model.logits(x_all[held_soft])
            # the category head of this fold: unsafe lines (soft ones too) outside the held-out part
            cat_train = np.concatenate((train, soft_rows[soft_fold != k]))
            cat_train = cat_train[category_of[cat_train] >= 0]
            coef, bias = fit_category(
                x_all[cat_train][:, model.columns], category_of[cat_train], c=args.category_c
            )
            cat_test = test[category_of[test] >= 0]
            oof_category[cat_test] = predict_category(coef, bias, x_all[cat_test][:, model.columns])
            log(f"  fold {k + 1}: {time.perf_counter() - started:.0f}s")

        offsets = {}
        for lang in LANGS:
            cut = operating_logit(oof, examples, lang, args.max_fpr_plain, args.max_fpr_tricky)
            offsets[lang] = -cut  # sigmoid(z + offset) >= 0.5  <=>  z >= cut
        log(f"  per-language operating logits: { ({k: round(-v, 3) for k, v in offsets.items()}) }")
        oof_scores = np.array(
            [1 / (1 + math.exp(-(z + offsets[e.detected]))) for z, e in zip(oof, examples, strict=True)]
        )
        cv_figures = report(
            oof_scores, examples, THRESHOLD, "cross-validated figures at the chosen operating point"
        )
        report_sources(oof_scores, examples, THRESHOLD)
        project = [i for i, e in enumerate(examples) if e.source == "aigc-project"]
        report(
            oof_scores[project], [examples[i] for i in project], THRESHOLD, "the project's own lines alone"
        )
        curve = {}
        for t in (0.3, 0.4, 0.6, 0.7):
            curve[str(t)] = report(oof_scores, examples, t, "same scores, other thresholds")
        category_accuracy = {}
        for lang in LANGS:
            sel = [
                i
                for i, e in enumerate(examples)
                if e.lang == lang and e.tier == "core" and category_of[i] >= 0
            ]
            category_accuracy[lang] = round(float(np.mean(oof_category[sel] == category_of[sel])), 4)
        log(f"\ncross-validated category accuracy on core unsafe lines: {category_accuracy}")

        grouped = source_grouped_cv(x_all, y_all, w_all, examples, binary_rows, soft_rows, args, offsets)

        log(
            f"\nfitting the final model on all {len(binary_rows)} non-soft lines ({time.perf_counter() - started:.0f}s)"
        )
        final = fit_binary(
            x_all[binary_rows],
            y_all[binary_rows],
            w_all[binary_rows],
            c=args.c,
            max_features=args.max_features,
        )
        cat_rows = np.flatnonzero(category_of >= 0)
        coef, bias = fit_category(x_all[cat_rows][:, final.columns], category_of[cat_rows], c=args.category_c)
        triples = sparsify(coef, args.category_weights)

        document = {
            "format": ARTIFACT_FORMAT,
            "format_version": FORMAT_VERSION,
            "model": MODEL_FAMILY,
            "threshold": THRESHOLD,
            "bias": round_sig(final.bias, 8),
            "language_offsets": {k: round_sig(v, 8) for k, v in offsets.items()},
            "features": [names[c] for c in final.columns],
            "weights": [round_sig(w, 6) for w in final.weights],
            "category_head": {
                "categories": list(CATEGORIES),
                "bias": [round_sig(b, 6) for b in bias],
                "min_score": CATEGORY_MIN_SCORE,
                "feature_index": [f for f, _, _ in triples],
                "category_index": [c for _, c, _ in triples],
                "weight": [round_sig(w, 4) for _, _, w in triples],
            },
            "training": {
                "script": "services/safety/training/train_classifier.py",
                "train_file": args.train.name,
                "project_files": sorted(p.name for p in args.data.glob("*.jsonl")),
                "lines": {
                    f"{lang}/{tier}": sum(e.lang == lang and e.tier == tier for e in examples)
                    for lang in LANGS
                    for tier in TIERS
                },
                "parameters": {
                    k: v for k, v in vars(args).items() if k not in ("train", "data", "out", "dry_run")
                },
                "seed": SEED,
                "sklearn": sklearn.__version__,
                "cv_at_threshold": cv_figures,
                "cv_other_thresholds": curve,
                "cv_category_accuracy_core": category_accuracy,
                "cv_source_grouped": grouped,
            },
        }
        payload = gzip.compress(
            json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), mtime=0
        )
        log(
            f"  {len(final.columns)} features, {len(triples)} category weights, artifact {len(payload) / 1e6:.2f} MB"
        )

        if args.dry_run:
            log(f"\ndry run: not writing {args.out} ({time.perf_counter() - started:.0f}s)")
            return 0
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(payload)
        verify(
            args.out,
            examples,
            final.logits(x_all),
            offsets,
            predict_category(coef, bias, x_all[:, final.columns]),
        )
        log(f"\nwrote {args.out} ({time.perf_counter() - started:.0f}s)")
    return 0


def source_grouped_cv(
    x_all: sp.csr_matrix,
    y_all: np.ndarray,
    w_all: np.ndarray,
    examples: Sequence[Example],
    binary_rows: np.ndarray,
    soft_rows: np.ndarray,
    args: argparse.Namespace,
    offsets: dict[str, float],
) -> dict[str, Any]:
    """The binary head cross-validated with every source file held out whole
    (``StratifiedGroupKFold``): the estimate for text from sources the model has never seen, which
    is what the development and hold-out sets partly are. Reported at the shipped operating point,
    and at the operating point these scores would choose under the same budgets."""
    groups = np.array([examples[i].group for i in binary_rows])
    strata = np.array([f"{examples[i].lang}/{examples[i].label}/{examples[i].tier}" for i in binary_rows])
    folds = StratifiedGroupKFold(n_splits=args.folds, shuffle=True, random_state=SEED)
    log(f"\nsource-grouped cross-validation ({len(set(groups))} sources, {args.folds} folds)")
    oof = np.zeros(len(examples))
    soft_groups = sorted({examples[i].group for i in soft_rows})
    for k, (train_pos, test_pos) in enumerate(folds.split(binary_rows, strata, groups)):
        train, test = binary_rows[train_pos], binary_rows[test_pos]
        model = fit_binary(x_all[train], y_all[train], w_all[train], c=args.c, max_features=args.max_features)
        oof[test] = model.logits(x_all[test])
        held_soft = [i for i in soft_rows if soft_groups.index(examples[i].group) % args.folds == k]
        if held_soft:
            oof[held_soft] = model.logits(x_all[held_soft])
    shipped = np.array(
        [1 / (1 + math.exp(-(z + offsets[e.detected]))) for z, e in zip(oof, examples, strict=True)]
    )
    at_shipped = report(shipped, examples, THRESHOLD, "source-grouped CV at the shipped operating point")
    report_sources(shipped, examples, THRESHOLD)
    own = {
        lang: -operating_logit(oof, examples, lang, args.max_fpr_plain, args.max_fpr_tricky) for lang in LANGS
    }
    log(f"  operating logits source-grouped CV would choose: { ({k: round(-v, 3) for k, v in own.items()}) }")
    rescored = np.array(
        [1 / (1 + math.exp(-(z + own[e.detected]))) for z, e in zip(oof, examples, strict=True)]
    )
    at_own = report(rescored, examples, THRESHOLD, "source-grouped CV at its own operating point")
    return {
        "at_shipped_operating_point": at_shipped,
        "at_own_operating_point": at_own,
        "own_operating_logits": {k: round(-v, 4) for k, v in own.items()},
    }


def verify(
    path: Path,
    examples: Sequence[Example],
    logits: np.ndarray,
    offsets: dict[str, float],
    categories: np.ndarray,
) -> None:
    """The artifact, loaded by the serving code on each of its paths (compiled look-up when built,
    numpy, pure Python), scores like the trained model."""
    loaded = SafetyClassifier.load(path)
    others = [SafetyClassifier.load(path, use_native=False), SafetyClassifier.load(path, use_numpy=False)]
    worst = worst_paths = 0.0
    agree = []
    for e, z, category in zip(examples, logits, categories, strict=True):
        want = 1 / (1 + math.exp(-(z + offsets[e.detected])))
        got = loaded.score(e.text)
        worst = max(worst, abs(got.unsafe - want))
        for other in (o.score(e.text) for o in others):
            worst_paths = max(worst_paths, abs(got.unsafe - other.unsafe))
            if got.category != other.category:
                raise SystemExit(f"the scoring paths disagree on the category of {e.text[:80]!r}")
        if e.label and got.unsafe >= CATEGORY_MIN_SCORE:
            agree.append(got.category == CATEGORIES[category])
    log(f"\nverification: {loaded.version}")
    log(f"  max |artifact - trained model| = {worst:.1e} (weights are stored to 6 significant digits)")
    log(
        f"  max difference between the scoring paths ({loaded.scoring_path}, numpy, python) = {worst_paths:.1e}"
    )
    log(
        f"  category: artifact (sparsified head) agrees with the full head on {np.mean(agree):.3f} of unsafe lines"
    )
    if worst > 1e-3 or worst_paths > 1e-9:
        raise SystemExit("the artifact does not reproduce the trained model")


if __name__ == "__main__":
    sys.exit(main())
