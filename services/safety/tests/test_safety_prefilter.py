"""The pattern prefilter: trigger words are sound (every match contains one), and the pack scanner
that relies on them finds exactly what running every rule does."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from aigc_safety.normalize import normalize
from aigc_safety.policy import default_packs_dir
from aigc_safety.prefilter import triggers
from aigc_safety.rules import load_pack
from aigc_safety.types import Stage

from .test_rule_pack_categories import BENIGN, EVASIONS, UNSAFE

TRAIN = Path(__file__).resolve().parents[3].parent / "shared" / "eval" / "safety_train.jsonl"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (
            r"(?:reveal|show) (?:your|the) prompt",
            {"reveal your prompt", "reveal the prompt", "show your prompt", "show the prompt"},
        ),
        (r"(?<!say )\bhow to (?:steal|rob)s? a car", None),  # too many expansions: best shorter run is used
        (r"制作.{0,4}炸弹", {"制作"}),
        (r"\w+ is stupid", {" is stupid"}),
        (r"IGNORE (?:all )?previous", {"ignore previous", "ignore all previous"}),
    ],
)
def test_triggers_of_common_pattern_shapes(pattern: str, expected: set[str] | None) -> None:
    found = triggers(pattern)
    assert found is not None
    if expected is not None:
        assert found == expected


@pytest.mark.parametrize("pattern", [r".*", r"a+b", r"[a-z]{3,}", r"\d{11}", r"(?:x|.)y"])
def test_patterns_without_selective_literals_have_no_triggers(pattern: str) -> None:
    assert triggers(pattern) is None


SHIPPED_PACKS = sorted(default_packs_dir().glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_PACKS, ids=lambda p: p.stem)
def test_every_match_of_every_shipped_pattern_contains_a_trigger(path: Path) -> None:
    pack = load_pack(path)
    texts = [normalize(t).text for t in _texts()]
    checked = 0
    for rule in pack.rules:
        for pattern in rule.patterns:
            words = triggers(pattern.pattern)
            if words is None:
                continue
            for text in texts:
                for m in pattern.finditer(text):
                    assert any(w in m.group() for w in words), (rule.rule_id, pattern.pattern, m.group())
                    checked += 1
    assert checked > 50


@pytest.mark.parametrize("path", SHIPPED_PACKS, ids=lambda p: p.stem)
def test_the_scanner_finds_exactly_what_every_rule_finds(path: Path) -> None:
    pack = load_pack(path)
    rng = random.Random(3)
    texts = [normalize(t).text for t in _texts()]
    # Long texts, where the scanner searches a pattern only in windows around its triggers.
    texts += [" ".join(rng.sample(texts, 25)) for _ in range(60)]
    # Scanning from a position (streaming) must agree too.
    for stage in Stage:
        scanner = pack.scanner(stage)
        for text in texts:
            pos = rng.randint(0, len(text)) if text else 0
            expected = [(r.rule_id, r.find(text, pos)) for r in pack.rules_for(stage) if r.find(text, pos)]
            assert [(r.rule_id, spans) for r, spans in scanner.scan(text, pos)] == expected, text


def _texts() -> list[str]:
    texts = [row[2] for row in UNSAFE] + list(BENIGN) + [row[1] for row in EVASIONS]
    texts += [f"{a} 然后 {b}" for a, b in zip(texts, reversed(texts), strict=False)]
    if TRAIN.exists():
        # The training file (never the dev file) adds thousands of real lines when it is beside the repo.
        with TRAIN.open(encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f][::3]
    return [t for t in texts if not re.fullmatch(r"\s*", t)]
