"""Kafka helpers against the real broker: trace context in headers, manual commits, resume, poison records."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aigc.common.v1 import common_pb2
from aigc.events.v1 import events_pb2
from aigc_common.kafka import (
    ConsumedEvent,
    EventConsumer,
    EventDecodeError,
    EventProducer,
    Topics,
    ensure_topics,
)
from aigc_common.settings import KafkaSettings

pytestmark = pytest.mark.integration

N = 20
# A generous bound for a group join plus a fetch; the loops exit as soon as they have what they need.
DEADLINE_S = 30.0
UsageEvent = ConsumedEvent[events_pb2.UsageRecorded]


@pytest.fixture
def settings(kafka_bootstrap: str, unique_name: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=kafka_bootstrap, client_id=unique_name)


@pytest.fixture
def usage_topic(settings: KafkaSettings, unique_name: str) -> str:
    # One partition, created up front: offsets are then a single sequence and the test deterministic.
    topic = Topics.with_prefix(f"{unique_name}-").usage
    assert ensure_topics(settings, [topic], partitions=1) == [topic]
    return topic


@pytest.fixture
def tracer() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    # A provider local to the test: the process-wide one stays untouched for other tests.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test_kafka_events"), exporter
    provider.shutdown()


def usage(i: int) -> events_pb2.UsageRecorded:
    return events_pb2.UsageRecorded(
        request_id=f"req-{i:03d}",
        tenant_id="acme",
        model="smollm2-135m",
        usage=common_pb2.Usage(prompt_tokens=10 + i, completion_tokens=i, total_tokens=10 + 2 * i),
        cost=common_pb2.Cost(currency="CNY", amount_nanos=1000 * i),
    )


def consumer(settings: KafkaSettings, group: str, topic: str) -> EventConsumer[events_pb2.UsageRecorded]:
    return EventConsumer(settings, group_id=group, topics=[topic], message_type=events_pb2.UsageRecorded)


def poll_until(c: EventConsumer[events_pb2.UsageRecorded], count: int) -> list[UsageEvent]:
    """Exactly up to ``count`` events, polling in bounded steps until they arrive or the deadline passes."""
    events: list[UsageEvent] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(events) < count and time.monotonic() < deadline:
        events += c.poll_batch(timeout_s=1.0, max_records=count - len(events))
    return events


def test_group_resumes_after_committed_offset_and_records_carry_the_producers_trace(
    settings: KafkaSettings,
    usage_topic: str,
    unique_name: str,
    tracer: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    test_tracer, spans = tracer
    producer = EventProducer(settings).start()
    try:
        with test_tracer.start_as_current_span("publish usage") as producing:
            futures = [producer.send(usage_topic, f"req-{i:03d}", usage(i)) for i in range(N)]
            producer.flush(timeout_s=DEADLINE_S)
        offsets = [f.get(timeout=DEADLINE_S).offset for f in futures]
    finally:
        producer.close()
    assert offsets == list(range(N))  # one partition, idempotent producer: in order, no gaps, no duplicates
    trace_id = producing.get_span_context().trace_id
    produced_ids = {f"req-{i:03d}" for i in range(N)}

    group = f"{unique_name}-g"
    first = consumer(settings, group, usage_topic).start()
    try:
        seen_by_first = poll_until(first, 10)
        assert [e.offset for e in seen_by_first] == list(range(10))
        first.commit(seen_by_first)
        assert first.committed(usage_topic, 0) == 10
    finally:
        first.close()

    second = consumer(settings, group, usage_topic).start()
    try:
        seen_by_second = poll_until(second, N - 10)
        # Anything beyond the committed remainder would be a duplicate or a phantom: there must be none.
        assert second.poll_batch(timeout_s=1.0) == []
        # A handler's span continues the producer's trace across the broker.
        with seen_by_second[0].span("handle usage", tracer=test_tracer):
            pass
        second.commit(seen_by_second)
        assert second.committed(usage_topic, 0) == N
    finally:
        second.close()

    assert [e.offset for e in seen_by_second] == list(range(10, N))
    first_ids = {e.message.request_id for e in seen_by_first}
    second_ids = {e.message.request_id for e in seen_by_second}
    assert first_ids | second_ids == produced_ids
    assert first_ids & second_ids == set()
    for event in seen_by_first + seen_by_second:
        assert event.key == event.message.request_id
        traceparent = event.header("traceparent")
        assert traceparent is not None, f"offset {event.offset} has no traceparent header"
        assert int(traceparent.split("-")[1], 16) == trace_id
        assert event.trace_context()  # the extracted context is not empty
    handling = next(s for s in spans.get_finished_spans() if s.name == "handle usage")
    assert handling.context.trace_id == trace_id
    assert handling.parent is not None and handling.parent.span_id == producing.get_span_context().span_id


def test_a_record_of_another_type_stops_its_partition_until_skipped(
    settings: KafkaSettings, usage_topic: str, unique_name: str
) -> None:
    producer = EventProducer(settings).start()
    try:
        producer.send(usage_topic, "req-000", usage(0))
        producer.send(usage_topic, "fb-1", events_pb2.FeedbackGiven(request_id="req-000", rating=5))
        producer.send(usage_topic, "req-002", usage(2))
        producer.flush(timeout_s=DEADLINE_S)
    finally:
        producer.close()

    reader = consumer(settings, f"{unique_name}-g", usage_topic).start()
    events: list[UsageEvent] = []
    errors: list[EventDecodeError] = []
    try:
        deadline = time.monotonic() + DEADLINE_S
        while len(events) < 2 and time.monotonic() < deadline:
            try:
                events += reader.poll_batch(timeout_s=1.0)
            except EventDecodeError as exc:
                errors.append(exc)
                reader.skip(exc)  # where a worker would dead-letter exc.value first
        reader.commit(events)
        committed = reader.committed(usage_topic, 0)
    finally:
        reader.close()

    assert [e.offset for e in events] == [0, 2]  # nothing lost around the bad record
    assert [(e.topic, e.partition, e.offset) for e in errors] == [(usage_topic, 0, 1)]  # refused exactly once
    assert "aigc.events.v1.FeedbackGiven" in str(errors[0])
    assert committed == 3


def test_run_handles_then_commits(settings: KafkaSettings, usage_topic: str, unique_name: str) -> None:
    producer = EventProducer(settings).start()
    try:
        for i in range(5):
            producer.send(usage_topic, f"req-{i:03d}", usage(i))
        producer.flush(timeout_s=DEADLINE_S)
    finally:
        producer.close()

    handled: list[str] = []
    started = time.monotonic()
    worker = consumer(settings, f"{unique_name}-g", usage_topic).start()
    try:
        count = worker.run(
            lambda event: handled.append(event.message.request_id),
            lambda: len(handled) >= 5 or time.monotonic() - started > DEADLINE_S,
            poll_timeout_s=0.5,
        )
        committed = worker.committed(usage_topic, 0)
    finally:
        worker.close()

    assert count == 5
    assert handled == [f"req-{i:03d}" for i in range(5)]
    assert committed == 5
