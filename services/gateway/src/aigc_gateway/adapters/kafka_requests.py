"""Batch items to ``aigc.generation.requests.v1``, keyed ``job_id/item_id``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aigc.events.v1 import events_pb2
from aigc_common.errors import Unavailable
from aigc_common.kafka import EventProducer


class KafkaRequestPublisher:
    """Publishes a job's items and waits for every acknowledgement: SubmitBatch answers only after
    the broker holds every item, so an accepted job never loses one."""

    def __init__(self, producer: EventProducer, topic: str, timeout_s: float = 60.0) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout_s = timeout_s

    async def publish(self, items: Sequence[events_pb2.GenerationRequested]) -> None:
        def send_all() -> None:
            futures = [self._producer.send(self._topic, f"{i.job_id}/{i.item_id}", i) for i in items]
            self._producer.flush(self._timeout_s)
            failed = [f for f in futures if f.failed()]
            if failed:
                raise Unavailable(
                    f"Kafka refused {len(failed)} of {len(items)} items; the job was not accepted"
                )

        await asyncio.to_thread(send_all)

    def close(self) -> None:
        self._producer.close()
