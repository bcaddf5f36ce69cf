"""Ports served by remote services over gRPC (traced channels; remote statuses keep their meaning)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc

from aigc.cache.v1 import cache_pb2, cache_pb2_grpc
from aigc.inference.v1 import inference_pb2, inference_pb2_grpc
from aigc.prompt.v1 import prompt_pb2, prompt_pb2_grpc
from aigc.safety.v1 import safety_pb2, safety_pb2_grpc
from aigc_cache.convert import lookup_response_from_pb, partition_to_pb
from aigc_cache.core import CachedAnswer, Partition
from aigc_common.convert import (
    finish_from_pb,
    messages_to_pb,
    sampling_to_pb,
    usage_from_pb,
    usage_to_pb,
)
from aigc_common.errors import Unavailable
from aigc_common.interceptors import error_from_rpc
from aigc_common.types import (
    ChatMessage,
    GenerationDelta,
    GenerationEvent,
    GenerationFinished,
    GenerationRequest,
    GenerationStarted,
    SamplingParams,
)
from aigc_prompt.convert import rendered_from_pb
from aigc_prompt.core import RenderedPrompt
from aigc_safety.convert import verdict_from_pb
from aigc_safety.types import Verdict

T = TypeVar("T")


async def _call(service: str, call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except grpc.aio.AioRpcError as exc:
        raise error_from_rpc(exc, service) from None


class GrpcPrompt:
    def __init__(self, channel: grpc.aio.Channel, timeout: float) -> None:
        self._stub = prompt_pb2_grpc.PromptServiceStub(channel)
        self._timeout = timeout

    async def render(
        self, tenant_id: str, template_id: str, variables: Mapping[str, str], label: str, version: int
    ) -> RenderedPrompt:
        request = prompt_pb2.RenderRequest(
            tenant_id=tenant_id,
            template=prompt_pb2.TemplateRef(template_id=template_id, label=label, version=version),
            variables=dict(variables),
        )
        r = await _call("prompt", lambda: self._stub.Render(request, timeout=self._timeout))
        return rendered_from_pb(template_id, r)


class GrpcOutputCheck:
    """One CheckOutput stream: the service answers every message with one response, so each feed
    is a send and a receive on the open stream (no new call per delta)."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._violation: Verdict | None = None

    @property
    def violation(self) -> Verdict | None:
        return self._violation

    async def _exchange(self, request: safety_pb2.CheckOutputRequest) -> str:
        if self._violation is not None:
            return ""
        try:
            await self._call.write(request)
            response = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, "safety") from None
        if response is grpc.aio.EOF:
            raise Unavailable("the safety service closed the output check early")
        if response.WhichOneof("event") == "violation":
            self._violation = verdict_from_pb(response.violation)
            return ""
        return str(response.released)

    async def feed(self, text: str) -> str:
        return await self._exchange(safety_pb2.CheckOutputRequest(delta=text))

    async def finish(self) -> str:
        released = await self._exchange(safety_pb2.CheckOutputRequest(end=True))
        await self.close()
        return released

    async def close(self) -> None:
        self._call.cancel()


class GrpcSafety:
    def __init__(self, channel: grpc.aio.Channel, timeout: float) -> None:
        self._stub = safety_pb2_grpc.SafetyServiceStub(channel)
        self._timeout = timeout

    async def check_input(
        self, tenant_id: str, policy: str, text: str, *, request_id: str = "", bundle_id: str = ""
    ) -> Verdict:
        request = safety_pb2.CheckInputRequest(
            tenant_id=tenant_id, policy=policy, text=text, request_id=request_id, bundle_id=bundle_id
        )
        r = await _call("safety", lambda: self._stub.CheckInput(request, timeout=self._timeout))
        return verdict_from_pb(r.verdict)

    async def open_output(
        self,
        tenant_id: str,
        policy: str,
        *,
        request_id: str = "",
        bundle_id: str = "",
        reasoning: bool = False,
    ) -> GrpcOutputCheck:
        check = GrpcOutputCheck(self._stub.CheckOutput())
        opened = safety_pb2.OutputCheckOpen(
            tenant_id=tenant_id,
            policy=policy,
            request_id=request_id,
            reasoning=reasoning,
            bundle_id=bundle_id,
        )
        await check._exchange(safety_pb2.CheckOutputRequest(open=opened))
        return check


class GrpcCache:
    def __init__(self, channel: grpc.aio.Channel, timeout: float) -> None:
        self._stub = cache_pb2_grpc.CacheServiceStub(channel)
        self._timeout = timeout

    async def lookup(
        self,
        partition: Partition,
        messages: tuple[ChatMessage, ...],
        sampling: SamplingParams,
        *,
        semantic_threshold: float = 0.0,
    ) -> CachedAnswer | None:
        request = cache_pb2.LookupRequest(
            partition=partition_to_pb(partition),
            messages=messages_to_pb(messages),
            sampling=sampling_to_pb(sampling),
            semantic_threshold=semantic_threshold,
        )
        r = await _call("cache", lambda: self._stub.Lookup(request, timeout=self._timeout))
        return lookup_response_from_pb(r)

    async def store(
        self,
        partition: Partition,
        messages: tuple[ChatMessage, ...],
        sampling: SamplingParams,
        answer: CachedAnswer,
    ) -> bool:
        request = cache_pb2.StoreRequest(
            partition=partition_to_pb(partition),
            messages=messages_to_pb(messages),
            sampling=sampling_to_pb(sampling),
            answer=answer.answer,
            usage=usage_to_pb(answer.usage),
        )
        r = await _call("cache", lambda: self._stub.Store(request, timeout=self._timeout))
        return bool(r.stored)


class GrpcInference:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = inference_pb2_grpc.InferenceServiceStub(channel)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        call: Any = self._stub.Generate(
            inference_pb2.GenerateRequest(
                request_id=request.request_id,
                model=request.model,
                messages=messages_to_pb(request.messages),
                sampling=sampling_to_pb(request.sampling),
                json_schema=request.json_schema,
                tenant_id=request.tenant_id,
                logprobs=request.logprobs,
            ),
            timeout=request.timeout_seconds,
        )
        try:
            async for r in call:
                kind = r.WhichOneof("event")
                if kind == "started":
                    s = r.started
                    yield GenerationStarted(s.request_id, s.model, s.prompt_tokens)
                elif kind == "delta":
                    yield GenerationDelta(r.delta.text, tuple(r.delta.token_ids), tuple(r.delta.logprobs))
                elif kind == "finished":
                    f = r.finished
                    yield GenerationFinished(
                        finish_from_pb(f.finish_reason), usage_from_pb(f.usage), f.error_message
                    )
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, "inference") from None
        finally:
            # Closing our stream early (caller cancelled) must cancel the remote generation too.
            call.cancel()
