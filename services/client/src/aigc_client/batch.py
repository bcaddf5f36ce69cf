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
