"""Batch jobs: the worker that turns ``GenerationRequested`` items into ``GenerationResult`` records."""

from aigc_gateway.batch.worker import (
    BatchMetrics,
    BatchWorker,
    FatalTransactionError,
    WorkerConfig,
    backoff_delay,
    interleave_by_tenant,
)

__all__ = [
    "BatchMetrics",
    "BatchWorker",
    "FatalTransactionError",
    "WorkerConfig",
    "backoff_delay",
    "interleave_by_tenant",
]
