"""Audit records to Kafka (``aigc.safety.audit.v1``, payload ``SafetyAudited``)."""

from __future__ import annotations

from aigc.events.v1 import events_pb2
from aigc_common.convert import timestamp_to_pb
from aigc_common.kafka import EventProducer
from aigc_safety.audit import AuditRecord


def record_to_event(record: AuditRecord) -> events_pb2.SafetyAudited:
    return events_pb2.SafetyAudited(
        request_id=record.request_id,
        tenant_id=record.tenant_id,
        stage=record.stage,
        action=record.action,
        policy_version=record.policy_version,
        rule_ids=list(record.rule_ids),
        categories=list(record.categories),
        bundle_id=record.bundle_id,
        decided_at=timestamp_to_pb(record.decided_at),
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
        self._producer.send_or_log(
            self._topic,
            record.tenant_id or "-",
            record_to_event(record),
            what="safety audit record",
            request_id=record.request_id,
        )

    def close(self) -> None:
        self._producer.close()
