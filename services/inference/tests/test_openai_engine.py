"""The OpenAI-compatible engine against a server none of us wrote: llama-cpp-python's own
``llama_cpp.server`` serving SmolLM2, plus a tiny scripted HTTP upstream for the failure paths
(a real server cannot be made to answer 503 once, or to die after one chunk, on demand)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # installed with ray, which the project depends on
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from aigc_common.errors import InvalidArgument, ResourceExhausted, Unavailable
from aigc_common.types import (
    ChatMessage,
    FinishReason,
    GenerationDelta,
    GenerationFinished,
    GenerationRequest,
    GenerationStarted,
    Role,
    SamplingParams,
)
from aigc_inference.core import InferenceCore
from aigc_inference.engine import EngineDelta, EngineRequest
from aigc_inference.engines.openai_compat import OpenAICompatibleEngine
from aigc_inference.metrics import InferenceMetrics
from aigc_inference.settings import OpenAICompatibleSettings

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
SERVER_START_SECONDS = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Upstream:
    """A running llama_cpp.server: its base URL and log file."""

    base_url: str
    log: Path


@pytest.fixture(scope="module")
def upstream(cpu_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """llama-cpp-python's OpenAI-compatible server on a free loopback port."""
    port = _free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(cpu_model_path),
        "--model_alias",
        MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        "2",
        # By default a second request cuts the running stream short; off, a generation that kept
        # running after our cancel would visibly delay the next request (test_cancel_...).
        "--interrupt_requests",
        "False",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"llama_cpp.server not ready in {SERVER_START_SECONDS}s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.1)
        yield Upstream(base_url, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _settings(base_url: str, **overrides: Any) -> OpenAICompatibleSettings:
    return OpenAICompatibleSettings(base_url=base_url, **overrides)


@pytest.fixture(scope="module")
async def engine(upstream: Upstream, cpu_model_path: Path) -> AsyncIterator[OpenAICompatibleEngine]:
    """The engine under test, counting prompt tokens with the served model's own GGUF."""
    engine = OpenAICompatibleEngine(
        _settings(upstream.base_url, tokenizer_path=cpu_model_path, max_connections=1),
        name=MODEL,
        context_window=2048,
    )
    await engine.start()
    yield engine
    await engine.stop()


def _request(messages: tuple[ChatMessage, ...], max_tokens: int, **extra: Any) -> EngineRequest:
    return EngineRequest(
        request_id=uuid.uuid4().hex,
        messages=messages,
        sampling=SamplingParams(temperature=0.0, seed=11),
        max_tokens=max_tokens,
        **extra,
    )


async def _reference_usage(
    base_url: str, messages: tuple[ChatMessage, ...], max_tokens: int
) -> dict[str, Any]:
    """What the server itself says for the same greedy request, asked without streaming
    (llama_cpp.server sends no usage chunk in streams)."""
    body = {
        "model": MODEL,
        "messages": [{"role": str(m.role), "content": m.content} for m in messages],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "seed": 11,
    }
    return await _post_chat(base_url, body)


async def _post_chat(base_url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(f"{base_url}/chat/completions", json=body)
    response.raise_for_status()
    reply: dict[str, Any] = response.json()
    return reply


async def _same_prompt_state(base_url: str) -> None:
    """Leaves the server's reused prompt prefix at the chat template's opening. llama_cpp.server
    keeps the last request's tokens and evaluates only what differs, so asking the same question
    twice in a row computes its last token alone the second time, in a batch of one, whose
    slightly different logits can change a close greedy choice. Called before each of two
    requests that must agree, it makes both evaluate the question from the same state."""
    await _post_chat(
        base_url, {"model": MODEL, "messages": [{"role": "user", "content": "Ok."}], "max_tokens": 1}
    )


QUESTION = (ChatMessage(Role.USER, "Name three colours."),)
CONVERSATION = (
    ChatMessage(Role.SYSTEM, "You are a terse assistant. 你好!"),
    ChatMessage(Role.USER, "What is the capital of France?"),
    ChatMessage(Role.ASSISTANT, "Paris."),
    ChatMessage(Role.USER, "And of Italy?"),
)


async def test_streams_an_answer_with_the_servers_own_counts(
    engine: OpenAICompatibleEngine, upstream: Upstream
) -> None:
    await _same_prompt_state(upstream.base_url)
    deltas = [d async for d in engine.generate(_request(QUESTION, max_tokens=24))]
    texts = [d for d in deltas if d.text]
    assert len(texts) > 1, "tokens should arrive as a stream, not one block"
    assert deltas[-1].finish_reason in (FinishReason.STOP, FinishReason.LENGTH)
    assert all(d.finish_reason is None for d in deltas[:-1])
    assert all(not d.token_ids for d in deltas), "token ids are not available over this API"

    await _same_prompt_state(upstream.base_url)
    reference = await _reference_usage(upstream.base_url, QUESTION, 24)
    assert "".join(d.text for d in deltas) == reference["choices"][0]["message"]["content"]
    # llama_cpp.server ignores stream_options.include_usage: with no usage chunk the engine reports
    # 0 (unknown) and the core counts one token per delta, which must match the server's count.
    completion = deltas[-1].completion_tokens or len(texts)
    assert completion == reference["usage"]["completion_tokens"]
    assert await engine.count_tokens(QUESTION) == reference["usage"]["prompt_tokens"]


async def test_local_prompt_count_matches_the_server_for_a_conversation(
    engine: OpenAICompatibleEngine, upstream: Upstream
) -> None:
    # System prompt, earlier turns and non-ASCII text all go through both chat templates.
    reference = await _reference_usage(upstream.base_url, CONVERSATION, 1)
    assert await engine.count_tokens(CONVERSATION) == reference["usage"]["prompt_tokens"]


async def test_logprobs_arrive_one_per_token(engine: OpenAICompatibleEngine) -> None:
    deltas = [d async for d in engine.generate(_request(QUESTION, max_tokens=6, logprobs=1))]
    texts = [d for d in deltas if d.text]
    assert texts and all(len(d.logprobs) == 1 and d.logprobs[0] <= 0.0 for d in texts)


async def test_through_the_inference_core(engine: OpenAICompatibleEngine, upstream: Upstream) -> None:
    core = InferenceCore(engine, InferenceMetrics(CollectorRegistry()), max_queue=1, default_max_tokens=64)
    request = GenerationRequest(
        messages=QUESTION, sampling=SamplingParams(max_tokens=20, temperature=0.0, seed=11)
    )
    await _same_prompt_state(upstream.base_url)
    events = [e async for e in core.generate(request)]
    assert isinstance(events[0], GenerationStarted)
    assert isinstance(events[-1], GenerationFinished)
    deltas = [e for e in events[1:-1] if isinstance(e, GenerationDelta)]
    assert len(deltas) == len(events) - 2 and len(deltas) > 1
    await _same_prompt_state(upstream.base_url)
    reference = await _reference_usage(upstream.base_url, QUESTION, 20)
    usage = events[-1].usage
    assert usage.completion_tokens == reference["usage"]["completion_tokens"]
    assert usage.prompt_tokens == events[0].prompt_tokens == reference["usage"]["prompt_tokens"]
    assert "".join(d.text for d in deltas) == reference["choices"][0]["message"]["content"]


async def _first_token_seconds(engine: OpenAICompatibleEngine) -> float:
    start = time.monotonic()
    stream = engine.generate(_request(QUESTION, max_tokens=4))
    try:
        async for delta in stream:
            if delta.text:
                return time.monotonic() - start
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    raise AssertionError("no token arrived")


ESSAY = (ChatMessage(Role.USER, "Write a very long essay about the sea."),)


async def _seconds_per_token(engine: OpenAICompatibleEngine) -> float:
    """The upstream's decode time per token right now (other work on the machine varies it)."""
    arrivals = [time.monotonic() async for d in engine.generate(_request(ESSAY, max_tokens=12)) if d.text]
    return (arrivals[-1] - arrivals[0]) / (len(arrivals) - 1)


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_cancel_closes_the_upstream_at_once(engine: OpenAICompatibleEngine, how: str) -> None:
    # Baselines, with the essay prompt in the server's prompt cache exactly as after the cancel
    # below: the follow-up question's first token on an idle server, and the decode speed.
    per_token = await _seconds_per_token(engine)
    idle = await _first_token_seconds(engine)
    request = _request(ESSAY, max_tokens=400)
    stream = engine.generate(request)
    seen: list[EngineDelta] = []
    async for delta in stream:
        seen.append(delta)
        if len(seen) == 3:
            start = time.monotonic()
            if how == "abort":
                engine.abort(request.request_id)
                rest = [d async for d in stream]
                assert [d.finish_reason for d in rest] == [FinishReason.CANCELLED]
            else:
                await stream.aclose()  # type: ignore[attr-defined]
            assert time.monotonic() - start < 1.0
            break
    # The server decodes one request at a time: had the essay kept going upstream (it runs to all
    # 400 tokens), the follow-up would wait ~397 tokens' time for it. Allow a quarter of that.
    after = await _first_token_seconds(engine)
    allowed = idle + max(1.0, 100 * per_token)
    assert after < allowed, (
        f"first token after cancel took {after:.2f}s; idle {idle:.2f}s, allowed {allowed:.2f}s"
    )


async def test_json_schema_shapes_the_answer(engine: OpenAICompatibleEngine) -> None:
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}
    request = _request(
        (ChatMessage(Role.USER, "What colour is the sky? Answer in JSON."),),
        max_tokens=40,
        json_schema=json.dumps(schema),
    )
    for _ in range(2):
        deltas = [d async for d in engine.generate(request)]
        assert deltas[-1].finish_reason == FinishReason.STOP
        answer = json.loads("".join(d.text for d in deltas))
        jsonschema.validate(answer, schema)


async def test_broken_json_schema_is_invalid_argument(engine: OpenAICompatibleEngine) -> None:
    with pytest.raises(InvalidArgument) as err:
        _ = [d async for d in engine.generate(_request(QUESTION, max_tokens=4, json_schema="{not json"))]
    assert err.value.field == "json_schema"


async def test_prompt_over_the_upstream_context_without_a_tokenizer(upstream: Upstream) -> None:
    engine = OpenAICompatibleEngine(_settings(upstream.base_url), name=MODEL, context_window=2048)
    await engine.start()
    try:
        assert await engine.count_tokens(QUESTION) == 0, "no tokenizer: the upstream decides"
        start = time.monotonic()
        with pytest.raises(Unavailable, match="context window"):
            _ = [d async for d in engine.generate(_request((ChatMessage(Role.USER, "word " * 3000),), 8))]
        assert time.monotonic() - start < 15.0, "the failure should come at once, not after a timeout"
    finally:
        await engine.stop()


# --- a scripted upstream for the failure paths ------------------------------------------------


def _sse(chunk: dict[str, Any] | str) -> bytes:
    data = chunk if isinstance(chunk, str) else json.dumps(chunk)
    return f"data: {data}\n\n".encode()


def _content(text: str | None, finish: str | None = None) -> dict[str, Any]:
    delta = {"content": text} if text is not None else {}
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


GOOD_STREAM = [
    _sse({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}),
    _sse(_content("Hello")),
    _sse(_content(" there")),
    _sse(_content("!")),
    _sse(_content(None, "stop")),
    _sse(
        {
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3},
        }
    ),
    _sse("[DONE]"),
]


