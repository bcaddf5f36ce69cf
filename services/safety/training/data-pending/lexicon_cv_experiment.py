"""Cross-validates the classifier with lexicon features added to its n-grams (see README.md here).

    .venv/bin/python services/safety/training/data-pending/lexicon_cv_experiment.py \\
        services/safety/training/data-pending/lexicon_candidates.json 4

Adds ``lex:<group>`` for every lexicon group with a term in the normalised text, and
``lex:<topic>&<cue>`` when a topic group and a how-to or evasion cue both occur, each repeated
WEIGHT times, then prints core recall at the training script's false-positive budgets, stratified
and source-grouped. Reads the training data only (never the development set); writes nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import ahocorasick_rs
import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_classifier as tc  # the training script, beside this folder

from aigc_safety.normalize import normalize

PAIRED_CUES = ("cue_request_howto", "cue_evasion")


def build_matcher(lexicon: dict[str, list[str]]) -> Callable[[str], set[str]]:
    groups_of: dict[str, set[str]] = {}
    for group, terms in lexicon.items():
        for term in terms:
            key = normalize(term).text.strip()
            if key:
                groups_of.setdefault(key, set()).add(group)
    terms = sorted(groups_of)
    automaton = ahocorasick_rs.AhoCorasick(terms, matchkind=ahocorasick_rs.MatchKind.Standard)

    def groups_in(text: str) -> set[str]:
        hits: set[str] = set()
        for index, _, _ in automaton.find_matches_as_indexes(text, overlapping=True):
            hits |= groups_of[terms[index]]
        return hits

    return groups_in


def main() -> None:
    lexicon = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    weight = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    groups_in = build_matcher(lexicon)
    topics = [g for g in lexicon if g.startswith("topic_")]
    ngrams = tc.text_features

    def features(text: str) -> list[str]:
        hits = groups_in(text)
        extra = [f"lex:{g}" for g in sorted(hits)]
        extra += [f"lex:{t}&{c}" for t in topics if t in hits for c in PAIRED_CUES if c in hits]
        return list(ngrams(text)) + extra * weight

    examples = tc.load_examples(tc.DEFAULT_TRAIN, tc.PROJECT_DATA, 2.0, 2.0)
    rows = np.array([i for i, e in enumerate(examples) if e.tier != "soft"])
    y = np.array([e.label for e in examples])
    w = np.array([e.weight for e in examples])
    strata = np.array([f"{examples[i].lang}/{examples[i].label}/{examples[i].tier}" for i in rows])
    source = np.array([examples[i].group for i in rows])
    with threadpool_limits(1):
        for name, extractor in (("n-grams", ngrams), (f"+ lexicon x{weight}", features)):
            tc.text_features = extractor
            x, _ = tc.feature_matrix(examples)
            for grouped in (False, True):
                splits = (
                    StratifiedGroupKFold(5, shuffle=True, random_state=tc.SEED).split(rows, strata, source)
                    if grouped
                    else StratifiedKFold(5, shuffle=True, random_state=tc.SEED).split(rows, strata)
                )
                oof = np.zeros(len(examples))
                for train, test in splits:
                    train, test = rows[train], rows[test]
                    model = tc.fit_binary(x[train], y[train], w[train], c=10.0, max_features=30000)
                    oof[test] = model.logits(x[test])
                recall = {}
                for lang in ("zh", "en"):
                    cut = tc.operating_logit(oof[rows], [examples[i] for i in rows], lang, 0.03, 0.07)
                    core = [
                        oof[i] >= cut for i in rows if examples[i].lang == lang and examples[i].tier == "core"
                    ]
                    recall[lang] = round(float(np.mean(core)), 3)
                print(f"{name:20s} {'source-grouped' if grouped else 'stratified':15s} core recall {recall}")


if __name__ == "__main__":
    main()
