"""Instruments of the cache service."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class CacheMetrics:
    """Lookups by tier and result."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "aigc_cache_requests_total",
            "Cache lookups by tier (exact, semantic) and result (hit, miss).",
            ["tier", "result"],
            registry=registry,
        )
