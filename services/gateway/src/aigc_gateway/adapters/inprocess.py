"""Ports served by cores in the same process: one hop fewer on a single machine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from aigc_cache.core import CacheCore, CachedAnswer, Partition
from aigc_common.types import ChatMessage, GenerationEvent, GenerationRequest, SamplingParams
from aigc_inference.core import InferenceCore
from aigc_prompt.core import PromptCore, RenderedPrompt
from aigc_safety.core import SafetyCore
from aigc_safety.types import Verdict


class InProcessPrompt:
    def __init__(self, core: PromptCore) -> None:
        self._core = core

    async def render(
        self, tenant_id: str, template_id: str, variables: Mapping[str, str], label: str, version: int
    ) -> RenderedPrompt:
        return self._core.render(tenant_id, template_id, variables, label, version)


class InProcessSafety:
    def __init__(self, core: SafetyCore) -> None:
        self._core = core

    async def check_input(self, tenant_id: str, policy: str, text: str) -> Verdict:
        return self._core.check_input(tenant_id, policy, text)


class InProcessCache:
    def __init__(self, core: CacheCore) -> None:
        self._core = core

    async def lookup(
        self, partition: Partition, messages: tuple[ChatMessage, ...], sampling: SamplingParams
    ) -> CachedAnswer | None:
        return await self._core.lookup(partition, messages, sampling)

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
