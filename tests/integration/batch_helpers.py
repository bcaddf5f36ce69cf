"""Batch test helpers: a worker on its own event loop in a thread (for tests whose reads block), and
a whole batch path on the real broker with a scripted pipeline."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aigc.events.v1 import events_pb2
from aigc_common.kafka import EventProducer, Topics, ensure_topics
from aigc_common.settings import KafkaSettings
from aigc_gateway.adapters.inprocess import InProcessPrompt
from aigc_gateway.adapters.kafka_requests import KafkaJobLog, KafkaRequestPublisher
from aigc_gateway.batch import BatchWorker, WorkerConfig
from aigc_gateway.batch.joblog import JobRestorer
from aigc_gateway.batch.pacer import Pacer
from aigc_gateway.batch.service import BatchService
from aigc_gateway.batch.tracker import ResultTracker
from aigc_gateway.jobs import JobStore
from aigc_gateway.limits import Budgets, MemoryCounters
from aigc_prompt.app import build_core as build_prompt
from aigc_prompt.settings import PromptSettings

STOP_TIMEOUT_S = 45.0


def kafka_thread_stack() -> str:
    """Where the worker's Kafka thread is right now (for failure messages)."""
    frames = sys._current_frames()
    for thread in threading.enumerate():
        if thread.name.startswith("aigc-batch-kafka") and thread.ident in frames:
            stack = traceback.extract_stack(frames[thread.ident])
            return " <- ".join(f"{f.name}" for f in reversed(stack[-12:]))
    return "(no Kafka thread)"


@contextmanager
def running(worker: BatchWorker) -> Iterator[list[BaseException]]:
    """Runs ``worker`` until the block ends, then stops it; yields the list its error lands in, and
    raises that error after the block."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(worker.run())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="batch-worker", daemon=True)
    thread.start()
    try:
        yield errors
    finally:
        worker.stop()
        thread.join(timeout=STOP_TIMEOUT_S)
        assert not thread.is_alive(), (
            f"the worker did not stop; its Kafka thread is in {kafka_thread_stack()}"
        )
    if errors:
        raise errors[0]


# --- a whole batch path without the model: service, pacer, job log, tracker, restorer, worker ------


async def scripted_answer(request: events_pb2.GenerationRequested) -> events_pb2.GenerationResult:
    """A fixed 20 ms per item: these tests measure ordering and bookkeeping, not the model."""
    await asyncio.sleep(0.02)
    return events_pb2.GenerationResult(status="succeeded", text=f"answer {request.item_id}")


@dataclass
class BatchRig:
    """SubmitBatch to results on the real broker, with ``scripted_answer`` as the pipeline."""

    kafka: KafkaSettings
    topics: Topics
    store: JobStore
    service: BatchService
    budgets: Budgets
    publisher: KafkaRequestPublisher
    pacer: Pacer
    worker: BatchWorker
    tasks: dict[str, tuple[Any, asyncio.Task[None]]] = field(default_factory=dict)

    def start_bookkeeping(self, group: str) -> None:
        """The tracker and the restorer, as consumer groups ``group`` and ``group-jobs``."""
        parts: dict[str, Any] = {
            "tracker": ResultTracker(
                self.kafka,
                topic=self.topics.generation_results,
                group_id=group,
                store=self.store,
                budgets=self.budgets,
            ),
            "restorer": JobRestorer(
                self.kafka, topic=self.topics.batch_jobs, group_id=f"{group}-jobs", store=self.store
            ),
        }
        for name, part in parts.items():
            self.tasks[name] = (part, asyncio.create_task(part.run()))

    async def stop_bookkeeping(self) -> None:
        for name in ("tracker", "restorer"):
            part, task = self.tasks.pop(name)
            part.stop()
            await asyncio.wait([task], timeout=30)

    async def done(self, job_id: str) -> int:
        return (await self.store.status(job_id)).done

    async def wait_done(self, job_id: str, n: int, deadline: float) -> None:
        # The store has no change notification: poll it, as GetBatch callers do.
        while await self.done(job_id) < n and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@asynccontextmanager
async def batch_rig(
    kafka_bootstrap: str, unique_name: str, store: JobStore, tokenizer_path: Path, **pacer_options: float
) -> AsyncIterator[BatchRig]:
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, client_id=unique_name)
    topics = Topics.with_prefix(f"{unique_name}-")
    await asyncio.to_thread(
        ensure_topics,
        kafka,
        [topics.generation_requests, topics.generation_results, topics.generation_dlq, topics.batch_jobs],
        partitions=2,
    )
    budgets = Budgets(MemoryCounters(), key_prefix=f"{unique_name}:")
    producer = await asyncio.to_thread(EventProducer(kafka).start)
    publisher = KafkaRequestPublisher(producer, topics.generation_requests)
    prompt = await build_prompt(PromptSettings(reload_interval_seconds=0, tokenizer_path=tokenizer_path))
    pacer = Pacer(store, publisher, **pacer_options)  # type: ignore[arg-type]
    service = BatchService(
        prompt=InProcessPrompt(prompt),
        store=store,
        pacer=pacer,
        job_log=KafkaJobLog(producer, topics.batch_jobs),
        budgets=budgets,
        prices={},
    )
    worker = BatchWorker(
        kafka,
        WorkerConfig(
            group_id=f"{unique_name}-workers",
            topics=topics,
            concurrency=2,
            max_poll_records=10,
            poll_timeout_s=0.2,
        ),
        scripted_answer,
        is_cancelled=store.is_cancelled,
    )
    rig = BatchRig(kafka, topics, store, service, budgets, publisher, pacer, worker)
    rig.start_bookkeeping(f"{unique_name}-tracker")
    running = [asyncio.create_task(part.run()) for part in (pacer, worker)]
    try:
        yield rig
    finally:
        worker.stop()
        pacer.stop()
        await rig.stop_bookkeeping()
        await asyncio.wait(running, timeout=60)
        await asyncio.to_thread(publisher.close)
