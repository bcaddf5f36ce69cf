"""Audit records of non-allow verdicts and where they go.

Every block, review and redaction becomes one :class:`AuditRecord`: ids, policy version, rule ids
and categories, never the text. The core hands records to an :class:`AuditSink`; the Kafka sink
publishes them on ``aigc.safety.audit.v1`` for compliance reporting, the log sink is the
single-machine default (the Kafka sink lives in ``adapters``: the core imports no Kafka).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One non-allow verdict, as compliance needs to see it."""

    request_id: str
    tenant_id: str
    stage: str
    action: str
    policy_version: str
    rule_ids: tuple[str, ...]
    categories: tuple[str, ...]
    bundle_id: str
    decided_at: float


class AuditSink(Protocol):
    """Receives audit records; must not block the check that produced them."""

    def record(self, record: AuditRecord) -> None: ...


class LogAuditSink:
    """Writes each record as one structured log line (ids only)."""

    def record(self, record: AuditRecord) -> None:
        log.info(
            "safety audit",
            extra={
                "fields": {
                    "request_id": record.request_id,
                    "tenant_id": record.tenant_id,
                    "stage": record.stage,
                    "action": record.action,
                    "policy_version": record.policy_version,
                    "rule_ids": list(record.rule_ids),
                }
            },
        )
