"""Usage records to Kafka (``aigc.usage.v1``, payload ``UsageRecorded``), keyed by tenant."""

from __future__ import annotations

from aigc.common.v1 import common_pb2
from aigc.events.v1 import events_pb2
from aigc_common.convert import timestamp_to_pb, usage_to_pb
from aigc_common.kafka import EventProducer
from aigc_gateway.usage import UsageRecord


def record_to_event(record: UsageRecord) -> events_pb2.UsageRecorded:
    return events_pb2.UsageRecorded(
        request_id=record.request_id,
        tenant_id=record.tenant_id,
        model=record.model,
        bundle_id=record.bundle_id,
        usage=usage_to_pb(record.usage),
        cost=common_pb2.Cost(currency=record.currency, amount_nanos=record.cost_nanos),
        cache_hit=record.cache_hit,
        finished_at=timestamp_to_pb(record.finished_at),
    )


class KafkaUsageSink:
    """Queues each record on the producer (batched, retried in its own thread); a record the broker
    finally refuses is logged with its request id, so a gap in chargeback data is visible."""

    def __init__(self, producer: EventProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    def record(self, record: UsageRecord) -> None:
        self._producer.send_or_log(
            self._topic,
            record.tenant_id,
            record_to_event(record),
            what="usage record",
            request_id=record.request_id,
        )

    def close(self) -> None:
        self._producer.close()
