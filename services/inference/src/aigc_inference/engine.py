"""The engine interface every model backend implements (llama.cpp, vLLM, OpenAI-compatible)."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from aigc_common.types import ChatMessage, FinishReason, SamplingParams


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a served model is and can do."""

    name: str
    engine: str
    context_window: int
    supports_json_schema: bool = False


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """A generation as the engine sees it: the prompt already tokenized with its chat template."""

    request_id: str
    prompt_token_ids: Sequence[int]
    sampling: SamplingParams
    max_tokens: int
    json_schema: str = ""


@dataclass(frozen=True, slots=True)
class EngineDelta:
    """New text and token ids; ``finish_reason`` is set on the last delta only."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: FinishReason | None = None


class Engine(abc.ABC):
    """A model backend. ``generate`` streams deltas; ``abort`` stops a request early."""

    @property
    @abc.abstractmethod
    def info(self) -> ModelInfo: ...

    @abc.abstractmethod
    async def start(self) -> None:
        """Loads the model; afterwards ``health`` is true."""

    @abc.abstractmethod
    def generate(self, request: EngineRequest) -> AsyncIterator[EngineDelta]:
        """Streams the answer. Closing the iterator aborts the request."""

    @abc.abstractmethod
    def abort(self, request_id: str) -> None:
        """Stops a running request; its stream ends with finish reason CANCELLED."""

    @abc.abstractmethod
    def health(self) -> bool:
        """True when the engine can take requests."""

    @abc.abstractmethod
    def apply_chat_template(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt text the model sees for these messages."""

    @abc.abstractmethod
    def tokenize(self, text: str) -> list[int]:
        """Token ids of text that already carries the chat template's special tokens."""

    @property
    def concurrency(self) -> int:
        """Requests the engine decodes at the same time."""
        return 1

    async def stop(self) -> None:
        """Releases the model."""
