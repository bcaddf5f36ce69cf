"""The batch worker against the real broker: one committed result per item, poison items in the
dead-letter topic, retries, expiry and cancellation, and no loss or duplicate across a SIGKILL."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from prometheus_client import CollectorRegistry

from aigc.common.v1 import common_pb2
from aigc.events.v1 import events_pb2
from aigc_common.errors import InvalidArgument, Unavailable
from aigc_common.kafka import ConsumedEvent, EventConsumer, EventProducer, Topics, ensure_topics
from aigc_common.settings import KafkaSettings
from aigc_gateway.batch import BatchWorker, WorkerConfig
from aigc_gateway.batch.worker import ERROR_HEADER, ERROR_TYPE_HEADER

from .batch_helpers import running

pytestmark = pytest.mark.integration

# Generous bounds for group joins and fetches on a busy 2-core machine; every wait exits as soon as
# it has what it needs.
DEADLINE_S = 45.0
PARTITIONS = 2
PROC_SCRIPT = Path(__file__).with_name("batch_worker_proc.py")

Request = events_pb2.GenerationRequested
Result = events_pb2.GenerationResult


@pytest.fixture
def kafka(kafka_bootstrap: str, unique_name: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=kafka_bootstrap, client_id=unique_name)


@pytest.fixture
def prefix(unique_name: str) -> str:
    return f"{unique_name}-"


@pytest.fixture
def topics(kafka: KafkaSettings, prefix: str) -> Topics:
    # Two partitions: offsets are committed per partition, and items of a job spread over both.
    names = Topics.with_prefix(prefix)
    ensure_topics(
        kafka,
        [names.generation_requests, names.generation_results, names.generation_dlq],
        partitions=PARTITIONS,
    )
    return names


def request(job_id: str, item_id: str, tenant: str = "acme", deadline: float | None = None) -> Request:
    req = Request(
        job_id=job_id, item_id=item_id, tenant_id=tenant, template_id="copy", variables={"sku": item_id}
    )
    if deadline is not None:
        stamp = Timestamp()
        stamp.FromNanoseconds(int(deadline * 1e9))
        req.deadline.CopyFrom(stamp)
    return req


def publish(kafka: KafkaSettings, topic: str, requests: list[Request]) -> None:
    producer = EventProducer(kafka).start()
    try:
        futures = [producer.send(topic, f"{r.job_id}/{r.item_id}", r) for r in requests]
        producer.flush(timeout_s=DEADLINE_S)
        for future in futures:
            future.get(timeout=DEADLINE_S)
    finally:
        producer.close()


def answer(req: Request) -> Result:
    return Result(
        status="succeeded",
        text=f"answer to {req.item_id}",
        usage=common_pb2.Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7),
        bundle_id="bundle-test",
    )


class ReadCommitted:
    """Reads a topic from the start as a fresh group, seeing only committed records (or all)."""

    def __init__(
        self, kafka: KafkaSettings, topic: str, group: str, isolation: str = "read_committed"
    ) -> None:
        self.consumer = EventConsumer(
            kafka, group_id=group, topics=[topic], message_type=Result, isolation_level=isolation
        ).start()
        self.events: list[ConsumedEvent[Result]] = []

    def until(
        self, done: Callable[[list[ConsumedEvent[Result]]], bool], timeout_s: float = DEADLINE_S
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not done(self.events) and time.monotonic() < deadline:
            self.events += self.consumer.poll_batch(timeout_s=0.5)

    def settle(self, quiet_s: float = 2.0) -> None:
        """Keeps reading until nothing new arrives for ``quiet_s``: a late duplicate would show up here."""
        deadline = time.monotonic() + DEADLINE_S
        quiet_until = time.monotonic() + quiet_s
        while time.monotonic() < min(quiet_until, deadline):
            batch = self.consumer.poll_batch(timeout_s=0.5)
            if batch:
                self.events += batch
                quiet_until = time.monotonic() + quiet_s

    def close(self) -> None:
        self.consumer.close()


@contextmanager
def reading(
    kafka: KafkaSettings, topic: str, group: str, isolation: str = "read_committed"
) -> Iterator[ReadCommitted]:
    reader = ReadCommitted(kafka, topic, group, isolation)
    try:
        yield reader
    finally:
        reader.close()


def config(topics: Topics, group: str, **overrides: Any) -> WorkerConfig:
    values: dict[str, Any] = {
        "group_id": group,
        "topics": topics,
        "concurrency": 4,
        "max_poll_records": 10,
        "poll_timeout_s": 0.5,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
        "session_timeout_s": 6.0,
        **overrides,
    }
    return WorkerConfig(**values)


def committed_offsets(kafka: KafkaSettings, group: str, topic: str) -> dict[int, int | None]:
    # A consumer that never subscribes only asks the coordinator; it does not join the group.
    consumer = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        consumer.close()


def end_offsets(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        consumer.close()


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def by_item(events: list[ConsumedEvent[Result]]) -> dict[str, Result]:
    return {e.message.item_id: e.message for e in events}


# --------------------------------------------------------------------------------------------


def test_every_item_gets_exactly_one_committed_result_and_the_offsets_are_committed(
    kafka: KafkaSettings, topics: Topics, unique_name: str
) -> None:
    n = 50
    # Two tenants, so the round-robin ordering runs too; the results must not depend on it.
    requests = [request("job-1", f"item-{i:03d}", tenant="acme" if i % 3 else "globex") for i in range(n)]
    publish(kafka, topics.generation_requests, requests)
    group = f"{unique_name}-workers"
    registry = CollectorRegistry()
    worker = BatchWorker(kafka, config(topics, group), answer, registry=registry)

    lag_labels = {"topic": topics.generation_requests, "group": group}
    with running(worker), reading(kafka, topics.generation_results, f"{unique_name}-reader") as results:
        results.until(lambda events: len(events) >= n)
        results.settle()
        # Read while the worker still runs: a stopped worker withdraws its part of the gauge.
        deadline = time.monotonic() + DEADLINE_S
        while (
            registry.get_sample_value("aigc_kafka_consumer_lag", lag_labels) != 0
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        lag = registry.get_sample_value("aigc_kafka_consumer_lag", lag_labels)

    assert lag == 0, f"consumer lag gauge is {lag} (None: never set) after every item was processed"
    item_ids = [e.message.item_id for e in results.events]
    assert Counter(item_ids) == Counter(r.item_id for r in requests)  # each exactly once
    for event in results.events:
        assert event.key == f"job-1/{event.message.item_id}"
        assert event.message.status == "succeeded"
        assert event.message.text == f"answer to {event.message.item_id}"
        assert event.message.attempts == 1
        assert event.message.tenant_id in {"acme", "globex"}
    # The offsets went with the results: the group would resume after the last item.
    assert committed_offsets(kafka, group, topics.generation_requests) == end_offsets(
        kafka, topics.generation_requests
    )
    assert sample(registry, "aigc_batch_items_total", status="succeeded") == n
    assert sample(registry, "aigc_batch_item_duration_seconds_count", status="succeeded") == n


def test_a_poison_item_goes_to_the_dead_letter_topic_with_its_error_and_the_rest_succeed(
    kafka: KafkaSettings, topics: Topics, unique_name: str
) -> None:
    requests = [request("job-p", f"item-{i}") for i in range(6)] + [request("job-p", "poison")]
    publish(kafka, topics.generation_requests, requests)
    calls: Counter[str] = Counter()

    def process(req: Request) -> Result:
        calls[req.item_id] += 1
        if req.item_id == "poison":
            raise InvalidArgument("variable 'sku' is not a known product", field="variables.sku")
        return answer(req)

    registry = CollectorRegistry()
    worker = BatchWorker(kafka, config(topics, f"{unique_name}-workers"), process, registry=registry)
    with (
        running(worker),
        reading(kafka, topics.generation_results, f"{unique_name}-results") as results,
        reading(kafka, topics.generation_dlq, f"{unique_name}-dlq") as dlq,
    ):
        results.until(lambda events: len(events) >= len(requests))
        dlq.until(lambda events: len(events) >= 1)
        results.settle()

    outcome = by_item(results.events)
    assert len(results.events) == len(requests)
    assert outcome["poison"].status == "failed"
    assert "variables.sku" in outcome["poison"].error
    assert outcome["poison"].attempts == 1
    assert calls["poison"] == 1  # not retryable: tried once
    assert all(outcome[f"item-{i}"].status == "succeeded" for i in range(6))

    assert len(dlq.events) == 1
    dead = dlq.events[0]
    assert dead.key == "job-p/poison"
    assert dead.message.item_id == "poison" and dead.message.status == "failed"
    assert dead.header(ERROR_TYPE_HEADER) == "InvalidArgument"
    assert "not a known product" in (dead.header(ERROR_HEADER) or "")
    assert sample(registry, "aigc_batch_items_total", status="failed") == 1
    assert sample(registry, "aigc_batch_items_total", status="succeeded") == 6


def test_a_retryable_failure_is_retried_and_succeeds_on_the_second_attempt(
    kafka: KafkaSettings, topics: Topics, unique_name: str
) -> None:
    requests = [request("job-r", "flaky"), request("job-r", "steady")]
    publish(kafka, topics.generation_requests, requests)
    attempts_seen: dict[str, list[int]] = {"flaky": [], "steady": []}

    async def process(req: Request) -> Result:
        attempts_seen[req.item_id].append(req.attempt)
        if req.item_id == "flaky" and req.attempt == 1:
            raise Unavailable("engine is restarting")
        return answer(req)

    worker = BatchWorker(kafka, config(topics, f"{unique_name}-workers"), process)
    with (
        running(worker),
        reading(kafka, topics.generation_results, f"{unique_name}-results") as results,
        reading(kafka, topics.generation_dlq, f"{unique_name}-dlq") as dlq,
    ):
        results.until(lambda events: len(events) >= len(requests))
        results.settle()
        dlq.settle(quiet_s=1.0)

    outcome = by_item(results.events)
    assert len(results.events) == 2
    assert (outcome["flaky"].status, outcome["flaky"].attempts) == ("succeeded", 2)
    assert (outcome["steady"].status, outcome["steady"].attempts) == ("succeeded", 1)
    assert attempts_seen == {"flaky": [1, 2], "steady": [1]}
    assert dlq.events == []


def test_expired_and_cancelled_items_end_without_running_the_pipeline(
    kafka: KafkaSettings, topics: Topics, unique_name: str
) -> None:
    now = time.time()
    requests = [
        request("job-e", "late", deadline=now - 60),
        request("job-e", "in-time", deadline=now + 600),
        request("job-c", "cancelled-1"),
        request("job-c", "cancelled-2"),
    ]
    publish(kafka, topics.generation_requests, requests)
    called: list[str] = []

    def process(req: Request) -> Result:
        called.append(req.item_id)
        return answer(req)

    worker = BatchWorker(
        kafka,
        config(topics, f"{unique_name}-workers"),
        process,
        is_cancelled=lambda job_id: job_id == "job-c",
    )
    with running(worker), reading(kafka, topics.generation_results, f"{unique_name}-results") as results:
        results.until(lambda events: len(events) >= len(requests))
        results.settle()

    outcome = by_item(results.events)
    assert len(results.events) == len(requests)
    assert (outcome["late"].status, outcome["late"].attempts) == ("expired", 0)
    assert outcome["in-time"].status == "succeeded"
    assert {outcome["cancelled-1"].status, outcome["cancelled-2"].status} == {"cancelled"}
    assert called == ["in-time"]


def test_a_worker_killed_mid_transaction_loses_and_duplicates_nothing(
    kafka: KafkaSettings, topics: Topics, prefix: str, unique_name: str
) -> None:
    n = 30
    requests = [request("job-k", f"item-{i:03d}") for i in range(n)]
    publish(kafka, topics.generation_requests, requests)
    group = f"{unique_name}-workers"

    # The first worker holds each transaction open for a while after its records are flushed, so
    # the kill lands while the log holds results that must never become visible.
    proc = subprocess.Popen(
        [sys.executable, str(PROC_SCRIPT), kafka.bootstrap_servers, prefix, group, "--pause-in-txn", "1.0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line.strip()) for line in proc.stdout or []], daemon=True
    ).start()
    try:
        committed = 0
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                assert proc.poll() is None, (
                    f"worker process exited early: {proc.stderr.read() if proc.stderr else ''}"
                )
                continue
            if line.startswith("txn-committed"):
                committed += 1
            elif line.startswith("txn-open") and committed >= 2:
                break  # a transaction is open now, with its records flushed to the log
        else:
            pytest.fail(f"the worker process committed only {committed} transactions in time")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=DEADLINE_S)

    with reading(kafka, topics.generation_results, f"{unique_name}-before") as before:
        before.settle(quiet_s=2.0)
    assert 2 <= len(before.events) < n  # the dead worker's committed results, not all of them

    # Same group, same worker index, so the same transactional id: init_transactions fences the
    # dead producer and aborts its open transaction; the group hands its partitions over once the
    # dead member's session expires.
    worker = BatchWorker(kafka, config(topics, group, max_poll_records=5), answer)
    with running(worker), reading(kafka, topics.generation_results, f"{unique_name}-after") as results:
        results.until(lambda events: len(events) >= n)
        results.settle()

    counts = Counter(e.message.item_id for e in results.events)
    assert set(counts) == {r.item_id for r in requests}, "an item has no committed result"
    assert [item for item, count in counts.items() if count > 1] == [], "an item has two committed results"
    assert committed_offsets(kafka, group, topics.generation_requests) == end_offsets(
        kafka, topics.generation_requests
    )

    # The kill really did land inside a transaction: the log holds records no committed reader sees.
    with reading(kafka, topics.generation_results, f"{unique_name}-raw", isolation="read_uncommitted") as raw:
        raw.until(lambda events: len(events) > n)
        raw.settle(quiet_s=1.0)
    assert len(raw.events) > n
