"""Kafka helpers: topic names, protobuf serde, and a producer and consumer that carry trace context.

Every record on our topics is a protobuf message from ``aigc/events/v1`` with two kinds of
headers: ``content-type`` (``application/x-protobuf; type=<full proto name>``) so a consumer
refuses a record of the wrong type instead of mis-parsing it, and the W3C trace context
(``traceparent``, ``tracestate``, ``baggage``) so a consumer's span continues the producer's
trace.

Delivery is at-least-once: the producer is idempotent with ``acks=all``; the consumer never
auto-commits, and :meth:`EventConsumer.commit` stores the offset after each handled event, so a
crash before the commit replays the event. Handlers must therefore be idempotent (results are
keyed by item id).

The classes follow the house pattern: the constructor only stores configuration, ``start()``
connects (and raises :class:`~aigc_common.errors.Unavailable` when the broker cannot be
reached), ``close()`` releases everything. Both are context managers.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any, Generic, Self, TypeVar

from google.protobuf.message import DecodeError, Message
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaTimeoutError, TopicAlreadyExistsError
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata, TopicPartition
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from aigc.events.v1 import events_pb2
from aigc_common.errors import Unavailable
from aigc_common.settings import KafkaSettings

_log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

CONTENT_TYPE_HEADER = "content-type"
"""Record header naming the payload's media type and protobuf message type."""

PROTOBUF_MEDIA_TYPE = "application/x-protobuf"
"""Media type of every payload on our topics; the ``type`` parameter names the message."""

_LEGAL_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_MAX_TOPIC_LENGTH = 249  # the broker's limit


# --------------------------------------------------------------------------------------------
# Topics


@dataclass(frozen=True)
class Topics:
    """The versioned topic names, in one place.

    A new major version of a payload gets a new topic (``.v2``) so old and new consumers can
    run side by side during a migration. Tests use :meth:`with_prefix` to get names no other
    test uses.
    """

    generation_requests: str = "aigc.generation.requests.v1"
    """Batch items to generate (``GenerationRequested``), keyed ``job_id/item_id``."""
    generation_results: str = "aigc.generation.results.v1"
    """Results of batch items (``GenerationResult``), idempotent by ``(job_id, item_id)``."""
    generation_dlq: str = "aigc.generation.dlq.v1"
    """Items that failed after bounded retries (``GenerationResult`` with the error)."""
    usage: str = "aigc.usage.v1"
    """Tokens and cost per request, for chargeback (``UsageRecorded``)."""
    safety_audit: str = "aigc.safety.audit.v1"
    """Every non-allow safety verdict with its rule ids (``SafetyAudited``)."""
    feedback: str = "aigc.feedback.v1"
    """Ratings and corrections from business users (``FeedbackGiven``)."""
    batch_jobs: str = "aigc.batch.jobs.v1"
    """Accepted batch jobs with their requests (``BatchJobAccepted``), keyed by job id: the log the
    job store is rebuilt from."""

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        """The standard names, each prefixed with ``prefix`` (e.g. a test's unique name)."""
        defaults = cls()
        topics = cls(**{f.name: prefix + getattr(defaults, f.name) for f in fields(cls)})
        for name in topics.all():
            _check_topic_name(name)
        return topics

    def all(self) -> tuple[str, ...]:
        """Every topic name, in declaration order."""
        return tuple(getattr(self, f.name) for f in fields(self))

    def payload_types(self) -> dict[str, type[Message]]:
        """Which protobuf message each topic carries."""
        return {
            self.generation_requests: events_pb2.GenerationRequested,
            self.generation_results: events_pb2.GenerationResult,
            self.generation_dlq: events_pb2.GenerationResult,
            self.usage: events_pb2.UsageRecorded,
            self.safety_audit: events_pb2.SafetyAudited,
            self.feedback: events_pb2.FeedbackGiven,
            self.batch_jobs: events_pb2.BatchJobAccepted,
        }


