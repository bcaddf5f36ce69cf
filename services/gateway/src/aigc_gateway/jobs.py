"""Batch jobs as the caller sees them: the job record, each item's one result, counts and cost.

The tracker feeds every committed result from ``aigc.generation.results.v1`` into a
:class:`JobStore`. A store keeps the FIRST result per item and ignores any later one (a worker that
crashed after publishing but before its offsets moved may publish an item again), so each item's
result reaches the caller exactly once, in the order it was first recorded; that order is the
cursor ``StreamBatchResults`` resumes from. The Redis store (``adapters/redis_jobs.py``) is what
replicas share; losing it is recoverable by replaying the results topic into a fresh store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from aigc.events.v1 import events_pb2

STATUSES = ("succeeded", "failed", "blocked", "expired", "cancelled")


@dataclass(frozen=True, slots=True)
class JobRecord:
    """What was accepted at submission."""

    job_id: str
    tenant_id: str
    template_id: str
    label: str
    model: str
    total: int
    created_at: float
    currency: str = ""
    estimated_nanos: int = 0
    # The budget hold taken at submission, settled to the real cost when the job ends.
    hold_key: str = ""
    hold_nanos: int = 0
    client_token: str = ""
    deadline: float = 0.0
    priority: str = "normal"


@dataclass(frozen=True, slots=True)
class JobStatus:
    """Counts by status and cost so far."""

    counts: dict[str, int] = field(default_factory=dict)
    cost_nanos: int = 0
    cancelled: bool = False
    first_result_at: float = 0.0
    published: int = 0
    """Items handed to the workers so far (see ``batch/pacer.py``); the rest wait in the store."""

    @property
    def done(self) -> int:
        return sum(self.counts.values())


class JobStore(Protocol):
    async def create(self, job: JobRecord) -> JobRecord:
        """Records ``job``; with a client token already used by the tenant, returns that job instead."""
        ...

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def find_by_token(self, tenant_id: str, client_token: str) -> str | None:
        """The job a tenant's earlier submission with this idempotency token created."""
        ...

    async def record(self, result: events_pb2.GenerationResult) -> bool:
        """Keeps the first result of an item; False (and nothing changed) for a repeat."""
        ...

    async def record_many(self, results: Sequence[events_pb2.GenerationResult]) -> list[bool]:
        """:meth:`record` for each result, in order, in as few round trips as the store allows."""
        ...

    async def status(self, job_id: str) -> JobStatus: ...

    async def results(self, job_id: str, cursor: int, limit: int) -> list[events_pb2.GenerationResult]:
        """Results after the first ``cursor`` ones, in recording order."""
        ...

    async def cancel(self, job_id: str) -> None: ...

    async def is_cancelled(self, job_id: str) -> bool: ...

    async def claim_settlement(self, job_id: str) -> bool:
        """True exactly once per job: whoever gets it settles the budget hold."""
        ...

    async def stage(self, job_id: str, requests: Sequence[bytes], *, at: int = 0) -> bool:
        """Appends serialized requests to the job's staged list, in order, for the pacer to publish,
        but only if the list holds exactly ``at`` requests now (so a replayed append is a no-op)."""
        ...

    async def staged(self, job_id: str, start: int, end: int) -> list[bytes]:
        """The staged requests ``start`` to ``end`` (exclusive)."""
        ...

    async def mark_published(self, job_id: str, upto: int, total: int) -> None:
        """Records that the first ``upto`` requests are published (never moves back); a job with all
        ``total`` published leaves :meth:`unpublished_jobs`."""
        ...

    async def unpublished_jobs(self) -> list[str]:
        """Jobs with staged requests not yet published."""
        ...

    async def lease(self, job_id: str, owner: str, ttl_s: float) -> bool:
        """Whether ``owner`` may publish the job's next requests for ``ttl_s`` (one pacer at a time)."""
        ...

    async def close(self) -> None: ...


class MemoryJobStore:
    """Jobs in this process: the single-machine default and unit tests."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._jobs: dict[str, JobRecord] = {}
        self._tokens: dict[tuple[str, str], str] = {}
        self._items: dict[str, dict[str, str]] = {}
        self._results: dict[str, list[events_pb2.GenerationResult]] = {}
        self._status: dict[str, JobStatus] = {}
        self._settled: set[str] = set()
        self._staged: dict[str, list[bytes]] = {}
        self._clock = clock

    async def create(self, job: JobRecord) -> JobRecord:
        if job.client_token:
            known = self._tokens.get((job.tenant_id, job.client_token))
            if known is not None:
                return self._jobs[known]
            self._tokens[(job.tenant_id, job.client_token)] = job.job_id
        self._jobs[job.job_id] = job
        # Results may be recorded before their job (a store rebuilt from Kafka reads both at once).
        self._items.setdefault(job.job_id, {})
        self._results.setdefault(job.job_id, [])
        self._status.setdefault(job.job_id, JobStatus())
        return job

    async def get(self, job_id: str) -> JobRecord | None:
        return self._jobs.get(job_id)

    async def find_by_token(self, tenant_id: str, client_token: str) -> str | None:
        return self._tokens.get((tenant_id, client_token))

    async def record_many(self, results: Sequence[events_pb2.GenerationResult]) -> list[bool]:
        return [await self.record(result) for result in results]

    async def record(self, result: events_pb2.GenerationResult) -> bool:
        items = self._items.setdefault(result.job_id, {})
        if result.item_id in items:
            return False
        items[result.item_id] = result.status
        self._results.setdefault(result.job_id, []).append(result)
        status = self._status.get(result.job_id, JobStatus())
        counts = dict(status.counts)
        counts[result.status] = counts.get(result.status, 0) + 1
        self._status[result.job_id] = replace(
            status,
            counts=counts,
            cost_nanos=status.cost_nanos + result.cost.amount_nanos,
            first_result_at=status.first_result_at or self._clock(),
        )
        return True

    async def status(self, job_id: str) -> JobStatus:
        return self._status.get(job_id, JobStatus())

    async def results(self, job_id: str, cursor: int, limit: int) -> list[events_pb2.GenerationResult]:
        return self._results.get(job_id, [])[cursor : cursor + limit]

    async def cancel(self, job_id: str) -> None:
        if job_id in self._status:
            self._status[job_id] = replace(self._status[job_id], cancelled=True)

    async def is_cancelled(self, job_id: str) -> bool:
        return self._status.get(job_id, JobStatus()).cancelled

    async def claim_settlement(self, job_id: str) -> bool:
        if job_id in self._settled:
            return False
        self._settled.add(job_id)
        return True

    async def stage(self, job_id: str, requests: Sequence[bytes], *, at: int = 0) -> bool:
        if len(self._staged.get(job_id, ())) != at:
            return False
        self._staged.setdefault(job_id, []).extend(requests)
        return True

    async def staged(self, job_id: str, start: int, end: int) -> list[bytes]:
        return self._staged.get(job_id, [])[start:end]

    async def mark_published(self, job_id: str, upto: int, total: int) -> None:
        status = self._status.get(job_id)
        if status is not None and upto > status.published:
            self._status[job_id] = replace(status, published=upto)
        if upto >= total:
            self._staged.pop(job_id, None)

    async def unpublished_jobs(self) -> list[str]:
        return list(self._staged)

    async def lease(self, job_id: str, owner: str, ttl_s: float) -> bool:
        return True  # one process holds this store; the pacer serialises its own calls per job

    async def close(self) -> None:
        return None
