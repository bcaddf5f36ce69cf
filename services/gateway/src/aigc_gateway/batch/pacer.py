"""The pacer: releases each job's items to the workers a window at a time, so tenants stay
interleaved in the requests topic and one huge job cannot starve another tenant.

Why pace
========

Kafka hands records out in log order. Publishing a 10,000-item job at once would put every one of
its items ahead of a request another tenant submits a second later; the worker's per-poll
round-robin across tenants (``worker.py``) only helps among items it has already polled. So
``SubmitBatch`` stages a job's requests in the job store and the pacer publishes them as the job
makes progress: at any moment a job has at most its **window** of items published and not yet
done. A job submitted later gets its own window published at once, so its items wait behind at
most the other jobs' windows, not behind their whole backlog.

The window is a few seconds of the job's own measured throughput (``horizon_s`` times the items
per second it has completed so far, times its priority weight), between ``min_window`` and
``max_window``: large enough that cache-hit jobs at thousands of items per second never wait on
the pacer, small enough that a model-bound job at a few items per second holds only a few
seconds of work ahead of everyone else. Priority is a weight on the window (low 1, normal 2,
high 4): a high-priority job gets a larger share of the queue, a low one a smaller one; none is
shut out. A cancelled job's remaining items are released at once: workers end them as
``cancelled`` without running them, which is how such a job completes.

Exactly once
============

The pacer publishes (and waits for the broker's acknowledgement) *before* it records how far it
got. A crash in between publishes those items again on the next round; a worker may then process
an item twice, and the job store keeps the first result, so the caller still sees one result per
item. A per-job lease in the store keeps two gateway replicas from releasing the same items at
the same time. Staged requests live in the job store (Redis in production, kept with the job).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Protocol

from aigc.events.v1 import events_pb2
from aigc_gateway.jobs import JobRecord, JobStore

log = logging.getLogger(__name__)

PRIORITY_WEIGHTS = {"low": 1, "normal": 2, "high": 4}


class RequestPublisher(Protocol):
    """Publishes items for the workers and returns once the broker holds all of them (Kafka in
    production, keyed ``job_id/item_id``)."""

    async def publish(self, items: Sequence[events_pb2.GenerationRequested]) -> None: ...


class Pacer:
    def __init__(
        self,
        store: JobStore,
        publisher: RequestPublisher,
        *,
        horizon_s: float = 5.0,
        min_window: int = 32,
        max_window: int = 5_000,
        interval_s: float = 0.25,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if min_window < 1 or max_window < min_window:
            raise ValueError(f"need 1 <= min_window <= max_window, got {min_window} and {max_window}")
        self._store = store
        self._publisher = publisher
        self._horizon_s = horizon_s
        self._min_window = min_window
        self._max_window = max_window
        self._interval_s = interval_s
        self._clock = clock
        self._owner = uuid.uuid4().hex
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._stopping = asyncio.Event()

    def window(self, job: JobRecord, done: int, first_result_at: float) -> int:
        """How many of ``job``'s items may be published and not done."""
        weight = PRIORITY_WEIGHTS.get(job.priority, PRIORITY_WEIGHTS["normal"])
        floor = self._min_window * weight
        if not done or not first_result_at:
            return min(floor, self._max_window)
        rate = done / max(self._clock() - first_result_at, 1.0)
        return int(min(self._max_window, max(floor, rate * self._horizon_s * weight)))

    async def release(self, job: JobRecord) -> int:
        """Publishes what ``job``'s window allows; returns how many items went out."""
        async with self._locks[job.job_id]:
            if not await self._store.lease(job.job_id, self._owner, ttl_s=max(10.0, 4 * self._interval_s)):
                return 0  # another replica is releasing this job's items
            status = await self._store.status(job.job_id)
            if status.published >= job.total:
                await self._store.mark_published(job.job_id, status.published, job.total)
                return 0
            if status.cancelled:
                end = job.total
            else:
                in_flight = status.published - status.done
                room = self.window(job, status.done, status.first_result_at) - in_flight
                if room <= 0:
                    return 0
                end = min(job.total, status.published + room)
            raw = await self._store.staged(job.job_id, status.published, end)
            if len(raw) != end - status.published:
                raise RuntimeError(
                    f"job {job.job_id}: {end - status.published} staged items expected, the store has {len(raw)}"
                )
            await self._publisher.publish([events_pb2.GenerationRequested.FromString(r) for r in raw])
            await self._store.mark_published(job.job_id, end, job.total)
            return end - status.published

    async def run(self) -> None:
        """Every ``interval_s``, releases what each job's window allows, until :meth:`stop`."""
        while not self._stopping.is_set():
            try:
                job_ids = await self._store.unpublished_jobs()
                for job_id in job_ids:
                    job = await self._store.get(job_id)
                    if job is None:  # expired from the store: nothing left to publish
                        await self._store.mark_published(job_id, 0, 0)
                        self._locks.pop(job_id, None)
                        continue
                    await self.release(job)
                for job_id in set(self._locks) - set(job_ids):
                    if not self._locks[job_id].locked():
                        del self._locks[job_id]
            except Exception:
                # Kafka or the store is away; staged items wait, nothing is lost. Try again.
                log.warning("batch pacer round failed; retrying", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval_s)

    def stop(self) -> None:
        self._stopping.set()
