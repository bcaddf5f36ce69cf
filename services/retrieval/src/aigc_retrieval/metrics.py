"""Instruments of the retrieval service."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class RetrievalMetrics:
    """Search latency and indexing volume."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.search_duration = Histogram(
            "aigc_retrieval_search_duration_seconds",
            "Time to tokenise a query and score a knowledge base.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.chunks_ingested = Counter(
            "aigc_retrieval_chunks_ingested_total",
            "Chunks indexed by Ingest (re-ingested documents count again).",
            registry=registry,
        )
