"""An engine that streams from any OpenAI-compatible server (vllm serve, llama.cpp, SGLang, ...).

The upstream applies its own chat template and tokenizer, so this engine only speaks HTTP:
``POST {base_url}/chat/completions`` with ``stream: true``, parsed as server-sent events. Prompt
tokens are counted locally when ``tokenizer_path`` names the upstream model's GGUF; otherwise the
count is 0 here, context checks happen upstream and usage comes from the upstream's usage chunk.

Failures are retried only before the first token reaches the caller: after that a retry would
repeat text the caller already has, so the stream ends with ``Unavailable`` instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import replace
from typing import Any

import httpx

from aigc_common.errors import AigcError, ConfigError, InvalidArgument, ResourceExhausted, Unavailable
from aigc_common.tokenizer import GgufChatTokenizer
from aigc_common.types import ChatMessage, FinishReason
from aigc_inference.engine import Engine, EngineDelta, EngineRequest, ModelInfo, parse_json_schema
from aigc_inference.settings import OpenAICompatibleSettings

log = logging.getLogger(__name__)

_FINISH_REASONS = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "content_filter": FinishReason.CONTENT_FILTER,
}
# Statuses that say "try again shortly" rather than "this request is wrong".
_RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
# Upstream messages are shown to callers: keep them short so a validation error cannot carry a
# long echo of the request (prompt text) along.
_MAX_UPSTREAM_MESSAGE = 300


class _RetryableFailure(Exception):
    """A failure before the first token that another attempt may not see."""

    def __init__(self, error: AigcError, retry_after: float = 0.0) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


class OpenAICompatibleEngine(Engine):
    """Streams chat completions from an OpenAI-compatible HTTP server.

    ``backoff_seconds`` is the first pause between retries; it doubles per retry and never
    exceeds ``max_backoff_seconds``. An upstream that asks (``Retry-After``) for a longer pause
    than that is not retried: the caller hears ``ResourceExhausted`` with the wait instead.
    """

    def __init__(
        self,
        settings: OpenAICompatibleSettings,
        *,
        name: str,
        context_window: int,
        backoff_seconds: float = 0.2,
        max_backoff_seconds: float = 2.0,
    ) -> None:
        self._settings = settings
        self._base_url = settings.base_url.rstrip("/")
        self._upstream_model = settings.upstream_model or name
        tokenizer_path = settings.tokenizer_path
        self._info = ModelInfo(
            name=name,
            engine="openai_compatible",
            context_window=context_window,
            supports_json_schema=True,
            tokenizer=f"gguf:{tokenizer_path.name}" if tokenizer_path else "upstream",
        )
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._client: httpx.AsyncClient | None = None
        self._tokenizer: GgufChatTokenizer | None = None
        self._aborts: dict[str, asyncio.Event] = {}
        # OpenAI, vLLM, SGLang and llama.cpp's own server take `json_schema`; llama-cpp-python's
        # server rejects it and wants `json_object` with a `schema`. Start with the standard form
        # and switch once, per engine, when the upstream refuses it.
        self._schema_form = "json_schema"

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def concurrency(self) -> int:
        return self._settings.max_connections

    async def start(self) -> None:
        """Loads the local tokenizer (if configured) and checks the upstream answers ``/models``."""
        path = self._settings.tokenizer_path
        if path is not None:
            if not path.is_file():
                raise ConfigError(f"openai.tokenizer_path {path} is not a file: point it at the model's GGUF")
            self._tokenizer = await asyncio.to_thread(GgufChatTokenizer.from_path, path)
            self._info = replace(self._info, chat_template=self._tokenizer.template)
        client = self._build_client()
        try:
            await self._check_upstream(client)
        except BaseException:
            await client.aclose()
            raise
        self._client = client
        log.info(
            "upstream ready",
            extra={"fields": {"model": self._info.name, "base_url": self._base_url}},
        )

    def _build_client(self) -> httpx.AsyncClient:
        s = self._settings
        # No pool timeout: waiting for a free connection is this engine's queue, bounded by the
        # core's max_queue and ended by the caller's deadline or cancel, like a llama.cpp context.
        timeout = httpx.Timeout(
            connect=s.connect_timeout_seconds,
            read=s.read_timeout_seconds,
            write=s.read_timeout_seconds,
            pool=None,
        )
        limits = httpx.Limits(max_connections=s.max_connections, max_keepalive_connections=s.max_connections)
        key = s.api_key.get_secret_value()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers)

    async def _check_upstream(self, client: httpx.AsyncClient) -> None:
        url = f"{self._base_url}/models"
        try:
            response = await client.get(url)
        except httpx.HTTPError as exc:
            raise Unavailable(f"upstream {url} did not answer: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            hint = " (check openai.api_key)" if response.status_code in (401, 403) else ""
            raise Unavailable(f"upstream {url} answered HTTP {response.status_code}{hint}")
        try:
            listed = [str(m.get("id")) for m in response.json().get("data", []) if isinstance(m, dict)]
        except (ValueError, AttributeError):
            raise Unavailable(f"upstream {url} did not answer with a model list") from None
        if self._upstream_model not in listed:
            # Not fatal: some servers (llama-cpp-python) list a file path yet serve any model name.
            log.warning(
                "upstream does not list the model",
                extra={"fields": {"model": self._upstream_model, "listed": listed[:10]}},
            )

    def health(self) -> bool:
        # Deliberately no upstream call here: on llama-cpp-python's server any request, even
        # GET /models, interrupts the stream it is generating.
        return self._client is not None

    async def stop(self) -> None:
        """Aborts running requests and closes the connections."""
        for event in list(self._aborts.values()):
            event.set()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Exact prompt tokens with a local tokenizer; 0 (unknown) without one, so the core's
        context check passes and the upstream's own check and usage count decide."""
        if self._tokenizer is None:
            return 0
        return self._tokenizer.count_messages(messages)

    async def count_text_tokens(self, text: str) -> int:
        if self._tokenizer is None:
            # There is no portable OpenAI endpoint for tokenizing (/extras/tokenize and /tokenize
            # are server-specific), so counting needs the model's tokenizer here.
            raise Unavailable(
                f"{self._info.name} cannot count raw text: set openai.tokenizer_path to the model's GGUF"
            )
        return len(self._tokenizer.tokenize(text))

    def abort(self, request_id: str) -> None:
        event = self._aborts.get(request_id)
        if event is not None:
            event.set()

    async def generate(self, request: EngineRequest) -> AsyncIterator[EngineDelta]:
        client = self._client
        if client is None:
            raise Unavailable(f"{self._info.name} is not started")
        schema = parse_json_schema(request.json_schema) if request.json_schema else None
        abort = asyncio.Event()
        self._aborts[request.request_id] = abort
        deltas = self._stream(client, request, schema)
        aborted = asyncio.ensure_future(abort.wait())
        pending: asyncio.Future[EngineDelta] | None = None
        cancelled = False
        try:
            while True:
                # Racing each read against abort() ends the request even while the upstream is
                # silent (queueing, a long prefill), not only between two chunks.
                pending = asyncio.ensure_future(anext(deltas))
                await asyncio.wait({pending, aborted}, return_when=asyncio.FIRST_COMPLETED)
                # Abort wins a tie: after stop() closes the client the read fails too, and the
                # caller should hear CANCELLED, not a connection error.
                if aborted.done() or not pending.done():
                    cancelled = True
                    break
                done, pending = pending, None
                try:
                    delta = done.result()
                except StopAsyncIteration:
                    return
                yield delta
                if delta.finish_reason is not None:
                    return
        finally:
            # Reached on normal end, error, abort() and when the caller closes the stream: leaving
            # `client.stream(...)` closes the connection, which is what stops the upstream generating.
            aborted.cancel()
            if pending is not None:
                pending.cancel()
                await asyncio.wait({pending})
                if not pending.cancelled():
                    pending.exception()  # a failure after the abort is no news: mark it seen
            await deltas.aclose()
            self._aborts.pop(request.request_id, None)
        if cancelled:
            yield EngineDelta("", finish_reason=FinishReason.CANCELLED)

    async def _stream(
        self, client: httpx.AsyncClient, request: EngineRequest, schema: dict[str, Any] | None
    ) -> AsyncGenerator[EngineDelta, None]:
        """One request with retries before the first token; yields the parsed deltas."""
        url = f"{self._base_url}/chat/completions"
        attempt = 0
        started = False
        while True:
            form = self._schema_form
            body = self._body(request, schema, form)
            try:
                async with client.stream("POST", url, json=body) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        if schema is not None and form == "json_schema" and _refuses_schema_form(response):
                            self._use_json_object_form()
                            continue
                        raise _status_error(response, url)
                    # aclosing: an early exit (cancel) unwinds the parsers now, not at garbage collection.
                    async with aclosing(_deltas(response)) as deltas:
                        async for delta in deltas:
                            started = True  # the caller has something now: retrying would repeat it
                            yield delta
                    return
            except _RetryableFailure as failure:
                error, retry_after = failure.error, failure.retry_after
            except httpx.TransportError as exc:
                if started:
                    raise Unavailable(
                        f"upstream {self._base_url} broke off the answer: {type(exc).__name__}"
                    ) from None
                if isinstance(exc, httpx.ReadTimeout):
                    # A stalled upstream is busy, not gone: another attempt would only queue behind it.
                    raise Unavailable(
                        f"upstream {self._base_url} sent nothing for {self._settings.read_timeout_seconds}s"
                    ) from None
                error = Unavailable(f"upstream {url} unreachable: {type(exc).__name__}: {exc}")
                retry_after = 0.0
            if attempt >= self._settings.max_retries or retry_after > self._max_backoff:
                raise error
            # Jitter keeps many streams that failed together from retrying together.
            backoff = min(self._backoff * 2**attempt, self._max_backoff) * random.uniform(0.8, 1.2)
            delay = max(retry_after, backoff)
            attempt += 1
            log.warning(
                "retrying upstream request",
                extra={
                    "fields": {"request_id": request.request_id, "attempt": attempt, "reason": error.message}
                },
            )
            await asyncio.sleep(delay)

    def _use_json_object_form(self) -> None:
        self._schema_form = "json_object"
        log.info(
            "upstream refuses response_format json_schema; using json_object with a schema",
            extra={"fields": {"base_url": self._base_url}},
        )

    def _body(self, request: EngineRequest, schema: dict[str, Any] | None, form: str) -> dict[str, Any]:
        sampling = request.sampling
        body: dict[str, Any] = {
            "model": self._upstream_model,
            "messages": [{"role": str(m.role), "content": m.content} for m in request.messages],
            "stream": True,
            # Asks for the exact token counts in a last chunk; servers that ignore it still work.
            "stream_options": {"include_usage": True},
        }
        if request.max_tokens > 0:
            body["max_tokens"] = request.max_tokens
        if sampling.temperature is not None:
            body["temperature"] = sampling.temperature
        if sampling.top_p is not None:
            body["top_p"] = sampling.top_p
        if sampling.top_k > 0:
            # Not in OpenAI's API, but vLLM, SGLang and llama.cpp take it; sent only when asked for.
            body["top_k"] = sampling.top_k
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if request.logprobs:
            # Only the chosen token's log-probability is used; llama-cpp-python's server sends
            # none at all unless top_logprobs is given, and 0 costs nothing extra anywhere.
            body["logprobs"] = True
            body["top_logprobs"] = 0
        if schema is not None:
            if form == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": schema},
                }
            else:
                body["response_format"] = {"type": "json_object", "schema": schema}
        return body


