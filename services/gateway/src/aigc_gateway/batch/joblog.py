"""The job log: every accepted job, with its requests, on ``aigc.batch.jobs.v1``, and the restorer
that rebuilds a lost job store from it.

The job store (Redis in production) is fast state, not the record of truth: ``SubmitBatch``
appends the job and its requests here (acknowledged by the broker) before any item is released,
and results are on ``aigc.generation.results.v1``. A store that lost its data is rebuilt by a
tracker and a restorer running with fresh consumer groups: the restorer re-creates each missing job
and re-stages its requests (the pacer then releases them again; items that already had results
are processed again and their repeats ignored), the tracker re-records every result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from aigc.events.v1 import events_pb2
from aigc_common.convert import timestamp_to_pb
from aigc_common.kafka import EventConsumer
from aigc_common.settings import KafkaSettings
from aigc_gateway.jobs import JobRecord, JobStore

log = logging.getLogger(__name__)

CHUNK = 1_000
"""Requests per ``BatchJobAccepted`` record (10,000 items stay well under Kafka's 1 MB records)."""


class JobLog(Protocol):
    """Durably appends an accepted job and its requests."""

    async def append(self, job: JobRecord, requests: Sequence[events_pb2.GenerationRequested]) -> None: ...


def job_chunks(
    job: JobRecord, requests: Sequence[events_pb2.GenerationRequested]
) -> list[events_pb2.BatchJobAccepted]:
    count = max(1, -(-len(requests) // CHUNK))
    return [
        events_pb2.BatchJobAccepted(
            job_id=job.job_id,
            tenant_id=job.tenant_id,
            template_id=job.template_id,
            label=job.label,
            model=job.model,
            total=job.total,
            created_at=timestamp_to_pb(job.created_at),
            currency=job.currency,
            estimated_nanos=job.estimated_nanos,
            hold_key=job.hold_key,
            hold_nanos=job.hold_nanos,
            client_token=job.client_token,
            deadline=timestamp_to_pb(job.deadline) if job.deadline else None,
            priority=job.priority,
            chunk_index=index,
            chunk_count=count,
            requests=requests[index * CHUNK : (index + 1) * CHUNK],
        )
        for index in range(count)
    ]


def job_from_event(event: events_pb2.BatchJobAccepted) -> JobRecord:
    return JobRecord(
        job_id=event.job_id,
        tenant_id=event.tenant_id,
        template_id=event.template_id,
        label=event.label,
        model=event.model,
        total=event.total,
        created_at=event.created_at.ToNanoseconds() / 1e9,
        currency=event.currency,
        estimated_nanos=event.estimated_nanos,
        hold_key=event.hold_key,
        hold_nanos=event.hold_nanos,
        client_token=event.client_token,
        deadline=event.deadline.ToNanoseconds() / 1e9 if event.HasField("deadline") else 0.0,
        priority=event.priority or "normal",
    )


class JobRestorer:
    """Reads the job log and restores jobs the store does not know. A job the store knows is left
    alone, so running this next to an intact store changes nothing."""

    def __init__(self, kafka: KafkaSettings, *, topic: str, group_id: str, store: JobStore) -> None:
        self._consumer = EventConsumer(
            kafka, group_id=group_id, topics=[topic], message_type=events_pb2.BatchJobAccepted
        )
        self._store = store
        self._stopping = asyncio.Event()
        self.restored_jobs = 0
        """Jobs re-created in the store (for tests and logs)."""

    async def restore(self, event: events_pb2.BatchJobAccepted) -> None:
        if event.chunk_index == 0:
            if await self._store.get(event.job_id) is not None:
                return
            await self._store.create(job_from_event(event))
            self.restored_jobs += 1
            log.warning("batch job restored from the job log", extra={"fields": {"job_id": event.job_id}})
        elif await self._store.get(event.job_id) is None:
            return  # its first chunk was not restored by us (the job finished and expired)
        # Conditional on the staged list holding exactly the chunks before this one: a replayed
        # chunk, or a chunk of a job that was never lost, changes nothing.
        await self._store.stage(
            event.job_id, [r.SerializeToString() for r in event.requests], at=event.chunk_index * CHUNK
        )

    async def run(self) -> None:
        await asyncio.to_thread(self._consumer.start)
        try:
            while not self._stopping.is_set():
                events = await asyncio.to_thread(self._consumer.poll_batch, 0.5)
                for event in events:
                    await self.restore(event.message)
                if events:
                    await asyncio.to_thread(self._consumer.commit, events)
        finally:
            await asyncio.to_thread(self._consumer.close)

    def stop(self) -> None:
        self._stopping.set()
