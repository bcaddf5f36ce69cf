"""Usage records: one per request, for chargeback (``aigc.usage.v1`` on Kafka).

The gateway hands each finished request's tokens and cost to a :class:`UsageSink`; the Kafka sink
(in ``adapters``) publishes ``UsageRecorded`` events, the log sink is the single-machine default.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from aigc_common.types import Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """What one request used and cost."""

    request_id: str
    tenant_id: str
    model: str
    bundle_id: str
    usage: Usage
    currency: str
    cost_nanos: int
    cache_hit: bool
    finished_at: float


class UsageSink(Protocol):
    """Receives usage records; must not block the request that produced them."""

    def record(self, record: UsageRecord) -> None: ...


class LogUsageSink:
    """One structured log line per request (ids and numbers only)."""

    def record(self, record: UsageRecord) -> None:
        log.info(
            "usage",
            extra={
                "fields": {
                    "request_id": record.request_id,
                    "tenant": record.tenant_id,
                    "model": record.model,
                    "bundle_id": record.bundle_id,
                    "prompt_tokens": record.usage.prompt_tokens,
                    "completion_tokens": record.usage.completion_tokens,
                    "cached_tokens": record.usage.cached_tokens,
                    "cost_nanos": record.cost_nanos,
                    "currency": record.currency,
                    "cache_hit": record.cache_hit,
                }
            },
        )
