"""The batch worker: consumes ``GenerationRequested`` items, runs the pipeline, publishes results
exactly once.

Exactly once, over Kafka transactions
=====================================

For every polled batch the worker runs the pipeline on each item, then, in **one** transaction
of its transactional producer, sends one ``GenerationResult`` per item to the results topic (and,
for poison items, a copy to the dead-letter topic) and adds the consumed offsets to the same
transaction (``send_offsets_to_transaction`` with the consumer's group metadata, KIP-447). Either
the results and the offsets are committed together, or neither is: a crash, a fenced producer or
a failed commit leaves no visible result and the items are consumed again. Readers of the results
topic use ``isolation_level=read_committed`` and never see an aborted record. The pipeline itself
may run more than once for an item (at-least-once *processing*); its *results* are published once.

The transaction is opened only after the batch is processed, so it lasts milliseconds, not the
batch's processing time: an open transaction holds back every ``read_committed`` reader of the
partitions it wrote to (the last stable offset stops at it), and a long one would also risk
``transaction_timeout``.

Transactional id and fencing
============================

Each worker has a stable transactional id, ``aigc-batch-<group>-<worker index>`` by default (the
index is, e.g., a StatefulSet ordinal). We do not derive ids from assigned partitions: with
KIP-447 (broker 2.5+, sent by kafka-python 3) a zombie that lost its partitions is fenced by the
consumer *generation* carried in ``TxnOffsetCommit``, so one producer per worker is enough. The id
being *stable* is what makes recovery fast: a restarted worker's ``init_transactions`` fences its
dead predecessor (same id, bumped epoch) and aborts its open transaction at once, instead of the
broker waiting ``transaction_timeout`` first. Correctness does not depend on it: the new owner of
the input partitions fetches committed offsets with ``require_stable`` and waits for the pending
transaction either way. Two live workers given the same index fence each other; the fenced one
stops with :class:`FatalTransactionError` rather than publishing anything twice.

Retries, poison items, deadlines, cancellation
==============================================

``process`` raising :class:`Unavailable`, :class:`DeadlineExceeded` or :class:`ResourceExhausted`
is retried in the worker with exponential backoff and jitter (honouring ``retry_after``), up to
``max_attempts``. Any other error, or the last retryable one, makes the item poison: a ``failed``
result goes to the results topic (so the job completes) and the same result goes to the
dead-letter topic with the error class and message in the ``aigc-error-type`` / ``aigc-error``
headers, both in the batch's transaction. A record that cannot be decoded is dead-lettered the same
way. An item whose ``deadline`` has passed ends ``expired`` without calling ``process`` (also when
the deadline passes between attempts, or during one); an item of a cancelled job ends
``cancelled``. Retrying in the worker rather than re-publishing the item keeps one item's result
in one transaction with its offset, and keeps a partition in order.

Fairness between tenants
========================

Within each polled batch the items are interleaved round-robin across tenants before they queue
for the ``concurrency`` slots (an :class:`asyncio.Semaphore`, which serves waiters in order), so
a tenant with a 10 000-item job and a tenant with 3 items in the same poll both get a slot in the
first round; neither waits for the other's items to finish. The poll size (``max_poll_records``)
bounds how much one batch can hold. The worker cannot reach past a partition's head, so the other
half of fairness is upstream: the pacer (``pacer.py``) keeps only a window of each job (a few
seconds of its own throughput, weighted by priority) in the requests topic, so a job submitted
after a huge one waits behind that window, not behind the huge job's whole backlog
(``tests/integration/test_batch_fairness.py``: a 3-item job behind a 600-item one finishes after
26 of the 600, against all 600 without pacing).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar, cast

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata, TopicPartition
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aigc.events.v1 import events_pb2
from aigc_common.errors import AigcError, DeadlineExceeded, ResourceExhausted, Unavailable
from aigc_common.kafka import (
    ConsumedEvent,
    EventDecodeError,
    ProtobufDeserializer,
    Topics,
    record_headers,
    serialize,
    subscribe_known,
)
from aigc_common.settings import KafkaSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

GenerationRequested = events_pb2.GenerationRequested
GenerationResult = events_pb2.GenerationResult

ProcessFn = Callable[[GenerationRequested], GenerationResult | Awaitable[GenerationResult]]
"""The pipeline for one item; sync or async. Raises :class:`AigcError` subclasses on failure."""

CancelCheck = Callable[[str], bool | Awaitable[bool]]
"""Whether a job (by id) was cancelled; sync or async."""

STATUSES = ("succeeded", "failed", "blocked", "expired", "cancelled")
"""Every status a result can have; also the values of the ``status`` metric label."""

RETRYABLE_ERRORS: tuple[type[AigcError], ...] = (Unavailable, DeadlineExceeded, ResourceExhausted)
"""Errors of ``process`` worth another attempt: the dependency may be back, the limit may lift."""

ERROR_TYPE_HEADER = "aigc-error-type"
"""Dead-letter header: the class name of the error that made the item poison."""
ERROR_HEADER = "aigc-error"
"""Dead-letter header: the error's message."""
SOURCE_HEADER = "aigc-source"
"""Dead-letter header: ``topic/partition/offset`` of the request record, for replay and forensics."""

