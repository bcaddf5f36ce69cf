"""The engine interface every model backend implements (llama.cpp, vLLM, OpenAI-compatible).

An engine receives chat messages and applies its own chat template: llama.cpp and vLLM
tokenize locally, an OpenAI-compatible server does it upstream. The core counts prompt tokens
through the engine first (context window checks, usage) and passes the count along.
"""

from __future__ import annotations

import abc
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aigc_common.errors import InvalidArgument
from aigc_common.types import ChatMessage, FinishReason, SamplingParams


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a served model is and can do."""

    name: str
    engine: str
    context_window: int
    supports_json_schema: bool = False
    chat_template: str = ""
    tokenizer: str = ""


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """One generation as the engine sees it."""

    request_id: str
    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams
    max_tokens: int
    prompt_tokens: int = 0
    json_schema: str = ""
    logprobs: int = 0


@dataclass(frozen=True, slots=True)
class EngineDelta:
    """New text, its token ids and optional log-probabilities; ``finish_reason`` is set on the last
    delta only. Engines that learn exact counts from upstream (OpenAI-compatible) put them in
    ``completion_tokens`` and ``prompt_tokens`` of the last delta; 0 means unknown."""

    text: str
    token_ids: tuple[int, ...] = ()
    finish_reason: FinishReason | None = None
    logprobs: tuple[float, ...] = ()
    completion_tokens: int = 0
    prompt_tokens: int = 0


class Engine(abc.ABC):
    """A model backend. ``generate`` streams deltas; ``abort`` stops a request early."""

    @property
    @abc.abstractmethod
    def info(self) -> ModelInfo: ...

    @abc.abstractmethod
    async def start(self) -> None:
        """Loads the model or connects; afterwards ``health`` is true."""

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
    async def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Tokens of the prompt these messages become under the model's chat template."""

    @abc.abstractmethod
    async def count_text_tokens(self, text: str) -> int:
        """Tokens of raw text, without any template."""

    @property
    def concurrency(self) -> int:
        """Requests the engine decodes at the same time."""
        return 1

    async def stop(self) -> None:
        """Releases the model or the connection."""


def parse_json_schema(text: str) -> dict[str, Any]:
    """A request's ``json_schema`` as a dict; every engine refuses a bad one the same way."""
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"not a usable JSON schema: {exc}", field="json_schema") from None
    if not isinstance(schema, dict):
        raise InvalidArgument("not a usable JSON schema: must be a JSON object", field="json_schema")
    return schema
