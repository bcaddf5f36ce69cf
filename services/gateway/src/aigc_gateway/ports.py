"""The gateway's ports: what it needs from the prompt, safety, cache and inference services.

Each has an in-process adapter (calls the service's core) and a gRPC adapter (calls the
remote service); settings choose per port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from aigc_cache.core import CachedAnswer, Partition
from aigc_common.types import ChatMessage, GenerationEvent, GenerationRequest, SamplingParams
from aigc_prompt.core import RenderedPrompt
from aigc_safety.types import Verdict


class PromptPort(Protocol):
    async def render(
        self, tenant_id: str, template_id: str, variables: Mapping[str, str], label: str, version: int
    ) -> RenderedPrompt: ...


class OutputCheck(Protocol):
    """Moderation of one streaming answer: only text it returns may reach the caller."""

    @property
    def violation(self) -> Verdict | None:
        """The blocking verdict once the answer violated the policy; nothing more is released."""
        ...

    async def feed(self, text: str) -> str:
        """Checks the next piece; returns the text now safe to show (maybe empty)."""
        ...

    async def finish(self) -> str:
        """The answer is complete: returns the held-back text once checked."""
        ...

    async def close(self) -> None: ...


class SafetyPort(Protocol):
    async def check_input(
        self, tenant_id: str, policy: str, text: str, *, request_id: str = "", bundle_id: str = ""
    ) -> Verdict: ...

    async def open_output(
        self,
        tenant_id: str,
        policy: str,
        *,
        request_id: str = "",
        bundle_id: str = "",
        reasoning: bool = False,
    ) -> OutputCheck: ...


class CachePort(Protocol):
    async def lookup(
        self,
        partition: Partition,
        messages: tuple[ChatMessage, ...],
        sampling: SamplingParams,
        *,
        semantic_threshold: float = 0.0,
    ) -> CachedAnswer | None: ...

    async def store(
        self,
        partition: Partition,
        messages: tuple[ChatMessage, ...],
        sampling: SamplingParams,
        answer: CachedAnswer,
    ) -> bool: ...


class InferencePort(Protocol):
    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """Streams Started, Deltas, Finished; closing the stream cancels the generation."""
        ...
