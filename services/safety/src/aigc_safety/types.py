"""Domain types of the safety service; the gateway imports these (no protobuf here)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

CONTENT_CATEGORIES = (
    "insult",
    "unfairness_discrimination",
    "crimes_illegal",
    "physical_harm",
    "mental_health",
    "privacy_property",
    "ethics_morality",
    "political_sensitivity",
)
"""Harmful-content categories (the Safety-Prompts taxonomy), as rule packs and the classifier name them."""
ATTACK_CATEGORIES = (
    "goal_hijacking",
    "prompt_leaking",
    "role_play_instruction",
    "unsafe_instruction_topic",
    "inquiry_unsafe_opinion",
    "reverse_exposure",
    "jailbreak",
    "prompt_injection",
)
"""Instruction attacks, plus jailbreak and prompt injection."""
CATEGORIES = CONTENT_CATEGORIES + ATTACK_CATEGORIES


class Action(enum.StrEnum):
    """What a verdict asks the pipeline to do, weakest first."""

    ALLOW = "allow"
    REDACT = "redact"
    BLOCK = "block"
    REVIEW = "review"


class Stage(enum.StrEnum):
    """Which side of the model a check is on."""

    INPUT = "input"
    OUTPUT = "output"


@dataclass(frozen=True, slots=True)
class RuleHit:
    """One rule that fired. ``spans`` are [start, end) code-point ranges in the original text."""

    rule_id: str
    category: str
    severity: int
    spans: tuple[tuple[int, int], ...]
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a check. ``message`` is safe to show the caller: it never echoes matched text."""

    action: Action
    policy_version: str
    hits: tuple[RuleHit, ...] = ()
    redacted_text: str = ""
    message: str = ""
    # Placeholders the policy lets the caller restore in the answer (spans into the checked text).
    entities: tuple[PiiEntity, ...] = ()


@dataclass(frozen=True, slots=True)
class PiiEntity:
    """One piece of personal data: its detector type, its span in the original text, and the
    placeholder (``[CN_MOBILE_1]``) or mask (``138****8000``) that replaced it."""

    type: str
    span: tuple[int, int]
    placeholder: str


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """A rule of the active policy, as listed to operators."""

    rule_id: str
    category: str
    action: Action
    language: str
    description: str


@dataclass(frozen=True, slots=True)
class OutputOpen:
    """Opens the moderation of one streaming answer."""

    tenant_id: str
    policy: str = ""
    request_id: str = ""
    reasoning: bool = False
    bundle_id: str = ""


@dataclass(frozen=True, slots=True)
class OutputDelta:
    """The next piece of the model's answer."""

    text: str


@dataclass(frozen=True, slots=True)
class OutputEnd:
    """The answer is complete: flush what is held back."""


OutputEvent = OutputOpen | OutputDelta | OutputEnd
