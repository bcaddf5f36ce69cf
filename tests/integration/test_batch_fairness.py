"""Fairness between tenants on the real broker: a tenant's 3-item job submitted right after another
tenant's 600-item job finishes long before the big one, because the pacer keeps only a window of
each job in the requests topic; without pacing it would queue behind all 600 items.

The items' processing is a fixed 20 ms each (two at a time): what is measured here is the order in
which Kafka hands items to the workers, not the model, so the pipeline is left out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from aigc.events.v1 import events_pb2
from aigc_common.kafka import EventProducer, Topics, ensure_topics
from aigc_common.settings import KafkaSettings
from aigc_gateway.adapters.inprocess import InProcessPrompt
from aigc_gateway.adapters.kafka_requests import KafkaRequestPublisher
from aigc_gateway.batch import BatchWorker, WorkerConfig
from aigc_gateway.batch.pacer import Pacer
from aigc_gateway.batch.service import BatchRequest, BatchService
from aigc_gateway.batch.tracker import ResultTracker
from aigc_gateway.jobs import MemoryJobStore
from aigc_gateway.limits import Budgets, MemoryCounters
from aigc_gateway.tenants import Tenant, TenantSpec
from aigc_prompt.app import build_core as build_prompt
from aigc_prompt.settings import PromptSettings

pytestmark = pytest.mark.integration

BIG, SMALL = 600, 3
ITEM_S = 0.02


async def _answer(request: events_pb2.GenerationRequested) -> events_pb2.GenerationResult:
    await asyncio.sleep(ITEM_S)
    return events_pb2.GenerationResult(status="succeeded", text=f"answer {request.item_id}")


@dataclass
class Batch:
    service: BatchService
    store: MemoryJobStore


@pytest_asyncio.fixture
async def batch(kafka_bootstrap: str, unique_name: str, cpu_model_path: object) -> AsyncIterator[Batch]:
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, client_id=unique_name)
    topics = Topics.with_prefix(f"{unique_name}-")
    await asyncio.to_thread(
        ensure_topics,
        kafka,
        [topics.generation_requests, topics.generation_results, topics.generation_dlq],
        partitions=2,
    )
    store = MemoryJobStore()
    budgets = Budgets(MemoryCounters(), key_prefix=f"{unique_name}:")
    producer = await asyncio.to_thread(EventProducer(kafka).start)
    publisher = KafkaRequestPublisher(producer, topics.generation_requests)
    # Windows of half a second of the job's own throughput (at least 20 items).
    pacer = Pacer(store, publisher, horizon_s=0.25, min_window=10, interval_s=0.05)
    prompt = await build_prompt(PromptSettings(reload_interval_seconds=0, tokenizer_path=cpu_model_path))
    service = BatchService(
        prompt=InProcessPrompt(prompt), store=store, pacer=pacer, budgets=budgets, prices={}
    )
    tracker = ResultTracker(
        kafka,
        topic=topics.generation_results,
        group_id=f"{unique_name}-tracker",
        store=store,
        budgets=budgets,
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
        _answer,
        is_cancelled=store.is_cancelled,
    )
    tasks = [asyncio.create_task(t.run()) for t in (pacer, tracker, worker)]
    try:
        yield Batch(service, store)
    finally:
        pacer.stop()
        tracker.stop()
        worker.stop()
        await asyncio.wait(tasks, timeout=60)
        await asyncio.to_thread(publisher.close)


async def _done(store: MemoryJobStore, job_id: str) -> int:
    return (await store.status(job_id)).done


async def _wait_done(store: MemoryJobStore, job_id: str, n: int, deadline: float) -> None:
    # The store has no change notification: poll it, as GetBatch callers do.
    while await _done(store, job_id) < n and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)


async def test_a_small_job_is_not_starved_by_a_big_one_submitted_before_it(batch: Batch) -> None:
    big_tenant, small_tenant = Tenant(TenantSpec(id="big")), Tenant(TenantSpec(id="small"))
    big = await batch.service.submit(
        big_tenant,
        BatchRequest(
            template_id="translation", items={f"b{i:04d}": {"text": f"商品 {i}"} for i in range(BIG)}
        ),
    )
    small = await batch.service.submit(
        small_tenant,
        BatchRequest(template_id="translation", items={f"s{i}": {"text": f"订单 {i}"} for i in range(SMALL)}),
    )

    deadline = time.monotonic() + 120
    await _wait_done(batch.store, small.job.job_id, SMALL, deadline)
    big_done_when_small_finished = await _done(batch.store, big.job.job_id)
    assert await _done(batch.store, small.job.job_id) == SMALL, "the small job did not finish"
    # Without pacing all 600 big items sit ahead of the small job's in the topic, and this reads 600
    # (measured: 600 with the window opened to the whole job; 26 with pacing).
    assert big_done_when_small_finished < BIG // 2, (
        f"the small job finished only after {big_done_when_small_finished} of {BIG} big items"
    )

    await _wait_done(batch.store, big.job.job_id, BIG, deadline)
    status = await batch.store.status(big.job.job_id)
    assert status.counts == {"succeeded": BIG}
    assert status.published == BIG
    assert await batch.store.unpublished_jobs() == []
