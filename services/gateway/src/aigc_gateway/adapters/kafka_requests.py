"""Batch items to ``aigc.generation.requests.v1`` (keyed ``job_id/item_id``) and accepted jobs to
``aigc.batch.jobs.v1`` (keyed by job id). Both wait for every acknowledgement: what they return
from, the broker holds."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from google.protobuf.message import Message

from aigc.events.v1 import events_pb2
from aigc_common.errors import Unavailable
from aigc_common.kafka import EventProducer
from aigc_gateway.batch.joblog import job_chunks
from aigc_gateway.jobs import JobRecord


async def _send_acknowledged(
    producer: EventProducer, topic: str, records: Sequence[tuple[str, Message]], timeout_s: float, what: str
) -> None:
    def send_all() -> None:
        futures = [producer.send(topic, key, message) for key, message in records]
        producer.flush(timeout_s)
        failed = sum(1 for f in futures if f.failed())
        if failed:
            raise Unavailable(f"Kafka refused {failed} of {len(records)} {what}")

    await asyncio.to_thread(send_all)


class KafkaRequestPublisher:
    """Publishes items for the workers (the pacer's publisher)."""

    def __init__(self, producer: EventProducer, topic: str, timeout_s: float = 60.0) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout_s = timeout_s

    async def publish(self, items: Sequence[events_pb2.GenerationRequested]) -> None:
        records = [(f"{i.job_id}/{i.item_id}", i) for i in items]
        await _send_acknowledged(self._producer, self._topic, records, self._timeout_s, "batch items")

    def close(self) -> None:
        self._producer.close()


class KafkaJobLog:
    """Appends accepted jobs with their requests (see ``batch/joblog.py``); shares the requests
    publisher's producer."""

    def __init__(self, producer: EventProducer, topic: str, timeout_s: float = 60.0) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout_s = timeout_s

    async def append(self, job: JobRecord, requests: Sequence[events_pb2.GenerationRequested]) -> None:
        records = [(job.job_id, chunk) for chunk in job_chunks(job, requests)]
        await _send_acknowledged(self._producer, self._topic, records, self._timeout_s, "job log records")
