"""Instruments of the safety service (names are the contract with SREs; see DESIGN.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class SafetyMetrics:
    """Verdicts by stage, category and action, and how long checks take."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.verdicts = Counter(
            "aigc_safety_verdicts_total",
            "Safety verdicts by stage (input, output), rule category ('none' when nothing fired) and action.",
            ["stage", "category", "action"],
            registry=registry,
        )
        self.check_duration = Histogram(
            "aigc_safety_check_duration_seconds",
            "Time to check one input, or one delta of a streaming answer.",
            ["stage"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=registry,
        )
        self.holdback = Histogram(
            "aigc_safety_holdback_seconds",
            "Delay the output hold-back window adds: first delta fed to first text released, per answer.",
            buckets=(0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