async def _sse_data(response: httpx.Response) -> AsyncGenerator[str, None]:
    """The ``data`` of each server-sent event; comments (pings) and other fields are skipped."""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
            continue
        if line.startswith("data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(" ") else value)
    if lines:
        yield "\n".join(lines)


async def _deltas(response: httpx.Response) -> AsyncGenerator[EngineDelta, None]:
    """Parses the chunks of one streamed chat completion into deltas.

    The delta carrying the finish reason is held back until the stream ends, because the usage
    chunk (exact token counts) follows it.
    """
    final: EngineDelta | None = None
    completion_tokens = prompt_tokens = 0
    silent = True
    try:
        async with aclosing(_sse_data(response)) as events:
            async for data in events:
                silent = False
                if data.strip() == "[DONE]":
                    break
                chunk = _json_object(data)
                error = chunk.get("error")
                if error:
                    raise Unavailable(f"upstream failed mid-answer: {_error_text(error)}")
                usage = chunk.get("usage")
                if isinstance(usage, dict):
                    completion_tokens = int(usage.get("completion_tokens") or 0)
                    prompt_tokens = int(usage.get("prompt_tokens") or 0)
                choices = chunk.get("choices") or []
                if not choices or not isinstance(choices[0], dict):
                    continue
                choice = choices[0]
                text = (choice.get("delta") or {}).get("content") or ""
                logprobs = _logprobs(choice.get("logprobs"))
                reason = choice.get("finish_reason")
                if reason is not None:
                    final = EngineDelta(
                        text,
                        finish_reason=_FINISH_REASONS.get(str(reason), FinishReason.ERROR),
                        logprobs=logprobs,
                    )
                elif text or logprobs:
                    yield EngineDelta(text, logprobs=logprobs)
    except httpx.TransportError:
        # The answer is complete once its finish reason is in; only the usage chunk was lost.
        if final is None:
            raise
    if final is None and silent:
        # llama-cpp-python's server fails a prompt over its context window only after sending
        # 200 OK, so the caller hears of it as this empty stream.
        raise Unavailable(
            "upstream closed the stream without answering (llama-cpp-python's server does this when "
            "the prompt exceeds its context window)"
        )
    if final is None:
        # E.g. llama-cpp-python's server ends a stream it interrupts for a newer request with [DONE].
        raise Unavailable("upstream ended the stream without a finish reason")
    yield replace(final, completion_tokens=completion_tokens, prompt_tokens=prompt_tokens)


def _json_object(data: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError:
        raise Unavailable("upstream sent a chunk that is not JSON") from None
    if not isinstance(chunk, dict):
        raise Unavailable("upstream sent a chunk that is not a JSON object")
    return chunk


def _logprobs(value: Any) -> tuple[float, ...]:
    if not isinstance(value, dict):
        return ()
    return tuple(
        float(item["logprob"])
        for item in value.get("content") or ()
        if isinstance(item, dict) and item.get("logprob") is not None
    )


def _error_text(error: Any) -> str:
    """The upstream's error message, first line only and bounded in length."""
    if isinstance(error, dict):
        error = error.get("message") or error.get("detail") or error.get("error") or json.dumps(error)
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text[:_MAX_UPSTREAM_MESSAGE]


def _response_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return _error_text(response.text)
    if isinstance(body, dict):
        # OpenAI: {"error": {"message"}}; vLLM: {"message"}; FastAPI defaults: {"detail"}.
        return _error_text(body.get("error") or body.get("message") or body.get("detail") or body)
    return _error_text(body)


def _refuses_schema_form(response: httpx.Response) -> bool:
    # llama-cpp-python answers the unknown `json_schema` type with a validation error (as HTTP 500).
    return response.status_code in (400, 422, 500) and "response_format" in response.text


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "0")))
    except ValueError:
        return 0.0  # an HTTP date: rare from model servers, and the backoff covers it


def _status_error(response: httpx.Response, url: str) -> Exception:
    """Maps an upstream error status to what the caller sees (or a retryable failure)."""
    status = response.status_code
    message = _response_message(response)
    if status == 429:
        wait = _retry_after(response)
        return _RetryableFailure(
            ResourceExhausted(f"upstream is rate limiting: {message}", retry_after=wait), wait
        )
    if status in _RETRYABLE_STATUSES:
        error = Unavailable(f"upstream {url} answered HTTP {status}: {message}")
        return _RetryableFailure(error, _retry_after(response))
    if status in (401, 403, 404):
        # Our configuration is wrong (key, base_url, upstream_model), not the caller's request.
        return Unavailable(
            f"upstream {url} answered HTTP {status}: {message} "
            "(check openai.api_key, openai.base_url and openai.upstream_model)"
        )
    if 400 <= status < 500:
        lowered = message.lower()
        try:
            code = str((response.json().get("error") or {}).get("code") or "")
        except (ValueError, AttributeError):
            code = ""
        over_context = "context" in lowered or "context" in code
        return InvalidArgument(
            f"upstream refused the request: {message}", field="messages" if over_context else ""
        )
    return Unavailable(f"upstream {url} failed with HTTP {status}: {message}")
