"""The tracker: committed results from ``aigc.generation.results.v1`` into the job store.

It reads with ``read_committed`` (only results whose transaction committed) as its own consumer
group and commits its offsets after recording, so a restart resumes where it stopped; recording is
idempotent by (job, item), so results read twice change nothing. When a job's last item is
recorded, its budget hold is settled to the real cost. A lost store is rebuilt by running a tracker
with a fresh group id over the topic from the start.
"""

from __future__ import annotations

import asyncio
import logging

from aigc.events.v1 import events_pb2
from aigc_common.kafka import EventConsumer
from aigc_common.settings import KafkaSettings
from aigc_gateway.batch.service import settle_if_done
from aigc_gateway.jobs import JobStore
from aigc_gateway.limits import Budgets

log = logging.getLogger(__name__)


class ResultTracker:
    def __init__(
        self, kafka: KafkaSettings, *, topic: str, group_id: str, store: JobStore, budgets: Budgets
    ) -> None:
        self._consumer = EventConsumer(
            kafka,
            group_id=group_id,
            topics=[topic],
            message_type=events_pb2.GenerationResult,
            isolation_level="read_committed",
        )
        self._store = store
        self._budgets = budgets
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        await asyncio.to_thread(self._consumer.start)
        try:
            while not self._stopping.is_set():
                events = await asyncio.to_thread(self._consumer.poll_batch, 0.5)
                recorded = await self._store.record_many([event.message for event in events])
                jobs = {event.message.job_id for event, new in zip(events, recorded, strict=True) if new}
                for job_id in jobs:
                    if await settle_if_done(self._store, self._budgets, job_id):
                        log.info("batch job complete", extra={"fields": {"job_id": job_id}})
                if events:
                    await asyncio.to_thread(self._consumer.commit, events)
        finally:
            await asyncio.to_thread(self._consumer.close)

    def stop(self) -> None:
        self._stopping.set()