def _check_topic_name(name: str) -> None:
    if not name or len(name) > _MAX_TOPIC_LENGTH or not set(name) <= _LEGAL_TOPIC_CHARS:
        raise ValueError(
            f"invalid Kafka topic name {name!r}: use 1 to {_MAX_TOPIC_LENGTH} characters from [a-zA-Z0-9._-]"
        )


# --------------------------------------------------------------------------------------------
# Protobuf serde


def content_type_for(message_type: type[Message] | Message) -> str:
    """The ``content-type`` header value for a message type (or an instance of it)."""
    return f"{PROTOBUF_MEDIA_TYPE}; type={message_type.DESCRIPTOR.full_name}"


def serialize(message: Message) -> bytes:
    """The record value for ``message``: its protobuf wire encoding."""
    # Deterministic map ordering: the same event always produces the same bytes, which keeps
    # log compaction and byte-level deduplication meaningful for map fields (variables).
    return message.SerializeToString(deterministic=True)


def record_headers(message: Message, extra: Mapping[str, str] | None = None) -> list[tuple[str, bytes]]:
    """Headers for a record carrying ``message``: content type, the current trace context, ``extra``.

    kafka-python wants ``(str, bytes)`` pairs. The trace context comes from the active
    OpenTelemetry context, so a record sent inside a span makes the consumer's span its child.
    """
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    headers = [(CONTENT_TYPE_HEADER, content_type_for(message).encode())]
    headers += [(name, value.encode()) for name, value in carrier.items()]
    for name, value in (extra or {}).items():
        if name.lower() == CONTENT_TYPE_HEADER or name.lower() in carrier:
            raise ValueError(f"header {name!r} is set by the event producer and cannot be overridden")
        headers.append((name, value.encode()))
    return headers


def _parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    media_type, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for part in rest.split(";"):
        name, sep, param = part.partition("=")
        if sep:
            params[name.strip().lower()] = param.strip().strip('"')
    return media_type.strip().lower(), params


class EventDecodeError(ValueError):
    """A record could not be decoded as the expected event; names where the record is.

    It carries the raw record so a caller can dead-letter it, then
    :meth:`EventConsumer.skip` past it.
    """

    def __init__(
        self,
        reason: str,
        *,
        expected: str,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None = None,
        value: bytes | None = None,
        headers: Sequence[tuple[str, bytes | None]] = (),
    ) -> None:
        self.reason = reason
        self.expected = expected
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = tuple(headers)
        super().__init__(
            f"record at topic {topic!r} partition {partition} offset {offset} is not a {expected}: {reason}"
        )


def _header(headers: Iterable[tuple[str, bytes | None]], name: str) -> bytes | None:
    found: bytes | None = None
    for key, value in headers:
        if key.lower() == name:
            found = value  # the last one wins, as for HTTP-style headers on a proxy chain
    return found


class ProtobufDeserializer(Generic[M]):
    """Decodes record values as one protobuf message type, after checking the content type.

    A record whose ``content-type`` names another message type, or that has none, is refused
    with :class:`EventDecodeError`: protobuf would happily parse most bytes as most messages
    and return garbage, so the header is the only reliable guard.
    """

    def __init__(self, message_type: type[M]) -> None:
        self.message_type = message_type
        self.full_name = message_type.DESCRIPTOR.full_name
        self.content_type = content_type_for(message_type)

    def consumed(self, record: Any) -> ConsumedEvent[M]:
        """A kafka-python ``ConsumerRecord`` decoded (see :meth:`decode`), with where it came from."""
        headers = tuple(record.headers or ())
        message = self.decode(
            record.value,
            headers,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
        )
        return ConsumedEvent(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=None if record.key is None else record.key.decode("utf-8", errors="replace"),
            message=message,
            headers=headers,
            timestamp_ms=record.timestamp,
            leader_epoch=record.leader_epoch if record.leader_epoch is not None else -1,
        )

    def decode(
        self,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes | None]],
        *,
        topic: str = "?",
        partition: int = -1,
        offset: int = -1,
        key: bytes | None = None,
    ) -> M:
        """The message in ``value``; raises :class:`EventDecodeError` naming topic/partition/offset."""
        headers = list(headers)

        def refuse(reason: str) -> EventDecodeError:
            return EventDecodeError(
                reason,
                expected=self.full_name,
                topic=topic,
                partition=partition,
                offset=offset,
                key=key,
                value=value,
                headers=headers,
            )

        raw = _header(headers, CONTENT_TYPE_HEADER)
        if raw is None:
            raise refuse(f"it has no {CONTENT_TYPE_HEADER!r} header (expected {self.content_type!r})")
        declared = raw.decode("utf-8", errors="replace")
        media_type, params = _parse_content_type(declared)
        if media_type != PROTOBUF_MEDIA_TYPE or params.get("type") != self.full_name:
            raise refuse(f"its {CONTENT_TYPE_HEADER} is {declared!r}, expected {self.content_type!r}")
        if value is None:
            raise refuse("its value is null (a tombstone)")
        try:
            return self.message_type.FromString(value)
        except DecodeError as exc:
            raise refuse(f"the protobuf payload is malformed ({exc})") from None