@dataclass
class FakeUpstream:
    """Answers each chat request with the next scripted step (then "ok"):

    "ok": a good stream with a usage chunk; "503"; "429-long": 429 asking for 30 s;
    "400-context": OpenAI's context-length error; "break": one chunk, then the connection dies
    mid-body; "cut": one chunk, then [DONE] with no finish reason; "llama-schema": answers like
    llama-cpp-python's server, which refuses response_format type json_schema with HTTP 500.
    """

    script: list[str]
    posts: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    base_url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            request_line, *header_lines = head.split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.authorizations.append(headers.get("authorization", ""))
            if request_line.startswith("GET"):
                await self._json(writer, 200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
                return
            post = json.loads(body)
            self.posts.append(post)
            step = self.script.pop(0) if self.script else "ok"
            if step == "llama-schema":
                form = (post.get("response_format") or {}).get("type")
                step = "ok" if form == "json_object" else step
            if step == "503":
                await self._json(writer, 503, {"error": {"message": "model is loading"}})
            elif step == "429-long":
                await self._json(writer, 429, {"error": {"message": "slow down"}}, b"retry-after: 30\r\n")
            elif step == "400-context":
                error = {
                    "message": "This model's maximum context length is 2048 tokens.",
                    "code": "context_length_exceeded",
                }
                await self._json(writer, 400, {"error": error})
            elif step == "llama-schema":
                message = "1 validation error:\n  {'loc': ('body', 'response_format', 'type')}"
                await self._json(writer, 500, {"error": {"message": message}})
            else:
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                )
                events = {
                    "ok": GOOD_STREAM,
                    "break": GOOD_STREAM[:2],
                    "cut": [*GOOD_STREAM[:2], _sse("[DONE]")],
                }
                for event in events[step]:
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                    await writer.drain()
                if step != "break":  # "break" ends without the last chunk, as when a server dies
                    writer.write(b"0\r\n\r\n")
        finally:
            await writer.drain()
            writer.close()

    async def _json(
        self, writer: asyncio.StreamWriter, status: int, payload: dict[str, Any], extra: bytes = b""
    ) -> None:
        body = json.dumps(payload).encode()
        writer.write(
            b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%sconnection: close\r\n\r\n%s"
            % (status, len(body), extra, body)
        )


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream(script=[])
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    upstream.base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    async with server:
        yield upstream