_MAX_HEADER_TEXT = 1000  # a header is for a human reading the DLQ; keep a runaway message bounded

LAG_INTERVAL_S = 1.0
"""Least time between two consumer-lag measurements of one worker (each is a broker round trip)."""
_LAG_TIMEOUT_MS = 1000  # one measurement; while the broker is away it is skipped, not waited for


# --------------------------------------------------------------------------------------------
# Configuration and metrics


@dataclass(frozen=True)
class WorkerConfig:
    """How one batch worker consumes, retries and publishes. The composition root fills it from
    the gateway's settings; every duration is in seconds."""

    group_id: str = "aigc-batch"
    """Consumer group of all batch workers; partitions of the requests topic are shared among them."""
    worker_index: int = 0
    """This worker's stable index in the group (e.g. a StatefulSet ordinal); names its transactional id."""
    transactional_id: str = ""
    """Explicit transactional id; empty means ``aigc-batch-<group_id>-<worker_index>``."""
    topics: Topics = field(default_factory=Topics)
    """Requests, results and dead-letter topic names."""
    concurrency: int = 4
    """How many ``process`` calls run at once."""
    max_attempts: int = 3
    """Attempts per item for retryable errors, the first included; then the item is dead-lettered."""
    backoff_initial_s: float = 0.5
    """Backoff before the 2nd attempt; doubles for each further attempt (with jitter)."""
    backoff_max_s: float = 30.0
    """Upper bound of one backoff, also of a ``retry_after`` the pipeline asks for."""
    max_poll_records: int = 500
    """Most items per batch (and per transaction); bounds the work a crash makes run again."""
    target_batch_s: float = 2.0
    """Aim for batches that take about this long: each poll asks for the items the worker's
    measured throughput finishes in this time (at least ``concurrency``, at most
    ``max_poll_records``). Cache hits then share a transaction by the hundred, while model-bound
    items, at a few per second, are committed (and visible to the caller) every couple of seconds."""
    poll_timeout_s: float = 1.0
    """How long one poll waits for records; also about how long ``stop()`` waits when idle."""
    transaction_timeout_s: float = 60.0
    """Broker-side bound of an open transaction; a dead worker's open transaction is aborted after it."""
    session_timeout_s: float = 10.0
    """Consumer-group session: a worker silent this long loses its partitions to the others."""
    max_poll_interval_s: float = 300.0
    """Longest time between polls (one batch's processing) before the group evicts this worker."""
    failure_backoff_s: float = 1.0
    """Pause after an aborted transaction before the batch is consumed again."""
    cancel_check_interval_s: float = 1.0
    """How long one answer of the job store to "is this job cancelled?" stands. Items of a job
    share it, so a 10,000-item job costs a store round trip a second, not one per item; a
    cancellation reaches the workers within this time."""
    commit_timeout_s: float = 30.0
    """Longest wait for each step of a batch's transaction (flush, offsets, commit, abort). A step
    that takes longer (the broker is away) makes the worker replace its producer; see ``_commit``."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.max_poll_records < 1:
            raise ValueError(f"max_poll_records must be at least 1, got {self.max_poll_records}")
        if self.target_batch_s <= 0:
            raise ValueError(f"target_batch_s must be positive, got {self.target_batch_s}")
        if self.cancel_check_interval_s < 0:
            raise ValueError(
                f"cancel_check_interval_s must not be negative, got {self.cancel_check_interval_s}"
            )
        if self.commit_timeout_s <= 0:
            raise ValueError(f"commit_timeout_s must be positive, got {self.commit_timeout_s}")
        if self.worker_index < 0:
            raise ValueError(f"worker_index must not be negative, got {self.worker_index}")

    def resolved_transactional_id(self) -> str:
        """The transactional id this worker's producer uses."""
        return self.transactional_id or f"aigc-batch-{self.group_id}-{self.worker_index}"


