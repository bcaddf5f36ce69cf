"""Kafka helpers without a broker: protobuf serde, content-type checks, topic names, trace headers."""

from __future__ import annotations

import socket

import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aigc.common.v1 import common_pb2
from aigc.events.v1 import events_pb2
from aigc_common.errors import Unavailable
from aigc_common.kafka import (
    ConsumedEvent,
    EventConsumer,
    EventDecodeError,
    EventProducer,
    ProtobufDeserializer,
    Topics,
    content_type_for,
    next_offsets,
    record_headers,
    serialize,
)
from aigc_common.settings import KafkaSettings

NOW = Timestamp(seconds=1_750_000_000, nanos=123)
USAGE = common_pb2.Usage(prompt_tokens=12, completion_tokens=30, total_tokens=42)
COST = common_pb2.Cost(currency="CNY", amount_nanos=1_234_567)

EVENTS: list[Message] = [
    events_pb2.GenerationRequested(
        job_id="job-1",
        item_id="item-7",
        tenant_id="acme",
        template_id="product-attributes",
        label="production",
        variables={"title": "纯棉短袖T恤 男款", "brand": "示例"},
        model="smollm2-135m",
        attempt=2,
        deadline=NOW,
    ),
    events_pb2.GenerationResult(
        job_id="job-1",
        item_id="item-7",
        tenant_id="acme",
        status="succeeded",
        text="材质：纯棉",
        usage=USAGE,
        cost=COST,
        bundle_id="b-3",
        attempts=2,
    ),
    events_pb2.UsageRecorded(
        request_id="req-1",
        tenant_id="acme",
        model="smollm2-135m",
        bundle_id="b-3",
        usage=USAGE,
        cost=COST,
        cache_hit=True,
        finished_at=NOW,
    ),
    events_pb2.SafetyAudited(
        request_id="req-2",
        tenant_id="acme",
        stage="input",
        action="block",
        policy_version="p-9",
        rule_ids=["jailbreak.dan", "pii.cn_id"],
        categories=["attack", "pii"],
        bundle_id="b-3",
        decided_at=NOW,
    ),
    events_pb2.FeedbackGiven(
        request_id="req-3", tenant_id="acme", rating=4, correction="更正", comment="ok", given_at=NOW
    ),
]


def _name(message: Message) -> str:
    return message.DESCRIPTOR.name


@pytest.mark.parametrize("message", EVENTS, ids=_name)
def test_every_event_type_round_trips_through_the_serde(message: Message) -> None:
    value = serialize(message)
    headers = record_headers(message)

    decoded = ProtobufDeserializer(type(message)).decode(value, headers, topic="t", partition=0, offset=5)

    assert decoded == message
    assert (
        dict(headers)["content-type"]
        == f"application/x-protobuf; type={message.DESCRIPTOR.full_name}".encode()
    )


def test_serialization_is_deterministic_for_map_fields() -> None:
    a = events_pb2.GenerationRequested(variables={f"k{i}": str(i) for i in range(50)})
    b = events_pb2.GenerationRequested(variables={f"k{i}": str(i) for i in reversed(range(50))})
    assert serialize(a) == serialize(b)


def test_a_record_of_another_type_is_refused_naming_where_it_is() -> None:
    usage = EVENTS[2]
    with pytest.raises(EventDecodeError) as caught:
        ProtobufDeserializer(events_pb2.FeedbackGiven).decode(
            serialize(usage), record_headers(usage), topic="aigc.feedback.v1", partition=3, offset=41
        )
    text = str(caught.value)
    assert "topic 'aigc.feedback.v1' partition 3 offset 41" in text
    assert "aigc.events.v1.FeedbackGiven" in text  # what was expected
    assert "aigc.events.v1.UsageRecorded" in text  # what the record declared
    assert caught.value.value == serialize(usage)  # raw bytes kept for a dead-letter topic


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("content-type", b"application/json")],
        [("content-type", b"application/x-protobuf")],
        [("content-type", b"application/x-protobuf; type=aigc.events.v1.UsageRecordedV2")],
    ],
    ids=["missing", "json", "no-type", "other-type"],
)
def test_records_without_the_exact_content_type_are_refused(headers: list[tuple[str, bytes]]) -> None:
    with pytest.raises(EventDecodeError, match=r"offset 7 is not a aigc\.events\.v1\.UsageRecorded"):
        ProtobufDeserializer(events_pb2.UsageRecorded).decode(
            serialize(EVENTS[2]), headers, topic="aigc.usage.v1", partition=0, offset=7
        )