# --------------------------------------------------------------------------------------------
# Connection checks


def _servers(settings: KafkaSettings) -> list[str]:
    return [s.strip() for s in settings.bootstrap_servers.split(",") if s.strip()]


def _unavailable(settings: KafkaSettings, detail: str) -> Unavailable:
    return Unavailable(
        f"Kafka is unavailable: {detail} (bootstrap servers tried: {', '.join(_servers(settings))}). "
        "Start the local broker with `make stack-up` (or `bash scripts/local-stack.sh up kafka`), "
        "or point AIGC_<SERVICE>_KAFKA__BOOTSTRAP_SERVERS at a running cluster."
    )


def _probe(settings: KafkaSettings, timeout_s: float) -> None:
    """Fails fast when no bootstrap server accepts a TCP connection.

    kafka-python would otherwise retry for the whole bootstrap timeout and, since it starts its
    IO thread before bootstrapping, leave that thread behind when the constructor raises.
    """
    errors: list[str] = []
    for server in _servers(settings):
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=timeout_s):
                return
        except (OSError, ValueError) as exc:
            errors.append(f"{server}: {exc}")
    raise _unavailable(settings, "no bootstrap server accepted a connection (" + "; ".join(errors) + ")")


def _client_config(settings: KafkaSettings, role: str, bootstrap_timeout_s: float) -> dict[str, Any]:
    return {
        "bootstrap_servers": _servers(settings),
        "client_id": f"{settings.client_id}-{role}",
        "bootstrap_timeout_ms": int(bootstrap_timeout_s * 1000),
    }


def subscribe_known(consumer: Any, topics: Sequence[str], timeout_s: float = 30.0) -> None:
    """Subscribes ``consumer`` to ``topics`` once its metadata lists each of them.

    A consumer that joins its group before its metadata holds a subscribed topic is assigned none
    of that topic's partitions, and kafka-python notices only at its next metadata refresh
    (``metadata_max_age_ms``, minutes): a tracker or worker would sit idle that long. Waiting for
    the topics' partitions first closes that gap; a topic still unknown after ``timeout_s`` (not
    created yet) is subscribed anyway and picked up at a refresh.
    """
    deadline = time.monotonic() + timeout_s
    missing = list(topics)
    while missing and time.monotonic() < deadline:
        missing = [topic for topic in missing if not consumer.partitions_for_topic(topic)]
        if missing:
            time.sleep(0.2)
    if missing:
        _log.warning("subscribing to topics the cluster does not list yet: %s", ", ".join(missing))
    consumer.subscribe(list(topics))


# --------------------------------------------------------------------------------------------
# Producer