async def _fake_engine(fake: FakeUpstream, **overrides: Any) -> OpenAICompatibleEngine:
    engine = OpenAICompatibleEngine(_settings(fake.base_url, **overrides), name=MODEL, context_window=2048)
    await engine.start()
    return engine


async def test_retries_before_the_first_token(fake: FakeUpstream) -> None:
    fake.script = ["503", "ok"]
    engine = await _fake_engine(fake, api_key=SecretStr("sk-test"))
    try:
        deltas = [d async for d in engine.generate(_request(QUESTION, max_tokens=8))]
    finally:
        await engine.stop()
    assert "".join(d.text for d in deltas) == "Hello there!"
    assert deltas[-1].finish_reason == FinishReason.STOP
    assert (deltas[-1].completion_tokens, deltas[-1].prompt_tokens) == (3, 7)
    assert len(fake.posts) == 2
    assert set(fake.authorizations) == {"Bearer sk-test"}
    assert fake.posts[0]["stream"] is True and fake.posts[0]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(("failure", "message"), [("break", "broke off"), ("cut", "without a finish reason")])
async def test_failure_after_the_first_token_is_unavailable_not_a_retry(
    fake: FakeUpstream, failure: str, message: str
) -> None:
    fake.script = [failure, "ok"]
    engine = await _fake_engine(fake)
    received: list[str] = []
    try:
        with pytest.raises(Unavailable, match=message):
            async for delta in engine.generate(_request(QUESTION, max_tokens=8)):
                received.append(delta.text)
    finally:
        await engine.stop()
    assert received == ["Hello"]
    assert len(fake.posts) == 1, "text already reached the caller: a retry would repeat it"
    assert set(fake.authorizations) == {""}, "no api_key configured: no Authorization header"


