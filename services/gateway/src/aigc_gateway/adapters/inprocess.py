"""Ports served by cores in the same process: one hop fewer on a single machine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from aigc_cache.core import CacheCore, CachedAnswer, Partition
from aigc_common.types import ChatMessage, GenerationEvent, GenerationRequest, SamplingParams
from aigc_inference.core import InferenceCore
from aigc_prompt.core import PromptCore, RenderedPrompt
from aigc_safety.core import OutputModerator, SafetyCore
from aigc_safety.types import Verdict


class InProcessPrompt:
    def __init__(self, core: PromptCore) -> None:
        self._core = core

    async def render(
        self, tenant_id: str, template_id: str, variables: Mapping[str, str], label: str, version: int
    ) -> RenderedPrompt:
        return self._core.render(tenant_id, template_id, variables, label, version)


class InProcessOutputCheck:
    def __init__(self, moderator: OutputModerator) -> None:
        self._moderator = moderator

    @property
    def violation(self) -> Verdict | None:
        return self._moderator.violation

    async def feed(self, text: str) -> str:
        return self._moderator.feed(text)

    async def finish(self) -> str:
        return self._moderator.finish()

    async def close(self) -> None:
        return None


class InProcessSafety:
    def __init__(self, core: SafetyCore) -> None:
        self._core = core

    async def check_input(
        self, tenant_id: str, policy: str, text: str, *, request_id: str = "", bundle_id: str = ""
    ) -> Verdict:
        return self._core.check_input(tenant_id, policy, text, request_id=request_id, bundle_id=bundle_id)

    async def open_output(
        self,
        tenant_id: str,
        policy: str,
        *,
        request_id: str = "",
        bundle_id: str = "",
        reasoning: bool = False,
    ) -> InProcessOutputCheck:
        return InProcessOutputCheck(
            self._core.open_output(tenant_id, policy, request_id, reasoning=reasoning, bundle_id=bundle_id)
        )


class InProcessCache:
    def __init__(self, core: CacheCore) -> None:
        self._core = core

    async def lookup(
        self,
        partition: Partition,
        messages: tuple[ChatMessage, ...],
        sampling: SamplingParams,
        *,
        semantic_threshold: float = 0.0,
    ) -> CachedAnswer | None:
        return await self._core.lookup(partition, messages, sampling, semantic_threshold=semantic_threshold)

    async def store(
        self,
        partition: Partition,
        messages: tuple[ChatMessage, ...],
        sampling: SamplingParams,
        answer: CachedAnswer,
    ) -> bool:
        return await self._core.store(partition, messages, sampling, answer)


class InProcessInference:
    def __init__(self, core: InferenceCore) -> None:
        self._core = core

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        return self._core.generate(request)
