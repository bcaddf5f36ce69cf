"""Drives the safety service's C helpers (built with sanitizers by scripts/check-native.sh) through
the Python code that calls them, on training lines, random text and adversarial text, and checks
every result against the Python or numpy path. Not a pytest module: it needs the sanitizer runtime
preloaded into the interpreter."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import aigc_safety.classifier as classifier_module
import aigc_safety.normalize as normalize_module
import aigc_safety.rules as rules_module
from aigc_safety.policy import default_packs_dir
from aigc_safety.types import Stage

TRAIN = Path(__file__).resolve().parents[2] / "shared" / "eval" / "safety_train.jsonl"


def main(folder: str) -> int:
    built = Path(folder)
    classifier_module.NATIVE_LIBRARY = built / "libaigc_ngram.so"
    rules_module.SCAN_LIBRARY = built / "libaigc_scan.so"
    normalize_module.FOLD_LIBRARY = built / "libaigc_fold.so"
    fast = classifier_module.SafetyClassifier.load()
    slow = classifier_module.SafetyClassifier.load(use_numpy=False)
    rules = tuple(
        r for p in sorted(default_packs_dir().glob("*.yaml")) for r in rules_module.load_pack(p).rules
    )
    scanners = [
        (rules_module.PackScanner(rules_in), rules_module.PackScanner(rules_in, use_native=False))
        for rules_in in (tuple(r for r in rules if s in r.stages) for s in Stage)
    ]
    paths = (fast.scoring_path, scanners[0][0].scanning_path, normalize_module.folding_path())
    if paths != ("native", "native", "native"):
        print(f"native-check: the instrumented helpers did not load: {paths}", file=sys.stderr)
        return 1
    rng = random.Random(1)
    texts = [json.loads(line)["text"] for line in TRAIN.open(encoding="utf-8")][::4] if TRAIN.exists() else []
    words = sorted({w for r in rules for w in r.keywords})
    awkward = [
        chr(c)
        for c in (
            0x20,
            0x61,
            0x7A,
            0x27,
            0x30,
            0x4E00,
            0x5236,
            0xFDFA,
            0xFB01,
            0x200B,
            0xD800,
            0x1F600,
            0x10FFFF,
            0x3000,
            0xFF21,
        )
    ]
    texts += ["".join(rng.choice(awkward) for _ in range(rng.randint(0, 300))) for _ in range(500)]
    glue = ["", " ", "x", "7", "\ud800", "\U0001f600"]
    texts += [
        "".join(rng.choice(words) + rng.choice(glue) for _ in range(rng.randint(1, 80))) for _ in range(300)
    ]
    texts += ["", "a", "'", "a'", "a'b", "x" * 5000, "制" * 5000, "\ufdfa" * 500]
    for text in texts:
        normalized = normalize_module.normalize(text)
        reference = normalize_module.StreamNormalizer()
        reference.feed(text)
        assert normalized == reference.result(), repr(text[:80])
        a, b = fast.score(normalized.text), slow.score(normalized.text)
        assert abs(a.unsafe - b.unsafe) < 1e-9 and a.category == b.category, repr(text[:80])
        for native, python in scanners:
            for pos in {0, rng.randint(0, len(normalized.text))}:
                got = [(r.rule_id, s) for r, s in native.scan(normalized.text, pos)]
                assert got == [(r.rule_id, s) for r, s in python.scan(normalized.text, pos)], repr(text[:80])
    print(
        f"native-check: {len(texts)} texts through the instrumented helpers; no sanitizer report, same results"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