async def test_context_overflow_upstream_is_invalid_argument_without_retry(fake: FakeUpstream) -> None:
    fake.script = ["400-context"]
    engine = await _fake_engine(fake)
    try:
        with pytest.raises(InvalidArgument) as err:
            _ = [d async for d in engine.generate(_request(QUESTION, max_tokens=8))]
    finally:
        await engine.stop()
    assert err.value.field == "messages"
    assert "maximum context length" in err.value.message
    assert len(fake.posts) == 1


async def test_long_rate_limit_is_passed_on_instead_of_waited_out(fake: FakeUpstream) -> None:
    fake.script = ["429-long"]
    engine = await _fake_engine(fake)
    try:
        with pytest.raises(ResourceExhausted) as err:
            _ = [d async for d in engine.generate(_request(QUESTION, max_tokens=8))]
    finally:
        await engine.stop()
    assert err.value.retry_after == 30.0
    assert len(fake.posts) == 1


async def test_schema_form_falls_back_once_for_llama_cpp_python(fake: FakeUpstream) -> None:
    fake.script = ["llama-schema"] * 3
    engine = await _fake_engine(fake)
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}}
    try:
        for _ in range(2):
            request = _request(QUESTION, max_tokens=8, json_schema=json.dumps(schema))
            deltas = [d async for d in engine.generate(request)]
            assert deltas[-1].finish_reason == FinishReason.STOP
    finally:
        await engine.stop()
    forms = [post["response_format"] for post in fake.posts]
    assert forms == [
        {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}},
        {"type": "json_object", "schema": schema},
        {"type": "json_object", "schema": schema},
    ]


async def test_without_a_tokenizer_usage_comes_from_the_upstream(fake: FakeUpstream) -> None:
    engine = await _fake_engine(fake)
    try:
        core = InferenceCore(
            engine, InferenceMetrics(CollectorRegistry()), max_queue=1, default_max_tokens=64
        )
        events = [e async for e in core.generate(GenerationRequest(messages=QUESTION))]
        with pytest.raises(Unavailable, match="tokenizer_path"):
            await engine.count_text_tokens("hello")
    finally:
        await engine.stop()
    finished = events[-1]
    assert isinstance(finished, GenerationFinished)
    assert (finished.usage.prompt_tokens, finished.usage.completion_tokens) == (7, 3)


async def test_unreachable_upstream_fails_start_naming_the_url() -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    engine = OpenAICompatibleEngine(
        _settings(url, connect_timeout_seconds=2.0), name=MODEL, context_window=2048
    )
    with pytest.raises(Unavailable) as err:
        await engine.start()
    assert f"{url}/models" in str(err.value)
    assert not engine.health()