def test_content_type_parsing_tolerates_case_and_spacing() -> None:
    headers = [("Content-Type", b'Application/X-Protobuf ;  type="aigc.events.v1.UsageRecorded"')]
    decoded = ProtobufDeserializer(events_pb2.UsageRecorded).decode(serialize(EVENTS[2]), headers)
    assert decoded == EVENTS[2]


def test_a_malformed_payload_or_tombstone_is_refused() -> None:
    deserializer = ProtobufDeserializer(events_pb2.UsageRecorded)
    headers = [("content-type", content_type_for(events_pb2.UsageRecorded).encode())]
    with pytest.raises(EventDecodeError, match="malformed"):
        deserializer.decode(b"\xff\xff\xff", headers, topic="aigc.usage.v1", partition=0, offset=1)
    with pytest.raises(EventDecodeError, match="tombstone"):
        deserializer.decode(None, headers, topic="aigc.usage.v1", partition=0, offset=2)


def test_topic_names_are_versioned_and_prefixable() -> None:
    topics = Topics()
    assert topics.all() == (
        "aigc.generation.requests.v1",
        "aigc.generation.results.v1",
        "aigc.generation.dlq.v1",
        "aigc.usage.v1",
        "aigc.safety.audit.v1",
        "aigc.feedback.v1",
        "aigc.batch.jobs.v1",
    )
    prefixed = Topics.with_prefix("t-abc-")
    assert prefixed.usage == "t-abc-aigc.usage.v1"
    assert prefixed.all() == tuple("t-abc-" + name for name in topics.all())
    assert Topics().usage == "aigc.usage.v1"  # the defaults are untouched
    assert prefixed.payload_types()[prefixed.generation_dlq] is events_pb2.GenerationResult


def test_a_prefix_that_makes_an_illegal_topic_name_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid Kafka topic name"):
        Topics.with_prefix("tenant a/")


def test_headers_carry_the_current_trace_context_and_the_consumer_continues_it() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")

    assert "traceparent" not in dict(record_headers(EVENTS[2]))  # no span, nothing to propagate
    with tracer.start_as_current_span("produce") as producing:
        headers = record_headers(EVENTS[2], {"x-origin": "unit"})
    event = ConsumedEvent(
        topic="aigc.usage.v1", partition=0, offset=0, key="req-1", message=EVENTS[2], headers=tuple(headers)
    )
    with event.span("handle usage", tracer=tracer) as handling:
        assert handling.get_span_context().trace_id == producing.get_span_context().trace_id

    assert event.header("X-Origin") == "unit"
    finished = {s.name: s for s in exporter.get_finished_spans()}
    child = finished["handle usage"]
    assert child.kind == trace.SpanKind.CONSUMER
    assert child.parent is not None and child.parent.span_id == producing.get_span_context().span_id
    assert child.attributes is not None and child.attributes["messaging.destination.name"] == "aigc.usage.v1"


def test_reserved_headers_cannot_be_overridden() -> None:
    with pytest.raises(ValueError, match=r"Content-Type.*cannot be overridden"):
        record_headers(EVENTS[2], {"Content-Type": "text/plain"})


def test_commit_offsets_are_one_past_the_last_handled_event_per_partition() -> None:
    def event(partition: int, offset: int) -> ConsumedEvent[Message]:
        return ConsumedEvent(
            topic="t", partition=partition, offset=offset, key=None, message=EVENTS[2], headers=()
        )

    offsets = next_offsets([event(0, 4), event(0, 9), event(0, 7), event(1, 0)])
    assert {(tp.partition, meta.offset) for tp, meta in offsets.items()} == {(0, 10), (1, 1)}
    assert next_offsets([]) == {}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_broker_fails_at_start_saying_what_was_tried_and_how_to_start_one() -> None:
    server = f"127.0.0.1:{_closed_port()}"
    settings = KafkaSettings(bootstrap_servers=server)

    with pytest.raises(Unavailable) as caught:
        EventProducer(settings, bootstrap_timeout_s=1).start()
    assert server in str(caught.value) and "make stack-up" in str(caught.value)

    consumer = EventConsumer(
        settings,
        group_id="g",
        topics=["aigc.usage.v1"],
        message_type=events_pb2.UsageRecorded,
        bootstrap_timeout_s=1,
    )
    with pytest.raises(Unavailable, match="make stack-up"):
        consumer.start()


def test_clients_must_be_started_before_use() -> None:
    producer = EventProducer(KafkaSettings())  # builds only: no connection, no error without a broker
    with pytest.raises(RuntimeError, match="start"):
        producer.send("aigc.usage.v1", "req-1", EVENTS[2])
    producer.close()  # closing an unstarted client is harmless