class BatchMetrics:
    """Instruments of the batch worker; counted only once a result is committed, so an aborted and
    replayed batch is not counted twice."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.items = Counter(
            "aigc_batch_items",
            "Batch items whose result was committed, by status.",
            ["status"],
            registry=registry,
        )
        self.item_duration = Histogram(
            "aigc_batch_item_duration_seconds",
            "Time from picking a batch item up to having its result (all attempts and backoffs), by status.",
            ["status"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "aigc_kafka_consumer_lag",
            "Records of the topic not yet fetched by the group's workers in this process: the sum over "
            "their assigned partitions of (end offset - position), measured after polls.",
            ["topic", "group"],
            registry=registry,
        )
        # Workers sharing these metrics each own some partitions; the gauge is the sum of their parts.
        self._lag_parts: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
        self._lag_lock = threading.Lock()

    def set_lag(self, topic: str, group: str, worker: int, lag: int | None) -> None:
        """Records one worker's lag on ``topic`` (``None``: it holds no partitions any more)."""
        with self._lag_lock:
            parts = self._lag_parts[(topic, group)]
            if lag is None:
                parts.pop(worker, None)
            else:
                parts[worker] = lag
            self.consumer_lag.labels(topic, group).set(sum(parts.values()))


# --------------------------------------------------------------------------------------------
# Pure helpers


def interleave_by_tenant(
    events: Sequence[ConsumedEvent[GenerationRequested]],
) -> list[ConsumedEvent[GenerationRequested]]:
    """The events round-robin across tenants (in order of first appearance), each tenant's in log order."""
    queues: dict[str, list[ConsumedEvent[GenerationRequested]]] = defaultdict(list)
    for event in events:
        queues[event.message.tenant_id].append(event)
    ordered: list[ConsumedEvent[GenerationRequested]] = []
    lanes = list(queues.values())
    for i in range(max((len(lane) for lane in lanes), default=0)):
        ordered.extend(lane[i] for lane in lanes if i < len(lane))
    return ordered


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds to wait after failed attempt ``attempt`` (from 1): exponential, with equal jitter.

    Half the exponential step is fixed and half random, so retries of many items that failed
    together spread out, yet none retries at once against a dependency that just went down.
    """
    step = min(max_s, initial_s * 2 ** (attempt - 1))
    return step / 2 + rng.uniform(0, step / 2)


def item_key(job_id: str, item_id: str) -> str:
    """The record key of an item's request and result: one item always maps to one partition."""
    return f"{job_id}/{item_id}"


def _bounded(text: str) -> str:
    return text if len(text) <= _MAX_HEADER_TEXT else text[: _MAX_HEADER_TEXT - 1] + "…"


async def _maybe_await(value: T | Awaitable[T]) -> T:
    if inspect.isawaitable(value):
        return await value
    return value


# --------------------------------------------------------------------------------------------
# Outcomes


@dataclass
class _Outcome:
    """What one consumed record turned into: the result to publish, and the DLQ reason if poison."""

    topic: str
    partition: int
    offset: int
    result: GenerationResult
    key: str
    headers: list[tuple[str, bytes]]
    dlq_error: tuple[str, str] | None = None  # (error class, message)
    duration_s: float = 0.0
    # False only for an undecodable record without a job/item key: there is no job to complete.
    to_results: bool = True

    @property
    def status(self) -> str:
        return self.result.status


class FatalTransactionError(RuntimeError):
    """The worker's producer cannot continue (fenced by a newer producer with the same
    transactional id, or in a state it cannot abort from); the worker must be restarted."""


# --------------------------------------------------------------------------------------------
# The worker


