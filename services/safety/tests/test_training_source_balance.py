"""The training script's source balancing: a large source stops outweighing the small ones within
its language and label, the other language's weights stay as they were, and every language and
label keeps its total weight (so the class balance and the operating point's inputs do not move)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("sklearn", reason="the training script needs the dev extras (scikit-learn)")

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "train_classifier.py"


@pytest.fixture(scope="module")
def training() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_classifier_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _examples(training: ModuleType) -> list:
    def line(lang: str, label: int, group: str, weight: float = 1.0) -> object:
        return training.Example(
            text=f"{group}-{label}",
            label=label,
            category="insult" if label else "benign",
            lang=lang,
            detected=lang,
            tier="core" if label else "plain",
            source=group,
            group=group,
            weight=weight,
        )

    big = [line("zh", 1, "big-zh") for _ in range(90)]
    small = [line("zh", 1, "small-zh") for _ in range(10)]
    benign = [line("zh", 0, "benign-zh", 2.0) for _ in range(20)]
    english = [line("en", 1, "big-en") for _ in range(50)] + [line("en", 1, "small-en") for _ in range(5)]
    return big + small + benign + english


def test_power_one_gives_each_source_the_same_say(training: ModuleType) -> None:
    examples = _examples(training)
    weights = training.balance_sources(examples, 1.0, ["zh"])
    by_group: dict[str, float] = {}
    for example, weight in zip(examples, weights, strict=True):
        by_group[example.group] = by_group.get(example.group, 0.0) + weight
    assert by_group["big-zh"] == pytest.approx(by_group["small-zh"])
    assert by_group["big-zh"] + by_group["small-zh"] == pytest.approx(100.0)  # zh unsafe total kept
    assert by_group["benign-zh"] == pytest.approx(40.0)  # one source: nothing to balance
    # English lines were not asked for: the big English source still outweighs the small one 10:1
    assert by_group["big-en"] == pytest.approx(50.0)
    assert by_group["small-en"] == pytest.approx(5.0)


def test_power_between_zero_and_one_narrows_the_gap(training: ModuleType) -> None:
    examples = _examples(training)
    weights = training.balance_sources(examples, 0.7, ["zh"])
    big = sum(w for e, w in zip(examples, weights, strict=True) if e.group == "big-zh")
    small = sum(w for e, w in zip(examples, weights, strict=True) if e.group == "small-zh")
    assert 1.0 < big / small < 9.0
    assert big + small == pytest.approx(100.0)


def test_power_zero_changes_nothing(training: ModuleType) -> None:
    examples = _examples(training)
    assert list(training.balance_sources(examples, 0.0, ["zh", "en"])) == [e.weight for e in examples]
