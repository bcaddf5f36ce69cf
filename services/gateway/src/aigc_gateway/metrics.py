"""Instruments of the gateway: tokens and cost per tenant and model, cache savings."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from aigc_common.metrics import UsageMetrics


class GatewayMetrics:
    """Counters SREs and finance read; label values are bounded (tenant ids, model names)."""

    def __init__(self, registry: CollectorRegistry, usage: UsageMetrics) -> None:
        # Shared with inference in the same process; the gateway adds only `cached` tokens.
        self.tokens = usage.tokens
        self.cost = Counter(
            "aigc_cost",
            "Cost charged per tenant and model, in currency units.",
            ["tenant", "model", "currency"],
            registry=registry,
        )
        self.cache_tokens_saved = Counter(
            "aigc_cache_tokens_saved",
            "Completion tokens served from the cache instead of the model.",
            ["tenant"],
            registry=registry,
        )
        self.safety_blocks = Counter(
            "aigc_gateway_safety_blocks",
            "Requests the gateway stopped on a safety verdict, by stage.",
            ["tenant", "stage"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "aigc_rate_limited",
            "Requests refused by a tenant's rate limit.",
            ["tenant"],
            registry=registry,
        )
        self.budget_remaining = Gauge(
            "aigc_budget_remaining",
            "What is left of a tenant's budget in the current period, in currency units (holds included).",
            ["tenant", "currency"],
            registry=registry,
        )
