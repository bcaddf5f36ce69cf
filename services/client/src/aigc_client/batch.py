"""Typed values of the batch API: items to submit, the accepted job, its state and item results."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from .events import Cost, Usage


class BatchState(enum.StrEnum):
    """State of a batch job."""

    UNSPECIFIED = "unspecified"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One item of a batch: results are keyed by ``item_id``, unique within the job."""

    item_id: str
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchSubmission:
    """A job the gateway accepted."""

    job_id: str
    item_count: int
    estimated_cost: Cost
    """Worst-case cost of the whole job, reserved against the tenant's budget."""
    client_token: str
    """Idempotency key the job was submitted with; resubmitting with it returns the same job."""
    rejected: tuple[ItemRejection, ...] = ()
    """Items refused at submission (not part of the job), with the field at fault."""


@dataclass(frozen=True, slots=True)
class ItemRejection:
    """An item the gateway refused at submission."""

    item_id: str
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class BatchJob:
    """A job's state and counts."""

    job_id: str
    state: BatchState
    total_items: int
    succeeded_items: int
    failed_items: int
    """Items that failed, including dead-lettered ones."""
    cost: Cost
    """Cost so far."""
    pending_items: int = 0
    blocked_items: int = 0
    expired_items: int = 0
    cancelled_items: int = 0
    eta_seconds: float = 0.0
    """Seconds until every item has a result at the rate so far; 0 when done or unknown."""
    estimated_cost: Cost | None = None


@dataclass(frozen=True, slots=True)
class BatchItemResult:
    """The result of one item."""

    item_id: str
    status: str
    """"succeeded", "failed", "blocked", "expired" or "cancelled"."""
    text: str
    error: str
    usage: Usage
    cost: Cost
    cursor: int = 0
    """Position in the job's results; pass it to ``stream_batch_results`` to resume after it."""
