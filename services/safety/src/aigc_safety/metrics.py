"""Instruments of the safety service (names are the contract with SREs; see DESIGN.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SafetyMetrics:
    """Verdicts by stage, category and action, how long checks take, and hot reloads."""

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
        self.policy_reloads = Counter(
            "aigc_safety_policy_reloads_total",
            "Hot reloads of the pack and policy files: applied, or refused because a file did not load.",
            ["result"],
            registry=registry,
        )
        for result in ("applied", "refused"):  # both series exist from start, so rate() and alerts see 0
            self.policy_reloads.labels(result)
        self.policy_files_rejected = Gauge(
            "aigc_safety_policy_files_rejected",
            "1 while the pack and policy files on disk are refused and the last good snapshot serves.",
            registry=registry,
        )
