"""Domain types shared by the cores and the ports between services (no protobuf here)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Role(enum.StrEnum):
    """Author of a chat message."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One chat message before the model's chat template is applied."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Sampling parameters; ``None`` means the default of the layer below."""

    max_tokens: int = 0
    temperature: float | None = None
    top_p: float | None = None
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def merged_over(self, base: SamplingParams) -> SamplingParams:
        """Returns these parameters with unset fields taken from ``base``."""
        return SamplingParams(
            max_tokens=self.max_tokens or base.max_tokens,
            temperature=self.temperature if self.temperature is not None else base.temperature,
            top_p=self.top_p if self.top_p is not None else base.top_p,
            top_k=self.top_k or base.top_k,
            seed=self.seed if self.seed is not None else base.seed,
            stop=self.stop or base.stop,
        )


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts from the serving model's tokenizer."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class FinishReason(enum.StrEnum):
    """Why a generation ended."""

    STOP = "stop"
    LENGTH = "length"
    CONTENT_FILTER = "content_filter"
    CANCELLED = "cancelled"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class GenerationStarted:
    """First event of a generation stream."""

    request_id: str
    model: str
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class GenerationDelta:
    """A piece of generated text with its token ids."""

    text: str
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class GenerationFinished:
    """Last event of a generation stream."""

    finish_reason: FinishReason
    usage: Usage
    error_message: str = ""


GenerationEvent = GenerationStarted | GenerationDelta | GenerationFinished


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What the inference core is asked to generate."""

    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    model: str = ""
    request_id: str = ""
    json_schema: str = ""
    tenant_id: str = ""
    logprobs: bool = False
    # Seconds the caller still waits; None means no deadline. Remote engines get it as the call's deadline.
    timeout_seconds: float | None = None
