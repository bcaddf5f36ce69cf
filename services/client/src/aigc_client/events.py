"""What a generation yields: typed events, and the collected :class:`Result` of ``complete``."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal


class FinishReason(enum.StrEnum):
    """Why a generation ended."""

    UNSPECIFIED = "unspecified"
    STOP = "stop"
    LENGTH = "length"
    CONTENT_FILTER = "content_filter"
    CANCELLED = "cancelled"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens counted with the serving model's tokenizer."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    """Completion tokens replayed from the cache instead of generated; 0 for a model answer."""
    total_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Cost:
    """An amount of money. ``currency`` is empty when no price is configured (amount is 0)."""

    currency: str = ""
    amount: Decimal = field(default_factory=Decimal)
    """Exact amount in the currency unit (the API sends integer nanos)."""


@dataclass(frozen=True, slots=True)
class Started:
    """First event of a stream."""

    request_id: str
    """Id to quote in feedback and support requests."""
    bundle_id: str
    """Generation bundle (template, strategy, policy, model versions) that produced the answer."""
    model: str
    cache_hit: bool
    """True when the answer is replayed from the cache."""
    template_version: int


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of text that passed the output safety check."""

    text: str
    reasoning: bool = False
    """True for chain-of-thought text the template chose to show; it comes before the answer."""


@dataclass(frozen=True, slots=True)
class SafetyEvent:
    """A safety decision that changed the stream. ``message`` is safe to show an end user."""

    stage: str
    """"input" or "output"."""
    action: str
    """"block", "redact" or "review"."""
    policy_version: str
    rule_ids: tuple[str, ...]
    message: str


@dataclass(frozen=True, slots=True)
class Finished:
    """Last event of a stream."""

    finish_reason: FinishReason
    usage: Usage
    cost: Cost
    ttft_seconds: float
    """Time from request to first delta, measured by the gateway."""
    duration_seconds: float


Event = Started | Delta | SafetyEvent | Finished
"""One event of a ``generate`` stream."""


@dataclass(frozen=True, slots=True)
class Result:
    """A whole generation, as ``complete`` collects it."""

    text: str
    """The answer (deltas with ``reasoning=False``), joined."""
    reasoning: str
    """Shown chain-of-thought text, joined; empty unless the template shows it."""
    events: tuple[Event, ...]
    """Every event in the order received."""

    @property
    def started(self) -> Started | None:
        return next((e for e in self.events if isinstance(e, Started)), None)

    @property
    def finished(self) -> Finished | None:
        return next((e for e in reversed(self.events) if isinstance(e, Finished)), None)

    @property
    def safety_events(self) -> tuple[SafetyEvent, ...]:
        return tuple(e for e in self.events if isinstance(e, SafetyEvent))

    @property
    def request_id(self) -> str:
        started = self.started
        return started.request_id if started else ""

    @property
    def finish_reason(self) -> FinishReason:
        finished = self.finished
        return finished.finish_reason if finished else FinishReason.UNSPECIFIED

    @property
    def usage(self) -> Usage:
        finished = self.finished
        return finished.usage if finished else Usage()

    @property
    def cost(self) -> Cost:
        finished = self.finished
        return finished.cost if finished else Cost()

    @property
    def blocked(self) -> bool:
        """True when the safety check stopped the answer (``finish_reason`` is content_filter)."""
        return self.finish_reason is FinishReason.CONTENT_FILTER

    @classmethod
    def collect(cls, events: list[Event]) -> Result:
        """The result of a finished stream of events."""
        answer = [e.text for e in events if isinstance(e, Delta) and not e.reasoning]
        reasoning = [e.text for e in events if isinstance(e, Delta) and e.reasoning]
        return cls(text="".join(answer), reasoning="".join(reasoning), events=tuple(events))
