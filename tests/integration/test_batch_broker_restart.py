"""The batch worker across a broker restart: the broker is stopped mid-job and started again, and
the job still ends with exactly one committed result per item.

The test runs its own broker (``scripts/local-stack.sh`` with a private state directory and free
ports), so restarting it disturbs no other test and works whoever started the shared one. ``down``
/ ``up`` keep the data directory: topics, committed offsets and the transaction log survive.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from prometheus_client import CollectorRegistry

from aigc.events.v1 import events_pb2
from aigc_common.kafka import ConsumedEvent, EventConsumer, EventProducer, Topics, ensure_topics
from aigc_common.settings import KafkaSettings
from aigc_gateway.batch import BatchWorker, WorkerConfig

from .batch_helpers import kafka_thread_stack, running

pytestmark = pytest.mark.integration

PARTITIONS = 2
ITEMS = 30
ITEM_S = 0.2  # per item, one at a time: the job takes ~6 s of processing, so the stop lands mid-job
OUTAGE_S = 4.0  # the broker stays down this long after `down` returns
TEST_BUDGET_S = 120.0
STACK_TIMEOUT_S = 100.0

Request = events_pb2.GenerationRequested
Result = events_pb2.GenerationResult


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Broker:
    """A private broker of the local stack's script, stopped and started through it."""

    def __init__(self, root: Path, state_dir: Path) -> None:
        self.script = root / "scripts" / "local-stack.sh"
        self.port = _free_port()
        self.env = dict(
            os.environ,
            AIGC_STACK_DIR=str(state_dir),
            AIGC_KAFKA_PORT=str(self.port),
            AIGC_KAFKA_CONTROLLER_PORT=str(_free_port()),
        )

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            ["bash", str(self.script), *args],
            capture_output=True,
            text=True,
            timeout=STACK_TIMEOUT_S,
            env=self.env,
        )
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"

    def down(self) -> None:
        self._run("down", "kafka")

    def up(self) -> None:
        self._run("up", "kafka")


@pytest.fixture
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    root = Path(str(request.config.rootpath))
    if not (root / "scripts" / "local-stack.sh").exists():
        root = Path(__file__).resolve().parents[2]
    private = Broker(root, tmp_path / "stack")
    private.up()
    try:
        yield private
    finally:
        private.down()


def _request(job_id: str, item_id: str) -> Request:
    return Request(job_id=job_id, item_id=item_id, tenant_id="acme", template_id="copy")


async def _process(req: Request) -> Result:
    await asyncio.sleep(ITEM_S)
    return Result(status="succeeded", text=f"answer to {req.item_id}")


def _read_committed(
    kafka: KafkaSettings, topic: str, group: str, n: int, until: float
) -> list[ConsumedEvent[Result]]:
    consumer = EventConsumer(
        kafka, group_id=group, topics=[topic], message_type=Result, isolation_level="read_committed"
    ).start()
    events: list[ConsumedEvent[Result]] = []
    try:
        while len(events) < n and time.monotonic() < until:
            events += consumer.poll_batch(timeout_s=0.5)
        # A little longer: a late duplicate would show up here.
        quiet_until = time.monotonic() + 2.0
        while time.monotonic() < min(quiet_until, until):
            batch = consumer.poll_batch(timeout_s=0.5)
            if batch:
                events += batch
                quiet_until = time.monotonic() + 2.0
    finally:
        consumer.close()
    return events


def _offsets(kafka: KafkaSettings, group: str, topic: str) -> tuple[dict[int, int | None], dict[int, int]]:
    consumer = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = {tp.partition: consumer.committed(tp) for tp in tps}
        ends = {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
        return committed, ends
    finally:
        consumer.close()


def test_a_job_completes_exactly_once_across_a_broker_restart(broker: Broker, unique_name: str) -> None:
    started = time.monotonic()
    budget_end = started + TEST_BUDGET_S
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap, client_id=unique_name)
    topics = Topics.with_prefix(f"{unique_name}-")
    ensure_topics(
        kafka,
        [topics.generation_requests, topics.generation_results, topics.generation_dlq],
        partitions=PARTITIONS,
    )
    requests = [_request("job-restart", f"item-{i:03d}") for i in range(ITEMS)]
    producer = EventProducer(kafka).start()
    try:
        futures = [producer.send(topics.generation_requests, f"{r.job_id}/{r.item_id}", r) for r in requests]
        producer.flush(timeout_s=30)
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()

    group = f"{unique_name}-workers"
    registry = CollectorRegistry()
    worker = BatchWorker(
        kafka,
        WorkerConfig(
            group_id=group,
            topics=topics,
            concurrency=1,
            max_poll_records=5,
            poll_timeout_s=0.5,
            session_timeout_s=6.0,
            failure_backoff_s=0.5,
            commit_timeout_s=10.0,  # a stuck transaction step is given up on well within the test
        ),
        _process,
        registry=registry,
    )
    batches = -(-ITEMS // 5)
    with running(worker) as errors:
        deadline = time.monotonic() + 45
        while worker.committed_batches < 1 and not errors and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.committed_batches >= 1, f"no batch committed before the restart (errors: {errors})"

        broker.down()
        at_down = worker.committed_batches
        time.sleep(OUTAGE_S)
        during_outage = kafka_thread_stack()
        at_up_start = worker.committed_batches
        broker.up()
        print(
            f"committed batches: {at_down} when the broker was down, {at_up_start} before it came back; "
            f"Kafka thread during the outage: {during_outage}"
        )
        # The stop really landed mid-job, and nothing could commit while the broker was away.
        assert at_down < batches, "the job was done before the broker went down; the test proves nothing"
        assert at_up_start == at_down

        events = _read_committed(
            kafka, topics.generation_results, f"{unique_name}-reader", ITEMS, until=budget_end - 10
        )
        counts = Counter(e.message.item_id for e in events)
        assert set(counts) == {r.item_id for r in requests}, (
            f"items without a committed result: {sorted({r.item_id for r in requests} - set(counts))}; "
            f"worker errors: {errors}; Kafka thread in {kafka_thread_stack()}"
        )
        assert [item for item, count in counts.items() if count > 1] == [], (
            "an item has two committed results"
        )
        assert all(e.message.status == "succeeded" for e in events)

        committed, ends = _offsets(kafka, group, topics.generation_requests)
        assert committed == ends, "the consumed offsets did not go with the results"

    assert time.monotonic() - started < TEST_BUDGET_S + 15
