"""VllmEngine: construction and configuration errors everywhere; streaming, cancellation, JSON schema,
seeds and log-probabilities with a real model where vLLM and a CUDA GPU exist.

GPU tests load ``AIGC_TEST_VLLM_MODEL`` (a small chat model: a local directory, or a Hugging Face
id already in the local cache, e.g. Qwen/Qwen2.5-0.5B-Instruct) once per module. Elsewhere they are
skipped with the reason. ``AIGC_TEST_VLLM_GPU_MEMORY`` (default 0.5) is the fraction of GPU memory
the test engine may take.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from aigc_common.errors import ConfigError, InvalidArgument, Unavailable
from aigc_common.types import (
    ChatMessage,
    FinishReason,
    GenerationDelta,
    GenerationFinished,
    GenerationRequest,
    Role,
    SamplingParams,
)
from aigc_inference.app import build_engine
from aigc_inference.core import InferenceCore
from aigc_inference.engine import EngineDelta, EngineRequest
from aigc_inference.engines.vllm_engine import DEFAULT_CONCURRENCY, VllmEngine
from aigc_inference.metrics import InferenceMetrics
from aigc_inference.settings import InferenceSettings, VllmSettings

# The first load of a model compiles kernels and captures CUDA graphs: minutes, not seconds.
pytestmark = pytest.mark.timeout(900)

GPU_REASON = "needs vLLM (gpu extra) and a CUDA GPU"
CONTEXT_WINDOW = 2048


def _messages(text: str) -> tuple[ChatMessage, ...]:
    return (ChatMessage(Role.USER, text),)


def _request(
    text: str,
    *,
    max_tokens: int = 32,
    temperature: float | None = 0.0,
    seed: int | None = None,
    json_schema: str = "",
    logprobs: int = 0,
) -> EngineRequest:
    return EngineRequest(
        request_id=uuid.uuid4().hex,
        messages=_messages(text),
        sampling=SamplingParams(temperature=temperature, seed=seed),
        max_tokens=max_tokens,
        json_schema=json_schema,
        logprobs=logprobs,
    )


async def _collect(engine: VllmEngine, request: EngineRequest) -> list[EngineDelta]:
    return [delta async for delta in engine.generate(request)]


# ---------------------------------------------------------------------------------------------
# Everywhere: construction and configuration
# ---------------------------------------------------------------------------------------------


def test_the_service_builds_a_vllm_engine_from_settings() -> None:
    settings = InferenceSettings(
        engine="vllm", model_name="qwen-small", vllm=VllmSettings(model="/models/qwen", max_model_len=4096)
    )
    engine = build_engine(settings)
    assert isinstance(engine, VllmEngine)
    info = engine.info
    assert (info.name, info.engine, info.tokenizer) == ("qwen-small", "vllm", "/models/qwen")
    assert info.context_window == 4096 and info.supports_json_schema
    assert not engine.health()
    assert engine.concurrency == DEFAULT_CONCURRENCY


async def test_requests_before_start_are_unavailable() -> None:
    engine = VllmEngine(VllmSettings(model="/models/qwen"), name="qwen-small")
    with pytest.raises(Unavailable):
        await engine.count_tokens(_messages("hello"))
    with pytest.raises(Unavailable):
        await engine.count_text_tokens("hello")
    with pytest.raises(Unavailable):
        await anext(engine.generate(_request("hello")))
    engine.abort("not-running")  # nothing to abort: a no-op, not an error
    await engine.stop()


async def test_an_empty_model_setting_fails_start_with_what_to_set() -> None:
    engine = VllmEngine(VllmSettings(model=""), name="m")
    with pytest.raises(ConfigError, match="AIGC_INFERENCE_VLLM__MODEL"):
        await engine.start()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
async def test_without_the_gpu_extra_start_says_how_to_install_it() -> None:
    engine = VllmEngine(VllmSettings(model="/models/qwen"), name="m")
    with pytest.raises(ConfigError, match="gpu extra"):
        await engine.start()
    assert not engine.health()


# ---------------------------------------------------------------------------------------------
# GPU: a real model
# ---------------------------------------------------------------------------------------------


def _gpu_model() -> str:
    """The model to load, or a skip that says what is missing."""
    pytest.importorskip("vllm", reason=f"{GPU_REASON}: vllm is not installed")
    torch = pytest.importorskip("torch", reason=f"{GPU_REASON}: torch is not installed")
    if not torch.cuda.is_available():
        pytest.skip(f"{GPU_REASON}: no CUDA GPU is visible")
    model = os.environ.get("AIGC_TEST_VLLM_MODEL", "")
    if not model:
        pytest.skip(
            f"{GPU_REASON}, and AIGC_TEST_VLLM_MODEL naming a small chat model "
            "(a local directory or a cached Hugging Face id)"
        )
    return model


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[VllmEngine]:
    settings = VllmSettings(
        model=_gpu_model(),
        max_model_len=CONTEXT_WINDOW,
        gpu_memory_utilization=float(os.environ.get("AIGC_TEST_VLLM_GPU_MEMORY", "0.5")),
    )
    engine = VllmEngine(settings, name="test-model")
    await engine.start()
    yield engine
    await engine.stop()
    assert not engine.health()


async def _wait_until_idle(engine: VllmEngine, timeout: float = 10.0) -> None:
    """Waits until vLLM holds no request (an aborted sequence frees its slot and KV cache)."""
    deadline = time.monotonic() + timeout
    while engine._llm.get_num_unfinished_requests() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    assert engine._llm.get_num_unfinished_requests() == 0, "vLLM still runs an abandoned request"


@pytest.mark.gpu
async def test_the_loaded_model_describes_itself(engine: VllmEngine) -> None:
    assert engine.health()
    info = engine.info
    assert info.engine == "vllm" and info.name == "test-model"
    assert info.context_window == CONTEXT_WINDOW
    assert info.chat_template, "a chat model's tokenizer carries its template"
    assert engine.concurrency >= 1


@pytest.mark.gpu
async def test_the_answer_streams_token_by_token(engine: VllmEngine) -> None:
    request = _request("Name three colours of the rainbow.", max_tokens=48)
    prompt_tokens = await engine.count_tokens(request.messages)
    deltas = await _collect(engine, request)
    tokens = [t for d in deltas for t in d.token_ids]
    assert len([d for d in deltas if d.token_ids]) > 1, "tokens arrive as a stream, not in one piece"
    assert "".join(d.text for d in deltas).strip()
    assert [d.finish_reason is not None for d in deltas] == [False] * (len(deltas) - 1) + [True]
    last = deltas[-1]
    assert last.finish_reason in (FinishReason.STOP, FinishReason.LENGTH)
    assert 0 < len(tokens) <= 48
    assert last.completion_tokens == len(tokens)
    assert last.prompt_tokens == prompt_tokens > 0
    await _wait_until_idle(engine)


@pytest.mark.gpu
async def test_max_tokens_ends_the_answer_with_length(engine: VllmEngine) -> None:
    deltas = await _collect(engine, _request("Count from 1 to 200, one number per line.", max_tokens=5))
    assert deltas[-1].finish_reason == FinishReason.LENGTH
    assert sum(len(d.token_ids) for d in deltas) == 5


@pytest.mark.gpu
async def test_closing_the_stream_aborts_the_request_in_vllm(engine: VllmEngine) -> None:
    stream = engine.generate(_request("Write a very long essay about rivers.", max_tokens=1500))
    received = 0
    async for delta in stream:
        received += len(delta.token_ids)
        if received >= 3:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    await _wait_until_idle(engine)
    assert engine.health()


@pytest.mark.gpu
async def test_abort_ends_the_stream_with_cancelled(engine: VllmEngine) -> None:
    request = _request("Write a very long essay about mountains.", max_tokens=1500)
    deltas: list[EngineDelta] = []
    async for delta in engine.generate(request):
        deltas.append(delta)
        if len(deltas) == 2:
            engine.abort(request.request_id)
    assert deltas[-1].finish_reason == FinishReason.CANCELLED
    assert sum(len(d.token_ids) for d in deltas) < 1500
    await _wait_until_idle(engine)


@pytest.mark.gpu
async def test_cancelling_the_consumer_task_aborts_the_request(engine: VllmEngine) -> None:
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in engine.generate(_request("Write a very long story about a fox.", max_tokens=1500)):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), timeout=60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _wait_until_idle(engine)


@pytest.mark.gpu
async def test_a_json_schema_constrains_the_answer(engine: VllmEngine) -> None:
    schema = {
        "type": "object",
        "properties": {"colour": {"type": "string"}, "count": {"type": "integer"}},
        "required": ["colour", "count"],
        "additionalProperties": False,
    }
    request = _request(
        "Describe an apple as JSON with its colour and a count.",
        max_tokens=80,
        json_schema=json.dumps(schema),
    )
    deltas = await _collect(engine, request)
    assert deltas[-1].finish_reason == FinishReason.STOP
    answer = json.loads("".join(d.text for d in deltas))
    assert isinstance(answer["colour"], str) and isinstance(answer["count"], int)


@pytest.mark.gpu
async def test_a_broken_json_schema_is_invalid_argument(engine: VllmEngine) -> None:
    with pytest.raises(InvalidArgument) as err:
        await _collect(engine, _request("hi", max_tokens=4, json_schema="{not json"))
    assert err.value.field == "json_schema"


@pytest.mark.gpu
async def test_the_same_seed_gives_the_same_answer(engine: VllmEngine) -> None:
    texts = []
    for _ in range(2):
        request = _request("Invent a name for a cat.", max_tokens=16, temperature=1.0, seed=7)
        texts.append("".join(d.text for d in await _collect(engine, request)))
    assert texts[0] and texts[0] == texts[1]


@pytest.mark.gpu
async def test_logprobs_come_one_per_token(engine: VllmEngine) -> None:
    deltas = await _collect(engine, _request("Say hello.", max_tokens=8, logprobs=1))
    tokens = [t for d in deltas for t in d.token_ids]
    logprobs = [p for d in deltas for p in d.logprobs]
    assert tokens and len(logprobs) == len(tokens)
    assert all(p <= 0.0 for p in logprobs)
    plain = await _collect(engine, _request("Say hello.", max_tokens=8))
    assert not any(d.logprobs for d in plain)


@pytest.mark.gpu
async def test_token_counts_follow_the_models_tokenizer(engine: VllmEngine) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    raw = await engine.count_text_tokens(text)
    templated = await engine.count_tokens(_messages(text))
    assert 5 <= raw < templated, "the chat template adds role markers around the text"


@pytest.mark.gpu
async def test_concurrent_requests_are_batched_together(engine: VllmEngine) -> None:
    requests = [_request(f"Write a sentence about the number {i}.", max_tokens=24) for i in range(8)]
    results = await asyncio.gather(*(_collect(engine, r) for r in requests))
    assert all(r[-1].finish_reason in (FinishReason.STOP, FinishReason.LENGTH) for r in results)
    await _wait_until_idle(engine)


@pytest.mark.gpu
async def test_through_the_core_usage_matches_the_streamed_tokens(engine: VllmEngine) -> None:
    core = InferenceCore(engine, InferenceMetrics(CollectorRegistry()), max_queue=4, default_max_tokens=32)
    request = GenerationRequest(
        messages=_messages("List the days of the week, separated by commas."),
        sampling=SamplingParams(max_tokens=40, temperature=0.0, stop=("Friday",)),
    )
    deltas: list[GenerationDelta] = []
    finished: GenerationFinished | None = None
    async for event in core.generate(request):
        if isinstance(event, GenerationDelta):
            deltas.append(event)
        elif isinstance(event, GenerationFinished):
            finished = event
    assert finished is not None
    assert finished.usage.prompt_tokens == await engine.count_tokens(request.messages)
    assert finished.usage.completion_tokens == sum(len(d.token_ids) for d in deltas) > 0
    assert "Friday" not in "".join(d.text for d in deltas)
    await _wait_until_idle(engine)
