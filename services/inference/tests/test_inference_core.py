"""Unit tests of the inference core's streaming logic with a scripted engine (timing-exact)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from prometheus_client import CollectorRegistry

from aigc_common.types import (
    ChatMessage,
    FinishReason,
    GenerationDelta,
    GenerationFinished,
    GenerationRequest,
    Role,
    SamplingParams,
)
from aigc_inference.core import InferenceCore
from aigc_inference.engine import Engine, EngineDelta, EngineRequest, ModelInfo
from aigc_inference.metrics import InferenceMetrics


class ScriptedEngine(Engine):
    """Emits bursts of one-token deltas with pauses between bursts."""

    def __init__(self, bursts: Sequence[int], pause: float) -> None:
        self._bursts = bursts
        self._pause = pause
        self.closed = False

    @property
    def info(self) -> ModelInfo:
        return ModelInfo("scripted", "test", 4096)

    async def start(self) -> None:
        return None

    async def generate(self, request: EngineRequest) -> AsyncIterator[EngineDelta]:
        token = 0
        try:
            for i, size in enumerate(self._bursts):
                if i:
                    await asyncio.sleep(self._pause)
                for _ in range(size):
                    token += 1
                    yield EngineDelta(f"t{token} ", (token,))
            yield EngineDelta("", (), FinishReason.STOP)
        finally:
            self.closed = True

    def abort(self, request_id: str) -> None:
        return None

    def health(self) -> bool:
        return True

    async def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return 3

    async def count_text_tokens(self, text: str) -> int:
        return 1


def _request(stop: tuple[str, ...] = ()) -> GenerationRequest:
    return GenerationRequest(messages=(ChatMessage(Role.USER, "hi"),), sampling=SamplingParams(stop=stop))


async def _collect(
    core: InferenceCore, request: GenerationRequest
) -> tuple[list[GenerationDelta], GenerationFinished]:
    deltas = []
    finished = None
    async for event in core.generate(request):
        if isinstance(event, GenerationDelta):
            deltas.append(event)
        elif isinstance(event, GenerationFinished):
            finished = event
    assert finished is not None
    return deltas, finished


async def test_coalescing_merges_bursts_but_never_delays_the_first_token() -> None:
    engine = ScriptedEngine(bursts=[10, 10], pause=0.3)
    core = InferenceCore(
        engine,
        InferenceMetrics(CollectorRegistry()),
        max_queue=1,
        default_max_tokens=64,
        coalesce_seconds=0.05,
    )
    deltas, finished = await _collect(core, _request())
    tokens = [t for d in deltas for t in d.token_ids]
    assert tokens == list(range(1, 21)), "every token arrives, in order"
    assert "".join(d.text for d in deltas) == "".join(f"t{i} " for i in range(1, 21))
    assert deltas[0].token_ids == (1,), "the first token goes out at once"
    assert len(deltas) <= 4, f"bursts should travel together, got {[len(d.token_ids) for d in deltas]}"
    assert finished.usage.completion_tokens == 20 and finished.usage.prompt_tokens == 3


async def test_without_coalescing_every_delta_is_a_message() -> None:
    core = InferenceCore(
        ScriptedEngine(bursts=[10, 10], pause=0.01),
        InferenceMetrics(CollectorRegistry()),
        max_queue=1,
        default_max_tokens=64,
    )
    deltas, _ = await _collect(core, _request())
    assert len(deltas) == 20


async def test_stop_sequence_across_deltas_closes_the_engine_stream() -> None:
    engine = ScriptedEngine(bursts=[10], pause=0.0)
    core = InferenceCore(engine, InferenceMetrics(CollectorRegistry()), max_queue=1, default_max_tokens=64)
    deltas, finished = await _collect(core, _request(stop=("t4 t5",)))
    assert "".join(d.text for d in deltas) == "t1 t2 t3 "
    assert finished.finish_reason == FinishReason.STOP
    assert engine.closed, "stopping early must close the engine's stream"