class EventProducer:
    """Publishes protobuf events with their content type and the current trace context.

    Idempotent with ``acks=all``: a retried send is not duplicated in the log and an
    acknowledged record survives a leader change. Retries are bounded by
    ``delivery_timeout_s`` so a dead broker surfaces as a failed future, not a hang.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        bootstrap_timeout_s: float = 10.0,
        delivery_timeout_s: float = 30.0,
        linger_ms: int = 5,
        **overrides: Any,
    ) -> None:
        """``overrides`` are passed to ``kafka.KafkaProducer`` as is (e.g. ``compression_type``)."""
        self.settings = settings
        self._bootstrap_timeout_s = bootstrap_timeout_s
        self._config: dict[str, Any] = {
            **_client_config(settings, "producer", bootstrap_timeout_s),
            "acks": "all",
            "enable_idempotence": True,
            "retries": 5,
            "delivery_timeout_ms": int(delivery_timeout_s * 1000),
            # request_timeout must fit inside delivery_timeout, or the producer refuses its config.
            "request_timeout_ms": min(30_000, int(delivery_timeout_s * 1000) - int(linger_ms) - 1),
            "linger_ms": linger_ms,
            # send() blocks this long at most waiting for metadata of a new topic.
            "max_block_ms": int(bootstrap_timeout_s * 1000),
            **overrides,
        }
        self._producer: Any = None

    def start(self) -> Self:
        """Connects to the cluster; raises :class:`Unavailable` when it cannot be reached."""
        if self._producer is None:
            _probe(self.settings, self._bootstrap_timeout_s)
            try:
                self._producer = KafkaProducer(**self._config)
            except KafkaTimeoutError as exc:
                raise _unavailable(
                    self.settings, f"no cluster metadata within {self._bootstrap_timeout_s:g}s ({exc})"
                ) from None
        return self

    def send(
        self, topic: str, key: str, message: Message, *, headers: Mapping[str, str] | None = None
    ) -> FutureRecordMetadata:
        """Queues ``message`` for ``topic``; the future resolves to the record's metadata.

        The key picks the partition, so events of one item (``job_id/item_id``) stay in order.
        Call ``.get(timeout)`` on the result, or :meth:`flush`, to wait for the broker's ack.
        """
        return self._client().send(
            topic, value=serialize(message), key=key.encode(), headers=record_headers(message, headers)
        )

    def send_or_log(self, topic: str, key: str, message: Message, *, what: str, request_id: str) -> None:
        """Queues ``message`` without waiting; a record the broker finally refuses is logged with
        ``request_id`` (never the payload), so a lost audit or usage record is at least visible."""
        future = self.send(topic, key, message)

        def failed(exc: Any) -> None:
            _log.error(
                f"{what} not delivered", extra={"fields": {"request_id": request_id, "error": str(exc)}}
            )

        future.add_errback(failed)

    def flush(self, timeout_s: float | None = None) -> None:
        """Waits until every queued record is acknowledged (or failed)."""
        self._client().flush(timeout=timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Sends what is queued (up to ``timeout_s``) and disconnects. Safe to call twice."""
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=timeout_s)

    def _client(self) -> Any:
        if self._producer is None:
            raise RuntimeError("EventProducer is not started: call start() first")
        return self._producer

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Consumer


@dataclass(frozen=True)
class ConsumedEvent(Generic[M]):
    """One decoded record, with where it came from and the producer's trace context."""

    topic: str
    partition: int
    offset: int
    key: str | None
    message: M
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int = -1
    leader_epoch: int = field(default=-1, repr=False)

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive) as text, or None."""
        value = _header(self.headers, name.lower())
        return None if value is None else value.decode("utf-8", errors="replace")

    def trace_context(self) -> otel_context.Context:
        """The OpenTelemetry context extracted from the headers: parent of a handling span."""
        carrier = {k.lower(): v.decode("utf-8", errors="replace") for k, v in self.headers if v is not None}
        return propagate.extract(carrier)

    @contextmanager
    def span(self, name: str | None = None, *, tracer: trace.Tracer | None = None) -> Iterator[trace.Span]:
        """A CONSUMER span, child of the producer's, current while the event is handled."""
        tracer = tracer or trace.get_tracer(__name__)
        attributes: dict[str, str | int] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": self.topic,
            "messaging.destination.partition.id": str(self.partition),
            "messaging.kafka.offset": self.offset,
        }
        with tracer.start_as_current_span(
            name or f"process {self.topic}",
            context=self.trace_context(),
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
        ) as span:
            yield span


