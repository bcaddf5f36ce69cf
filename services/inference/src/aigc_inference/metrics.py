"""Instruments of the inference service (names are in docs/metrics.md); the same names standalone
and under Ray Serve."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram

from aigc_common.metrics import UsageMetrics

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class InferenceMetrics:
    """Latency, tokens, queue depth and running requests per model."""

    def __init__(self, registry: CollectorRegistry, usage: UsageMetrics | None = None) -> None:
        self.tokens = (usage or UsageMetrics(registry)).tokens
        self.time_to_first_token = Histogram(
            "aigc_generation_time_to_first_token_seconds",
            "Time from a request's arrival at the inference service to its first generated token.",
            ["model"],
            buckets=_LATENCY,
            registry=registry,
        )
        self.inter_token = Histogram(
            "aigc_generation_inter_token_seconds",
            "Time between consecutive generated tokens.",
            ["model"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1),
            registry=registry,
        )
        self.duration = Histogram(
            "aigc_generation_duration_seconds",
            "Time from a request's arrival at the inference service to its last token.",
            ["model"],
            buckets=_LATENCY,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "aigc_inference_queue_depth",
            "Requests accepted and waiting for an engine slot.",
            ["model"],
            registry=registry,
        )
        self.running = Gauge(
            "aigc_inference_running_requests",
            "Requests the engine is generating for right now.",
            ["model"],
            registry=registry,
        )
