"""The inference service with the real CPU model (SmolLM2-135M-Instruct through llama.cpp),
behind the real server bootstrap on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from aigc.common.v1 import common_pb2
from aigc.inference.v1 import inference_pb2 as pb
from aigc.inference.v1 import inference_pb2_grpc as pb_grpc
from aigc_common.metrics import RpcMetrics
from aigc_common.server import GrpcServer
from aigc_common.settings import GrpcSettings
from aigc_inference.core import InferenceCore
from aigc_inference.engines.llama_cpp import LlamaCppEngine
from aigc_inference.metrics import InferenceMetrics
from aigc_inference.servicer import binding

pytestmark = pytest.mark.integration


class Served:
    def __init__(self, server: GrpcServer, engine: LlamaCppEngine, registry: CollectorRegistry) -> None:
        self.server = server
        self.engine = engine
        self.registry = registry


@pytest.fixture(scope="module")
async def served(cpu_model_path: Path) -> AsyncIterator[Served]:
    engine = LlamaCppEngine(cpu_model_path, contexts=1, threads=2)
    await engine.start()
    registry = CollectorRegistry()
    core = InferenceCore(engine, InferenceMetrics(registry), max_queue=1, default_max_tokens=64)
    server = GrpcServer("inference", [binding(core)], GrpcSettings(port=0), RpcMetrics(registry))
    await server.start()
    yield Served(server, engine, registry)
    await server.stop(0)
    await engine.stop()


def _user(text: str) -> list[common_pb2.ChatMessage]:
    return [common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text)]


def _request(text: str, max_tokens: int = 32, **sampling: object) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        messages=_user(text),
        sampling=common_pb2.SamplingParams(max_tokens=max_tokens, temperature=0.0, **sampling),  # type: ignore[arg-type]
    )


async def test_stream_usage_matches_the_tokenizer(served: Served) -> None:
    async with grpc.aio.insecure_channel(served.server.address) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        messages = []
        async for reply in stub.Generate(_request("Name three colours.", max_tokens=24)):
            messages.append(reply)
        count = await stub.CountTokens(pb.CountTokensRequest(messages=_user("Name three colours.")))
    assert messages[0].WhichOneof("event") == "started"
    assert messages[-1].WhichOneof("event") == "finished"
    deltas = [m.delta for m in messages if m.WhichOneof("event") == "delta"]
    assert len(deltas) > 1, "tokens should arrive as a stream, not one block"
    finished = messages[-1].finished
    token_ids = [t for d in deltas for t in d.token_ids]
    assert finished.usage.prompt_tokens == count.tokens == messages[0].started.prompt_tokens
    assert finished.usage.completion_tokens == len(token_ids) <= 24
    assert finished.usage.total_tokens == count.tokens + len(token_ids)
    assert "".join(d.text for d in deltas).strip()


async def test_max_tokens_ends_with_length(served: Served) -> None:
    async with grpc.aio.insecure_channel(served.server.address) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        replies = [
            r async for r in stub.Generate(_request("Write a long story about a dragon.", max_tokens=5))
        ]
    finished = replies[-1].finished
    assert finished.finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert finished.usage.completion_tokens == 5


async def test_stop_sequence_is_not_part_of_the_answer(served: Served) -> None:
    async with grpc.aio.insecure_channel(served.server.address) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        # Find what the model says first, then stop on a piece of it.
        first = [r async for r in stub.Generate(_request("Count from 1 to 10.", max_tokens=30))]
        text = "".join(r.delta.text for r in first if r.WhichOneof("event") == "delta")
        stop = text.strip()[2:5]
        assert stop, f"the model answered too little to pick a stop sequence: {text!r}"
        second = [r async for r in stub.Generate(_request("Count from 1 to 10.", max_tokens=30, stop=[stop]))]
    answer = "".join(r.delta.text for r in second if r.WhichOneof("event") == "delta")
    assert stop not in answer
    assert text.startswith(answer)
    assert second[-1].finished.finish_reason == common_pb2.FINISH_REASON_STOP


@pytest.mark.parametrize(
    ("sampling", "field"),
    [
        ({"temperature": 3.0}, "sampling.temperature"),
        ({"top_p": 1.5}, "sampling.top_p"),
        ({"stop": [""]}, "sampling.stop"),
    ],
)
async def test_bad_sampling_is_invalid_argument_naming_the_field(
    served: Served, sampling: dict[str, object], field: str
) -> None:
    async with grpc.aio.insecure_channel(served.server.address) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        request = pb.GenerateRequest(messages=_user("hi"), sampling=common_pb2.SamplingParams(**sampling))  # type: ignore[arg-type]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.Generate(request):
                pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (err.value.details() or "")


async def test_prompt_over_the_context_window_is_refused(served: Served) -> None:
    async with grpc.aio.insecure_channel(served.server.address) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.Generate(_request("word " * 3000)):
                pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "context window" in (err.value.details() or "")


async def test_cancel_stops_the_engine(served: Served) -> None:
    completion = served.registry
    async with grpc.aio.insecure_channel(served.server.address) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        before = (
            completion.get_sample_value(
                "aigc_tokens_total",
                {"tenant": "unknown", "model": served.engine.info.name, "kind": "completion"},
            )
            or 0.0
        )
        call = stub.Generate(_request("Write a very long essay about the sea.", max_tokens=400))
        seen = 0
        async for reply in call:
            if reply.WhichOneof("event") == "delta":
                seen += 1
                if seen == 3:
                    call.cancel()
                    break
        # The engine's slot frees up once decoding stops; wait for the count to settle.
        deadline = time.monotonic() + 10
        while served.engine._pool.qsize() == 0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    after = completion.get_sample_value(
        "aigc_tokens_total", {"tenant": "unknown", "model": served.engine.info.name, "kind": "completion"}
    )
    assert after is not None
    produced = after - before
    assert produced < 3 + 10, f"engine kept generating after cancel: {produced} tokens"


async def test_full_queue_answers_resource_exhausted_at_once(served: Served) -> None:
    async with grpc.aio.insecure_channel(served.server.address) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        # One context decoding, one request waiting (max_queue=1): the third is refused.
        calls = [stub.Generate(_request("Tell me about mountains.", max_tokens=60)) for _ in range(2)]
        firsts = [asyncio.ensure_future(c.read()) for c in calls]
        await asyncio.sleep(0.3)
        start = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.Generate(_request("hi", max_tokens=4)):
                pass
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert time.monotonic() - start < 2.0
        await asyncio.gather(*firsts)
        for c in calls:
            c.cancel()


async def test_list_models(served: Served) -> None:
    async with grpc.aio.insecure_channel(served.server.address) as channel:
        reply = await pb_grpc.InferenceServiceStub(channel).ListModels(pb.ListModelsRequest())
    assert [m.name for m in reply.models] == ["smollm2-135m-instruct"]
    assert reply.models[0].context_window == 2048
    assert reply.models[0].supports_json_schema
    assert "<|im_start|>" in reply.models[0].chat_template  # SmolLM2's template, read from the GGUF
    assert reply.models[0].tokenizer.startswith("gguf:")


async def test_json_schema_constrains_the_answer(served: Served) -> None:
    schema = {
        "type": "object",
        "properties": {"colour": {"type": "string"}, "count": {"type": "integer"}},
        "required": ["colour", "count"],
    }
    async with grpc.aio.insecure_channel(served.server.address) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        request = _request("Describe an apple as JSON with its colour and a count.", max_tokens=60)
        request.json_schema = json.dumps(schema)
        replies = [r async for r in stub.Generate(request)]
    text = "".join(r.delta.text for r in replies if r.WhichOneof("event") == "delta")
    answer = json.loads(text)
    assert isinstance(answer["colour"], str) and isinstance(answer["count"], int)


async def test_broken_json_schema_is_invalid_argument(served: Served) -> None:
    async with grpc.aio.insecure_channel(served.server.address) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        request = _request("hi", max_tokens=4)
        request.json_schema = "{not json"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.Generate(request):
                pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "json_schema" in (err.value.details() or "")


async def test_same_seed_same_answer(served: Served) -> None:
    async with grpc.aio.insecure_channel(served.server.address) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        texts = []
        for seed in (7, 7):
            request = pb.GenerateRequest(
                messages=_user("Invent a name for a cat."),
                sampling=common_pb2.SamplingParams(max_tokens=16, temperature=1.0, seed=seed),
            )
            replies = [r async for r in stub.Generate(request)]
            texts.append("".join(r.delta.text for r in replies if r.WhichOneof("event") == "delta"))
    assert texts[0] == texts[1] and texts[0]


async def test_deadline_ends_the_call_and_the_generation(served: Served) -> None:
    labels = {"tenant": "unknown", "model": served.engine.info.name, "kind": "completion"}
    async with grpc.aio.insecure_channel(served.server.address) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.Generate(
                _request("Write a very long essay about rivers.", max_tokens=600), timeout=0.8
            ):
                pass
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        deadline = time.monotonic() + 10
        while served.engine._pool.qsize() == 0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        settled = served.registry.get_sample_value("aigc_tokens_total", labels)
        await asyncio.sleep(0.5)
        assert served.registry.get_sample_value("aigc_tokens_total", labels) == settled
        assert settled is not None and settled < 600