class BatchWorker:
    """One member of the batch consumer group, with its own transactional producer.

    ``await run()`` connects, then polls, processes and commits batch after batch until
    :meth:`stop`; it runs on the caller's event loop (so an async ``process`` can use the
    gateway's channels), while every Kafka call runs on one dedicated thread, since kafka-python
    blocks and its clients are not meant to be used from several threads at once. A sync
    ``process`` runs in the default thread pool.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        config: WorkerConfig,
        process: ProcessFn,
        *,
        is_cancelled: CancelCheck | None = None,
        registry: CollectorRegistry | None = None,
        metrics: BatchMetrics | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        """``clock`` is wall time in seconds (deadlines are wall-clock timestamps). Give either
        ``metrics`` (shared by several workers in one process) or a ``registry`` to create them in."""
        self.kafka = kafka
        self.config = config
        self.transactional_id = config.resolved_transactional_id()
        self._process = process
        # An object with an async __call__ (BatchPipeline) is a coroutine function too: it runs on
        # the loop, not through a thread hop per item.
        self._process_is_async = inspect.iscoroutinefunction(process) or inspect.iscoroutinefunction(
            type(process).__call__
        )
        self._is_cancelled: CancelCheck = is_cancelled or (lambda _job_id: False)
        # job id -> (when asked, the answer being fetched or fetched); see cancel_check_interval_s.
        self._cancel_answers: dict[str, tuple[float, asyncio.Future[bool]]] = {}
        self.metrics = metrics or BatchMetrics(registry if registry is not None else CollectorRegistry())
        self._clock = clock
        self._rng = rng or random.Random()
        self._tracer = tracer or trace.get_tracer(__name__)
        self._deserializer = ProtobufDeserializer(GenerationRequested)
        # threading.Event: stop() may come from a signal handler or another thread.
        self._stopping = threading.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._consumer: Any = None
        self._producer: Any = None
        self._lag_due = 0.0  # time.monotonic() of the next lag measurement
        # Items the next poll asks for; follows the measured throughput (see target_batch_s).
        self._poll_records = min(self.config.max_poll_records, self.config.concurrency)
        self.committed_batches = 0
        """Transactions committed so far (for tests and status pages)."""

    # ---- lifecycle

    def stop(self) -> None:
        """Asks :meth:`run` to return after the batch in hand is committed. Thread- and signal-safe."""
        self._stopping.set()

    async def run(self) -> None:
        """Connects, then processes batches until :meth:`stop`; leaves the group on the way out.

        Raises :class:`Unavailable` when the broker cannot be reached at start, and
        :class:`FatalTransactionError` when the producer is fenced by another worker with the same
        transactional id (or otherwise cannot abort); the batch in hand is then consumed again.
        """
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aigc-batch-kafka")
        try:
            await self._kafka(self._connect)
            while not self._stopping.is_set():
                events, undecodable = await self._kafka(self._poll)
                if not events and not undecodable:
                    continue
                started = time.monotonic()
                outcomes = await self._handle_all(events)
                self._size_next_poll(len(events), time.monotonic() - started)
                outcomes += [self._undecodable_outcome(error) for error in undecodable]
                try:
                    await self._kafka(self._commit, outcomes)
                except FatalTransactionError:
                    raise
                except _ProducerStuck:
                    log.warning(
                        "batch transaction stuck; replacing the producer, the batch will be consumed again",
                        exc_info=True,
                        extra={"fields": {"transactional_id": self.transactional_id}},
                    )
                    await self._recover(replace_producer=True)
                    continue
                except Exception:
                    # Aborted: nothing of this batch is visible. Consume it again from the committed
                    # offsets; the pipeline runs again, the results are still published once.
                    log.exception(
                        "batch transaction aborted; the batch will be consumed again",
                        extra={"fields": {"transactional_id": self.transactional_id}},
                    )
                    await asyncio.sleep(self.config.failure_backoff_s)
                    await self._recover(replace_producer=False)
                    continue
                self.committed_batches += 1
                for outcome in outcomes:
                    self.metrics.items.labels(outcome.status).inc()
                    self.metrics.item_duration.labels(outcome.status).observe(outcome.duration_s)
        finally:
            await self._kafka(self._close)
            self._executor.shutdown(wait=True)
            self._executor = None

    def _size_next_poll(self, items: int, seconds: float) -> None:
        if items < self._poll_records:
            return  # the topic ran dry, not the time: this batch says nothing about throughput
        rate = items / max(seconds, 1e-3)
        wanted = int(rate * self.config.target_batch_s)
        # Grow at most fourfold per batch (a burst of fast items is not yet a trend); shrink at once.
        wanted = min(wanted, 4 * self._poll_records)
        self._poll_records = max(self.config.concurrency, min(self.config.max_poll_records, wanted))

    async def _recover(self, *, replace_producer: bool) -> None:
        """After a failed transaction: a fresh consumer (and producer, when stuck), retrying until
        the broker answers or :meth:`stop` is called."""
        while True:
            try:
                await self._kafka(self._restart, replace_producer)
                return
            except KafkaError:
                if self._stopping.is_set():
                    raise
                log.warning("the broker is still unavailable; retrying", exc_info=True)
                await asyncio.sleep(self.config.failure_backoff_s)

    async def _kafka(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise RuntimeError("the Kafka thread exists only while run() runs")
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args))

    def _servers(self) -> list[str]:
        return [s.strip() for s in self.kafka.bootstrap_servers.split(",") if s.strip()]

    def _connect(self) -> None:
        try:
            self._producer = self._new_producer()
            self._consumer = self._new_consumer()
        except KafkaError as exc:
            self._close()
            raise Unavailable(
                f"Kafka is unavailable for the batch worker ({exc}); bootstrap servers: {', '.join(self._servers())}"
            ) from None

    def _new_consumer(self) -> Any:
        consumer = KafkaConsumer(
            bootstrap_servers=self._servers(),
            client_id=f"{self.kafka.client_id}-batch-{self.config.worker_index}",
            group_id=self.config.group_id,
            # Offsets move only inside our transactions.
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Requests may be published transactionally too; never act on an aborted one.
            # It also makes the offset fetch wait for a pending transactional commit (KIP-447).
            isolation_level="read_committed",
            session_timeout_ms=int(self.config.session_timeout_s * 1000),
            max_poll_interval_ms=int(self.config.max_poll_interval_s * 1000),
            max_poll_records=self.config.max_poll_records,
            metadata_max_age_ms=30_000,
        )
        try:
            subscribe_known(consumer, [self.config.topics.generation_requests])
        except BaseException:
            consumer.close(autocommit=False)
            raise
        return consumer

    def _new_producer(self) -> Any:
        producer = KafkaProducer(
            bootstrap_servers=self._servers(),
            client_id=f"{self.kafka.client_id}-batch-{self.config.worker_index}",
            transactional_id=self.transactional_id,
            enable_idempotence=True,
            acks="all",
            transaction_timeout_ms=int(self.config.transaction_timeout_s * 1000),
            linger_ms=5,
        )
        try:
            # Fences any earlier producer with our id and aborts its open transaction (a crashed
            # predecessor, or our own replaced producer), so its half-written batch never becomes
            # visible; a transaction already being committed is awaited instead.
            producer.init_transactions()
        except BaseException:
            producer.close(timeout=0)
            raise
        return producer

    def _restart(self, replace_producer: bool) -> None:
        """A new consumer in the group (and a new producer); on the Kafka thread. Raises while the
        broker is still away.

        The consumer is rebuilt rather than rewound: after a broker restart or a lost group
        membership, kafka-python's idea of the assignment and positions can be stale, and seeking
        on it once lost a batch in a test. A fresh member starts from the committed offsets, which
        are the transactional truth: exactly where the last committed batch ended.

        The producer is replaced when a transaction step timed out: kafka-python's producer does not
        always reconnect after a broker restart, and its commit and abort wait without a timeout.
        The new one's ``init_transactions`` settles the old transaction (an open one is aborted, one
        whose commit reached the broker completes) before the new consumer reads the offsets.
        """
        if replace_producer:
            if self._producer is not None:
                old, self._producer = self._producer, None
                _discard(old)
            self._producer = self._new_producer()
        if self._consumer is not None:
            old_consumer, self._consumer = self._consumer, None
            try:
                old_consumer.close(autocommit=False, timeout_ms=5_000)
            except KafkaError:
                log.warning("the replaced consumer did not close cleanly", exc_info=True)
        self._consumer = self._new_consumer()

    def _close(self) -> None:
        # Our partitions go to other workers, who report them.
        self.metrics.set_lag(self.config.topics.generation_requests, self.config.group_id, id(self), None)
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        if consumer is not None:
            # Leaving the group hands our partitions to the others at once, not after the session.
            consumer.close(autocommit=False)
        if producer is not None:
            producer.close(timeout=10)

    # ---- consuming

    def _poll(self) -> tuple[list[ConsumedEvent[GenerationRequested]], list[EventDecodeError]]:
        batches = self._consumer.poll(
            timeout_ms=int(self.config.poll_timeout_s * 1000), max_records=self._poll_records
        )
        self._measure_lag()
        events: list[ConsumedEvent[GenerationRequested]] = []
        undecodable: list[EventDecodeError] = []
        for records in batches.values():
            for record in records:
                try:
                    events.append(self._deserializer.consumed(record))
                except EventDecodeError as exc:
                    undecodable.append(exc)
        return events, undecodable

    def _measure_lag(self) -> None:
        """Updates the lag gauge, at most once per :data:`LAG_INTERVAL_S`; on the Kafka thread."""
        now = time.monotonic()
        if now < self._lag_due:
            return
        self._lag_due = now + LAG_INTERVAL_S
        consumer = self._consumer
        partitions = list(consumer.assignment())
        try:
            ends = consumer.end_offsets(partitions, timeout_ms=_LAG_TIMEOUT_MS) if partitions else {}
            positions = [consumer.position(tp, timeout_ms=_LAG_TIMEOUT_MS) for tp in partitions]
        except KafkaError as exc:
            # The broker is away or the group is rebalancing; the last value stands until the next try.
            log.debug("consumer lag not measured: %s", exc)
            return
        if any(position is None for position in positions):
            return  # a partition without a position yet (just assigned); measure next time
        lag = sum(max(0, ends[tp] - position) for tp, position in zip(partitions, positions, strict=True))
        self.metrics.set_lag(self.config.topics.generation_requests, self.config.group_id, id(self), lag)

    # ---- processing

    async def _handle_all(self, events: Sequence[ConsumedEvent[GenerationRequested]]) -> list[_Outcome]:
        slots = asyncio.Semaphore(self.config.concurrency)

        async def bounded(event: ConsumedEvent[GenerationRequested]) -> _Outcome:
            async with slots:
                return await self._handle(event)

        # Tasks are created (and queue on the semaphore, which is FIFO) in tenant round-robin order.
        return list(await asyncio.gather(*(bounded(e) for e in interleave_by_tenant(events))))

    async def _handle(self, event: ConsumedEvent[GenerationRequested]) -> _Outcome:
        request = event.message
        started = time.monotonic()
        with event.span("batch item", tracer=self._tracer) as span:
            span.set_attribute("aigc.tenant", request.tenant_id)
            result, dlq_error = await self._run_item(request)
            # Overwrite ids: a result must land under the key of the request it answers.
            result.job_id, result.item_id, result.tenant_id = (
                request.job_id,
                request.item_id,
                request.tenant_id,
            )
            span.set_attribute("aigc.batch.status", result.status)
            # Headers taken inside the item's span: the result's consumer continues this trace.
            extra = None
            if dlq_error is not None:
                extra = {
                    ERROR_TYPE_HEADER: dlq_error[0],
                    ERROR_HEADER: _bounded(dlq_error[1]),
                    SOURCE_HEADER: f"{event.topic}/{event.partition}/{event.offset}",
                }
            headers = record_headers(result, extra)
        return _Outcome(
            topic=event.topic,
            partition=event.partition,
            offset=event.offset,
            result=result,
            key=item_key(request.job_id, request.item_id),
            headers=headers,
            dlq_error=dlq_error,
            duration_s=time.monotonic() - started,
        )

    async def _run_item(
        self, request: GenerationRequested
    ) -> tuple[GenerationResult, tuple[str, str] | None]:
        """The item's result and, for a poison item, the (error class, message) for the DLQ."""
        deadline = request.deadline.ToNanoseconds() / 1e9 if request.HasField("deadline") else None
        attempt = 0
        while True:
            if deadline is not None and self._clock() >= deadline:
                return _ended("expired", attempt, "the item's deadline passed before it was done"), None
            if await self._cancelled(request.job_id):
                return _ended("cancelled", attempt, "the job was cancelled"), None
            attempt += 1
            attempt_request = GenerationRequested()
            attempt_request.CopyFrom(request)
            attempt_request.attempt = attempt  # the pipeline sees which attempt this is
            try:
                result = await self._call_process(attempt_request, deadline)
                if not result.status:
                    result.status = "succeeded"
                if result.status not in STATUSES:
                    raise ValueError(f"process returned unknown status {result.status!r}")
                result.attempts = attempt
                return result, None
            except TimeoutError as exc:
                if deadline is not None and self._clock() >= deadline:
                    return _ended(
                        "expired", attempt, "the item's deadline passed while it was processed"
                    ), None
                return _poison(exc, attempt)  # the pipeline's own timeout: not a contract error, a bug
            except RETRYABLE_ERRORS as exc:
                if attempt >= self.config.max_attempts:
                    return _poison(exc, attempt, f"gave up after {attempt} attempts: ")
                delay = backoff_delay(
                    attempt, self.config.backoff_initial_s, self.config.backoff_max_s, self._rng
                )
                if isinstance(exc, ResourceExhausted) and exc.retry_after > 0:
                    delay = max(delay, min(exc.retry_after, self.config.backoff_max_s))
                if deadline is not None and self._clock() + delay >= deadline:
                    # Waiting would only end in expiry; say so now and free the slot.
                    return _ended("expired", attempt, f"the deadline passes before a retry ({exc})"), None
                await asyncio.sleep(delay)
            except Exception as exc:  # not retryable: a bug or a bad item; CancelledError passes through
                return _poison(exc, attempt)

    async def _cancelled(self, job_id: str) -> bool:
        now = time.monotonic()
        known = self._cancel_answers.get(job_id)
        if known is None or now - known[0] >= self.config.cancel_check_interval_s:
            if len(self._cancel_answers) >= 4096:  # jobs long finished: forget their answers
                self._cancel_answers.clear()
            known = (now, asyncio.ensure_future(self._ask_cancelled(job_id)))
            self._cancel_answers[job_id] = known
        # Shielded: one item being cancelled must not cancel the answer its siblings await.
        return await asyncio.shield(known[1])

    async def _ask_cancelled(self, job_id: str) -> bool:
        try:
            return bool(await _maybe_await(self._is_cancelled(job_id)))
        except Exception:
            # The check is an optimisation (skip work nobody wants); an outage of the job store must
            # not fail or stall items, so the item runs and its result is simply not wanted.
            log.warning("cancellation check failed; processing the item", exc_info=True)
            return False

    async def _call_process(self, request: GenerationRequested, deadline: float | None) -> GenerationResult:
        async def call() -> GenerationResult:
            if self._process_is_async:
                return await cast(Awaitable[GenerationResult], self._process(request))
            # A sync pipeline must not block the loop that runs the other items and the commits.
            return await _maybe_await(await asyncio.to_thread(self._process, request))

        timeout = None if deadline is None else max(0.0, deadline - self._clock())
        # A sync call in a thread cannot be interrupted; the deadline only stops waiting for it.
        return await asyncio.wait_for(call(), timeout)

    def _undecodable_outcome(self, error: EventDecodeError) -> _Outcome:
        key = (error.key or b"").decode("utf-8", errors="replace")
        job_id, sep, item_id = key.partition("/")
        # With a job/item key the job can still complete with a failed item; without one there is
        # nothing to attribute, and only the dead-letter copy is written.
        result = GenerationResult(
            job_id=job_id, item_id=item_id, status="failed", error="the request could not be decoded"
        )
        extra = {
            ERROR_TYPE_HEADER: type(error).__name__,
            ERROR_HEADER: _bounded(error.reason),
            SOURCE_HEADER: f"{error.topic}/{error.partition}/{error.offset}",
        }
        return _Outcome(
            topic=error.topic,
            partition=error.partition,
            offset=error.offset,
            result=result,
            key=key,
            headers=record_headers(result, extra),
            dlq_error=(type(error).__name__, error.reason),
            to_results=bool(sep and job_id and item_id),
        )

    # ---- publishing

    def _bounded(self, step: Callable[[], None], what: str) -> None:
        """Runs a transaction step, waiting at most ``commit_timeout_s`` for it.

        kafka-python's ``send_offsets_to_transaction``, ``commit_transaction`` and
        ``abort_transaction`` wait without a timeout, forever if the broker does not come back to
        this producer. The step runs on a helper thread; on a timeout it is left behind (blocked in
        the discarded producer, one idle daemon thread) and the caller replaces the producer.
        """
        done = threading.Event()
        failure: list[BaseException] = []

        def target() -> None:
            try:
                step()
            except BaseException as exc:
                failure.append(exc)
            finally:
                done.set()

        threading.Thread(target=target, name=f"aigc-batch-{what}", daemon=True).start()
        if not done.wait(self.config.commit_timeout_s):
            raise KafkaTimeoutError(f"{what} got no answer within {self.config.commit_timeout_s}s")
        if failure:
            raise failure[0]

    def _commit(self, outcomes: Sequence[_Outcome]) -> None:
        """Results, dead letters and consumed offsets of one batch, in one transaction."""
        producer = self._producer
        topics = self.config.topics
        offsets = _offsets_after(outcomes)
        producer.begin_transaction()
        try:
            futures = []
            for outcome in outcomes:
                value = serialize(outcome.result)
                key = outcome.key.encode()
                if outcome.to_results:
                    futures.append(
                        producer.send(
                            topics.generation_results, value=value, key=key, headers=outcome.headers
                        )
                    )
                if outcome.dlq_error is not None:
                    futures.append(
                        producer.send(topics.generation_dlq, value=value, key=key, headers=outcome.headers)
                    )
            producer.flush(timeout=self.config.commit_timeout_s)
            for future in futures:
                future.get(timeout=0)  # a refused record fails here with its own error, not a vague abort
            # The consumer's generation goes with the offsets: if the group rebalanced since this
            # batch was polled, the broker refuses the commit and a zombie publishes nothing.
            group = self._consumer.group_metadata()  # the consumer stays on this thread
            self._bounded(partial(producer.send_offsets_to_transaction, offsets, group), "send_offsets")
            self._bounded(producer.commit_transaction, "commit")
        except Exception as exc:
            if isinstance(exc, KafkaTimeoutError):
                raise _ProducerStuck(f"transaction step timed out ({exc})") from exc
            try:
                self._bounded(producer.abort_transaction, "abort")
            except KafkaTimeoutError as abort_exc:
                raise _ProducerStuck(f"transaction failed ({exc}) and its abort timed out") from abort_exc
            except Exception as abort_exc:
                raise FatalTransactionError(
                    f"transaction of {self.transactional_id!r} failed ({exc}) and cannot be aborted ({abort_exc}); "
                    "the worker stops, a restart with the same id aborts the open transaction"
                ) from exc
            raise