def next_offsets(events: Iterable[ConsumedEvent[Any]]) -> dict[TopicPartition, OffsetAndMetadata]:
    """The offsets to commit after ``events``: one past the highest handled offset per partition."""
    latest: dict[TopicPartition, ConsumedEvent[Any]] = {}
    for event in events:
        tp = TopicPartition(event.topic, event.partition)
        if tp not in latest or event.offset > latest[tp].offset:
            latest[tp] = event
    # The committed offset is the next one to read, hence +1; the leader epoch lets the broker
    # detect a truncated log on resume (KIP-320).
    return {tp: OffsetAndMetadata(e.offset + 1, "", e.leader_epoch) for tp, e in latest.items()}


class EventConsumer(Generic[M]):
    """Reads protobuf events of one type as a member of a consumer group, committing by hand.

    Offsets are committed only through :meth:`commit`, after the events are handled: a crash
    in between replays them (at-least-once). A group without committed offsets starts at the
    earliest record, so nothing published before the first consumer joined is missed.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        group_id: str,
        topics: Sequence[str],
        message_type: type[M],
        bootstrap_timeout_s: float = 10.0,
        **overrides: Any,
    ) -> None:
        """``overrides`` are passed to ``kafka.KafkaConsumer`` as is (e.g. ``max_poll_interval_ms``)."""
        if not topics:
            raise ValueError("EventConsumer needs at least one topic")
        self.settings = settings
        self.group_id = group_id
        self.topics = tuple(topics)
        self.deserializer = ProtobufDeserializer(message_type)
        self._bootstrap_timeout_s = bootstrap_timeout_s
        self._config: dict[str, Any] = {
            **_client_config(settings, "consumer", bootstrap_timeout_s),
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            # New partitions and topics are seen within this (the default is five minutes).
            "metadata_max_age_ms": 30_000,
            **overrides,
        }
        self._consumer: Any = None

    def start(self) -> Self:
        """Connects and subscribes; raises :class:`Unavailable` when the cluster cannot be reached.

        Partitions are assigned during the first :meth:`poll_batch` calls (the group join).
        """
        if self._consumer is None:
            _probe(self.settings, self._bootstrap_timeout_s)
            try:
                self._consumer = KafkaConsumer(**self._config)
                subscribe_known(self._consumer, self.topics)
            except KafkaTimeoutError as exc:
                raise _unavailable(
                    self.settings, f"no cluster metadata within {self._bootstrap_timeout_s:g}s ({exc})"
                ) from None
        return self

    def poll_batch(self, timeout_s: float = 1.0, max_records: int = 500) -> list[ConsumedEvent[M]]:
        """Up to ``max_records`` decoded events, waiting at most about ``timeout_s`` for the first.

        An empty list means nothing arrived in time (or the group is still joining). A record
        that cannot be decoded is never skipped silently: its partition is rewound to it, the
        events before it are returned, and the next call raises :class:`EventDecodeError` for it
        (also when it comes first). Call :meth:`skip` to move past it, e.g. after dead-lettering.
        """
        consumer = self._client()
        batches = consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        events: list[ConsumedEvent[M]] = []
        errors: list[EventDecodeError] = []
        for tp, records in batches.items():
            for record in records:
                try:
                    events.append(self.deserializer.consumed(record))
                except EventDecodeError as exc:
                    # The consumer's position is already past this batch; rewind to the bad
                    # record so neither it nor the records after it are lost in this process.
                    consumer.seek(tp, record.offset)
                    errors.append(exc)
                    break
        if errors and not events:
            raise errors[0]
        return events

    def commit(self, events: Iterable[ConsumedEvent[M]], timeout_s: float | None = 30.0) -> None:
        """Commits the offsets after ``events`` (offset + 1 per partition), blocking until stored.

        Call it after the events are handled. Raises ``kafka.errors.CommitFailedError`` when the
        group rebalanced meanwhile; the events are then replayed to the new owner.
        """
        offsets = next_offsets(events)
        if offsets:
            timeout_ms = None if timeout_s is None else int(timeout_s * 1000)
            self._client().commit(offsets=offsets, timeout_ms=timeout_ms)

    def skip(self, error: EventDecodeError) -> None:
        """Moves past an undecodable record; it is committed with the next event of its partition."""
        self._client().seek(TopicPartition(error.topic, error.partition), error.offset + 1)

    def committed(self, topic: str, partition: int = 0) -> int | None:
        """The group's committed offset for a partition (the next one to read), or None."""
        return self._client().committed(TopicPartition(topic, partition))

    def run(
        self,
        handler: Callable[[ConsumedEvent[M]], None],
        should_stop: threading.Event | Callable[[], bool],
        *,
        poll_timeout_s: float = 0.5,
        max_records: int = 100,
        tracer: trace.Tracer | None = None,
    ) -> int:
        """Polls, handles each event inside its span, commits after each batch; returns how many.

        Stops when ``should_stop`` is set (or returns true), checked between batches. If the
        handler raises, the events handled before are committed, the positions are rewound to the
        failed event so this process would read it again, and the error propagates. A record
        that cannot be decoded raises :class:`EventDecodeError` here too: dead-letter it,
        :meth:`skip` it, and call ``run`` again.
        """
        stop = should_stop.is_set if isinstance(should_stop, threading.Event) else should_stop
        handled_total = 0
        while not stop():
            batch = self.poll_batch(poll_timeout_s, max_records)
            handled: list[ConsumedEvent[M]] = []
            try:
                for event in batch:
                    with event.span(tracer=tracer):
                        handler(event)
                    handled.append(event)
            except BaseException:
                self._rewind_unhandled(batch[len(handled) :])
                self.commit(handled)
                raise
            # commit after handling: at-least-once is safe because handlers are idempotent.
            self.commit(handled)
            handled_total += len(handled)
        return handled_total

    def close(self) -> None:
        """Leaves the group (so its partitions move to others at once) and disconnects."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            # Nothing to auto-commit: offsets move only through commit().
            consumer.close(autocommit=False)

    def _rewind_unhandled(self, unhandled: Sequence[ConsumedEvent[M]]) -> None:
        first: dict[TopicPartition, int] = {}
        for event in unhandled:
            tp = TopicPartition(event.topic, event.partition)
            first[tp] = min(first.get(tp, event.offset), event.offset)
        for tp, offset in first.items():
            self._client().seek(tp, offset)

    def _client(self) -> Any:
        if self._consumer is None:
            raise RuntimeError("EventConsumer is not started: call start() first")
        return self._consumer

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Topic administration


def ensure_topics(
    settings: KafkaSettings,
    topics: Iterable[str],
    *,
    partitions: int = 1,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
) -> list[str]:
    """Creates the topics that do not exist yet and waits until each has a leader.

    Returns the names it created. Existing topics are left as they are (their partition count
    is not changed). Raises :class:`Unavailable` when the cluster cannot be reached.
    """
    names = list(dict.fromkeys(topics))
    for name in names:
        _check_topic_name(name)
    if not names:
        return []
    _probe(settings, timeout_s)
    try:
        admin = KafkaAdminClient(**_client_config(settings, "admin", timeout_s))
    except KafkaTimeoutError as exc:
        raise _unavailable(settings, f"no cluster metadata within {timeout_s:g}s ({exc})") from None
    try:
        response = admin.create_topics(
            {
                name: {"num_partitions": partitions, "replication_factor": replication_factor}
                for name in names
            },
            timeout_ms=int(timeout_s * 1000),
            raise_errors=False,
        )
        created: list[str] = []
        for result in response["topics"]:
            code = result["error_code"]
            if code == 0:
                created.append(result["name"])
            elif code != TopicAlreadyExistsError.errno:
                raise RuntimeError(
                    f"could not create topic {result['name']!r}: error {code} {result.get('error_message') or ''}"
                )
        # CreateTopics returns before every broker knows the topic; wait until it has a leader so
        # the first send or subscribe does not race its propagation.
        deadline_ms = max(1000, int(timeout_s * 1000))
        admin.wait_for_topics(names, timeout_ms=deadline_ms)
        return created
    finally:
        admin.close()
