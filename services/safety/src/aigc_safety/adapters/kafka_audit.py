"""Audit records to Kafka (``aigc.safety.audit.v1``, payload ``SafetyAudited``)."""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from aigc.events.v1 import events_pb2
from aigc_common.kafka import EventProducer
from aigc_safety.audit import AuditRecord

log = logging.getLogger(__name__)


def record_to_event(record: AuditRecord) -> events_pb2.SafetyAudited:
    decided = Timestamp()
    decided.FromNanoseconds(round(record.decided_at * 1e9))
    return events_pb2.SafetyAudited(
        request_id=record.request_id,
        tenant_id=record.tenant_id,
        stage=record.stage,
        action=record.action,
        policy_version=record.policy_version,
        rule_ids=list(record.rule_ids),
        categories=list(record.categories),
        bundle_id=record.bundle_id,
        decided_at=decided,
    )


class KafkaAuditSink:
    """Publishes records on the audit topic, keyed by tenant so one tenant's records stay in order.

    ``send`` only queues (the producer batches and retries in its own thread); a record the broker
    finally refuses is logged with its ids, so a lost audit record is at least visible.
    """

    def __init__(self, producer: EventProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    def record(self, record: AuditRecord) -> None:
        future = self._producer.send(self._topic, record.tenant_id or "-", record_to_event(record))

        def failed(exc: Any) -> None:
            log.error(
                "safety audit record not delivered",
                extra={"fields": {"request_id": record.request_id, "error": str(exc)}},
            )

        future.add_errback(failed)

    def close(self) -> None:
        self._producer.close()
