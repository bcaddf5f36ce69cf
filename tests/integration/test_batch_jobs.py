"""Batch jobs end to end on the real broker and the CPU model: SubmitBatch validates and publishes,
an in-process worker runs each item through the gateway's pipeline, the tracker records each
item's result once, GetBatch counts, StreamBatchResults resumes from a cursor, CancelBatch skips
what is pending; with the job store in memory and in Redis."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from aigc.events.v1 import events_pb2
from aigc.gateway.v1 import gateway_pb2 as pb
from aigc.gateway.v1 import gateway_pb2_grpc as pb_grpc
from aigc_cache.adapters.memory_store import MemoryStore
from aigc_cache.core import CacheCore
from aigc_cache.metrics import CacheMetrics
from aigc_common.kafka import EventConsumer, ensure_topics
from aigc_common.runtime import ProcessRuntime
from aigc_common.server import GrpcServer
from aigc_common.settings import GrpcSettings, KafkaSettings, RedisSettings
from aigc_gateway.adapters import inprocess
from aigc_gateway.app import build_gateway
from aigc_gateway.servicer import binding
from aigc_gateway.settings import BatchSettings, GatewaySettings
from aigc_inference.app import build_core as build_inference
from aigc_inference.settings import InferenceSettings
from aigc_prompt.app import build_core as build_prompt
from aigc_prompt.settings import PromptSettings
from aigc_safety.app import build_core as build_safety
from aigc_safety.settings import SafetySettings

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", params=["memory", "redis"])
async def stub(
    request: pytest.FixtureRequest, kafka_bootstrap: str, redis_url: str, cpu_model_path: Path
) -> AsyncIterator[pb_grpc.GatewayServiceStub]:
    unique = f"batch-{request.param}-{abs(hash(request.node.nodeid)) % 10**8}"
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, client_id=unique)
    usage_topic = f"{unique}-aigc.usage.v1"
    await asyncio.to_thread(ensure_topics, kafka, [usage_topic])
    settings = GatewaySettings(
        kafka=kafka,
        usage_sink="kafka",
        usage_topic=usage_topic,
        redis=RedisSettings(url=redis_url, key_prefix=f"{unique}:"),
        batch=BatchSettings(
            enabled=True,
            store=request.param,
            workers=1,
            topic_prefix=f"{unique}-",
            tracker_group=f"{unique}-tracker",
            worker_group=f"{unique}-workers",
        ),
    )
    registry = CollectorRegistry()
    runtime = ProcessRuntime("batch-test", settings, registry)
    prompt = await build_prompt(
        PromptSettings(reload_interval_seconds=0, tokenizer_path=cpu_model_path), runtime
    )
    safety = await build_safety(SafetySettings(reload_interval_seconds=0, gc_freeze=False), runtime)
    cache = CacheCore(
        MemoryStore(), CacheMetrics(registry), key_prefix="t:", default_ttl_seconds=60, max_answer_chars=9999
    )
    inference = await build_inference(
        InferenceSettings(model_path=cpu_model_path, contexts=1, threads=2), runtime
    )
    wiring = await build_gateway(
        settings,
        runtime,
        prompt=inprocess.InProcessPrompt(prompt),
        safety=inprocess.InProcessSafety(safety),
        cache=inprocess.InProcessCache(cache),
        inference=inprocess.InProcessInference(inference),
    )
    server = GrpcServer(
        "gateway",
        [binding(wiring.gateway, wiring.directory, wiring.batch)],
        GrpcSettings(port=0),
        runtime.rpc_metrics,
    )
    await server.start()
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.GatewayServiceStub(channel)
        stub.address = server.address  # type: ignore[attr-defined]  # for the CLI test
        stub.usage = (kafka, usage_topic)  # type: ignore[attr-defined]  # for the usage test
        yield stub
    await server.stop(0)
    await wiring.close()
    await inference.close()


def _items(n: int, prefix: str = "p") -> list[pb.BatchItem]:
    return [
        pb.BatchItem(item_id=f"{prefix}{i}", variables={"product": f"竹制砧板 {i}", "language": "zh"})
        for i in range(n)
    ]


def _usage_request_ids(kafka: KafkaSettings, topic: str, job_id: str, n: int) -> list[str]:
    consumer = EventConsumer(
        kafka, group_id=f"{topic}-{job_id}", topics=[topic], message_type=events_pb2.UsageRecorded
    ).start()
    try:
        ids: list[str] = []
        deadline = time.monotonic() + 60
        while len(ids) < n and time.monotonic() < deadline:
            ids += [
                e.message.request_id
                for e in consumer.poll_batch(timeout_s=0.5)
                if e.message.request_id.startswith(job_id + "/")
            ]
        # A little longer: a second event for an item would show up here.
        quiet = time.monotonic() + 2.0
        while time.monotonic() < quiet:
            ids += [
                e.message.request_id
                for e in consumer.poll_batch(timeout_s=0.5)
                if e.message.request_id.startswith(job_id + "/")
            ]
        return ids
    finally:
        consumer.close()


async def _all_results(
    stub: pb_grpc.GatewayServiceStub, job_id: str, cursor: int = 0
) -> list[pb.BatchItemResult]:
    call = stub.StreamBatchResults(pb.StreamBatchResultsRequest(job_id=job_id, cursor=cursor), timeout=240)
    return [r async for r in call]


async def test_a_job_runs_every_valid_item_once_and_resumes_from_a_cursor(
    stub: pb_grpc.GatewayServiceStub,
) -> None:
    items = [*_items(5), pb.BatchItem(item_id="broken", variables={"language": "zh"})]
    submitted = await stub.SubmitBatch(
        pb.SubmitBatchRequest(template_id="product_copy", items=items, max_tokens=12, client_token="t-1")
    )
    assert submitted.item_count == 5
    assert [(e.item_id, e.field) for e in submitted.rejected] == [("broken", "variables.product")]
    assert submitted.estimated_cost.amount_nanos > 0 and submitted.estimated_cost.currency == "CNY"

    results = await _all_results(stub, submitted.job_id)
    assert sorted(r.item_id for r in results) == [f"p{i}" for i in range(5)], "each item exactly once"
    assert all(r.status == "succeeded" and r.text for r in results), [(r.status, r.error) for r in results]
    assert [r.cursor for r in results] == [1, 2, 3, 4, 5]
    resumed = await _all_results(stub, submitted.job_id, cursor=3)
    assert [r.item_id for r in resumed] == [r.item_id for r in results[3:]]

    job = await stub.GetBatch(pb.GetBatchRequest(job_id=submitted.job_id))
    assert job.state == pb.BATCH_STATE_COMPLETED
    assert (job.total_items, job.succeeded_items, job.pending_items) == (5, 5, 0)
    assert 0 < job.cost.amount_nanos <= job.estimated_cost.amount_nanos

    # One usage event per item, under the item's request id, as interactive requests have.
    kafka, topic = stub.usage  # type: ignore[attr-defined]
    charged = await asyncio.to_thread(_usage_request_ids, kafka, topic, submitted.job_id, 5)
    assert sorted(charged) == sorted(f"{submitted.job_id}/p{i}" for i in range(5))

    again = await stub.SubmitBatch(
        pb.SubmitBatchRequest(template_id="product_copy", items=items, max_tokens=12, client_token="t-1")
    )
    assert again.job_id == submitted.job_id, "the same client token is the same job"


async def test_all_or_nothing_refuses_a_job_with_an_invalid_item(stub: pb_grpc.GatewayServiceStub) -> None:
    items = [*_items(2, "q"), pb.BatchItem(item_id="bad", variables={"language": "fr", "product": "x"})]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SubmitBatch(
            pb.SubmitBatchRequest(template_id="product_copy", items=items, all_or_nothing=True)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "items[bad].variables.language" in (err.value.details() or "")


async def test_cancelling_skips_pending_items_and_every_item_still_ends(
    stub: pb_grpc.GatewayServiceStub,
) -> None:
    submitted = await stub.SubmitBatch(
        pb.SubmitBatchRequest(template_id="product_copy", items=_items(30, "c"), max_tokens=12)
    )
    cancelled = await stub.CancelBatch(pb.CancelBatchRequest(job_id=submitted.job_id))
    assert cancelled.state in (pb.BATCH_STATE_CANCELLED, pb.BATCH_STATE_COMPLETED)
    results = await asyncio.wait_for(_all_results(stub, submitted.job_id), timeout=240)
    assert sorted(r.item_id for r in results) == sorted(f"c{i}" for i in range(30))
    statuses = {r.status for r in results}
    assert "cancelled" in statuses and statuses <= {"cancelled", "succeeded"}
    job = await stub.GetBatch(pb.GetBatchRequest(job_id=submitted.job_id))
    assert job.state == pb.BATCH_STATE_CANCELLED and job.pending_items == 0


async def test_another_tenants_or_an_unknown_job_is_refused(stub: pb_grpc.GatewayServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetBatch(pb.GetBatchRequest(job_id="job-nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_cli_submits_follows_and_writes_results(
    stub: pb_grpc.GatewayServiceStub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aigc_gateway.cli import main

    lines = [
        json.dumps({"id": f"cli{i}", "variables": {"product": f"保温杯 {i}", "language": "zh"}})
        for i in range(3)
    ]
    (tmp_path / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    address = ["--address", stub.address]  # type: ignore[attr-defined]

    def run(*argv: str) -> int:
        try:
            main(list(argv))
        except SystemExit as done:
            return int(done.code or 0)
        return 0

    code = await asyncio.to_thread(
        run,
        "batch",
        "submit",
        str(tmp_path / "items.jsonl"),
        "--template",
        "product_copy",
        "--max-tokens",
        "12",
        *address,
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    job_id = out.strip().splitlines()[-1]
    assert job_id.startswith("job-") and "3/3 done" in err
    assert await asyncio.to_thread(run, "batch", "results", job_id, *address) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(r["id"] for r in rows) == ["cli0", "cli1", "cli2"] and all(
        r["status"] == "succeeded" for r in rows
    )