def _discard(producer: Any) -> None:
    """Closes a producer without sending what it holds (its open transaction is aborted by the
    broker once the next producer with its transactional id initialises)."""
    # close() flushes first and raises if that times out, even with timeout=0; a force-closed sender
    # fails the held records instead, after which close() has nothing left to wait for.
    producer._sender.force_close()
    producer._sender.join(5.0)
    try:
        producer.close(timeout=0)
    except KafkaError:
        log.warning("the replaced producer did not close cleanly", exc_info=True)


class _ProducerStuck(Exception):
    """A transaction step did not finish within ``commit_timeout_s``: the producer is replaced."""


def _offsets_after(outcomes: Iterable[_Outcome]) -> dict[TopicPartition, OffsetAndMetadata]:
    latest: dict[TopicPartition, int] = {}
    for outcome in outcomes:
        tp = TopicPartition(outcome.topic, outcome.partition)
        latest[tp] = max(latest.get(tp, -1), outcome.offset)
    # The committed offset is the next one to read, hence +1 (as next_offsets does for events).
    return {tp: OffsetAndMetadata(offset + 1, "", -1) for tp, offset in latest.items()}


def _ended(status: str, attempts: int, error: str) -> GenerationResult:
    return GenerationResult(status=status, error=error, attempts=attempts)


def _poison(exc: Exception, attempts: int, prefix: str = "") -> tuple[GenerationResult, tuple[str, str]]:
    # AigcError messages are written to be shown to a caller; anything else is a bug whose text may
    # hold request content, so the caller gets its class only (the DLQ header keeps the message).
    message = str(exc) if isinstance(exc, AigcError) else f"internal error ({type(exc).__name__})"
    result = GenerationResult(status="failed", error=prefix + message, attempts=attempts)
    return result, (type(exc).__name__, prefix + str(exc))


__all__ = [
    "ERROR_HEADER",
    "ERROR_TYPE_HEADER",
    "RETRYABLE_ERRORS",
    "SOURCE_HEADER",
    "STATUSES",
    "BatchMetrics",
    "BatchWorker",
    "CancelCheck",
    "FatalTransactionError",
    "ProcessFn",
    "WorkerConfig",
    "backoff_delay",
    "interleave_by_tenant",
    "item_key",
]
