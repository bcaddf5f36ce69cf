"""Inference product logic over an :class:`Engine`: validation, limits, stop sequences,
coalescing, usage, cancellation. No gRPC here."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aigc_common.errors import InvalidArgument, ResourceExhausted
from aigc_common.types import (
    ChatMessage,
    FinishReason,
    GenerationDelta,
    GenerationEvent,
    GenerationFinished,
    GenerationRequest,
    GenerationStarted,
    Usage,
)
from aigc_inference.engine import Engine, EngineRequest, ModelInfo
from aigc_inference.metrics import InferenceMetrics

MAX_STOP_SEQUENCES = 8


class InferenceCore:
    """Serves generation requests from one engine with a bounded wait queue.

    ``coalesce_seconds``: deltas that arrive within this interval after the last message sent
    travel together in one message, so many streams cost fewer messages; the first token is
    never held back.
    """

    def __init__(
        self,
        engine: Engine,
        metrics: InferenceMetrics,
        *,
        max_queue: int,
        default_max_tokens: int,
        coalesce_seconds: float = 0.0,
    ) -> None:
        self._engine = engine
        self._metrics = metrics
        self._max_queue = max_queue
        self._default_max_tokens = default_max_tokens
        self._coalesce = coalesce_seconds
        self._accepted = 0

    @property
    def models(self) -> list[ModelInfo]:
        return [self._engine.info]

    def health(self) -> bool:
        return self._engine.health()

    async def close(self) -> None:
        await self._engine.stop()

    def _check_model(self, model: str) -> ModelInfo:
        info = self._engine.info
        if model and model != info.name:
            raise InvalidArgument(f"unknown model {model!r}; served: {info.name}", field="model")
        return info

    async def count_tokens(self, model: str, messages: tuple[ChatMessage, ...], text: str) -> tuple[int, int]:
        """Tokens of raw text, or of messages after the chat template; and the context window."""
        info = self._check_model(model)
        if text:
            return await self._engine.count_text_tokens(text), info.context_window
        if not messages:
            raise InvalidArgument("give messages or text to count", field="messages")
        return await self._engine.count_tokens(messages), info.context_window

    def _validate(self, request: GenerationRequest) -> None:
        if not request.messages:
            raise InvalidArgument("at least one message is required", field="messages")
        for i, message in enumerate(request.messages):
            if not message.content and i != len(request.messages) - 1:
                raise InvalidArgument("must not be empty", field=f"messages[{i}].content")
        s = request.sampling
        if s.temperature is not None and (math.isnan(s.temperature) or not 0.0 <= s.temperature <= 2.0):
            raise InvalidArgument(
                f"must be between 0 and 2, got {s.temperature}", field="sampling.temperature"
            )
        if s.top_p is not None and (math.isnan(s.top_p) or not 0.0 < s.top_p <= 1.0):
            raise InvalidArgument(f"must be in (0, 1], got {s.top_p}", field="sampling.top_p")
        if len(s.stop) > MAX_STOP_SEQUENCES:
            raise InvalidArgument(f"at most {MAX_STOP_SEQUENCES} stop sequences", field="sampling.stop")
        if any(not stop for stop in s.stop):
            raise InvalidArgument("stop sequences must not be empty", field="sampling.stop")
        if request.json_schema and not self._engine.info.supports_json_schema:
            raise InvalidArgument("this model cannot constrain output to a schema", field="json_schema")

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """Streams Started, Deltas and Finished. Closing the stream aborts the engine request."""
        info = self._check_model(request.model)
        self._validate(request)
        prompt_tokens = await self._engine.count_tokens(request.messages)
        if prompt_tokens >= info.context_window:
            raise InvalidArgument(
                f"prompt is {prompt_tokens} tokens; the context window of {info.name} is {info.context_window}",
                field="messages",
            )
        max_tokens = min(
            request.sampling.max_tokens or self._default_max_tokens, info.context_window - prompt_tokens
        )
        # Requests beyond the engine's slots wait; past max_queue waiting they are refused at once.
        if self._accepted >= self._engine.concurrency + self._max_queue:
            raise ResourceExhausted(
                f"inference queue is full ({self._max_queue} waiting); retry shortly", retry_after=1.0
            )
        request_id = request.request_id or uuid.uuid4().hex
        self._accepted += 1
        self._metrics.queue_depth.labels(info.name).set(max(0, self._accepted - self._engine.concurrency))
        try:
            yield GenerationStarted(request_id=request_id, model=info.name, prompt_tokens=prompt_tokens)
            engine_request = EngineRequest(
                request_id=request_id,
                messages=request.messages,
                sampling=request.sampling,
                max_tokens=max_tokens,
                prompt_tokens=prompt_tokens,
                json_schema=request.json_schema,
                logprobs=1 if request.logprobs else 0,
            )
            events = self._stream(request, engine_request, info)
            async for event in _coalesce(events, self._coalesce) if self._coalesce > 0 else events:
                yield event
        finally:
            self._accepted -= 1
            self._metrics.queue_depth.labels(info.name).set(max(0, self._accepted - self._engine.concurrency))

    async def _stream(
        self, request: GenerationRequest, engine_request: EngineRequest, info: ModelInfo
    ) -> AsyncIterator[GenerationEvent]:
        stops = request.sampling.stop
        hold = max((len(s) for s in stops), default=1) - 1
        start = time.perf_counter()
        last = start
        completion = 0
        reported_completion = 0
        reported_prompt = 0
        pending_text = ""  # text held back because it may be the start of a stop sequence
        pending_ids: list[int] = []
        pending_logprobs: list[float] = []
        finish = FinishReason.STOP
        running = False
        # Label lookups cost microseconds each; per token they add up, so resolve them once.
        inter_token = self._metrics.inter_token.labels(info.name)
        stream = self._engine.generate(engine_request)
        try:
            async for delta in stream:
                if not running:
                    running = True
                    self._metrics.running.labels(info.name).inc()
                now = time.perf_counter()
                if delta.token_ids or delta.text:
                    if completion == 0:
                        self._metrics.time_to_first_token.labels(info.name).observe(now - start)
                    else:
                        inter_token.observe(now - last)
                    last = now
                    completion += len(delta.token_ids) or (1 if delta.text else 0)
                reported_completion = max(reported_completion, delta.completion_tokens)
                reported_prompt = max(reported_prompt, delta.prompt_tokens)
                pending_text += delta.text
                pending_ids.extend(delta.token_ids)
                pending_logprobs.extend(delta.logprobs)
                if stops:
                    cut = min((i for i in (pending_text.find(s) for s in stops) if i >= 0), default=-1)
                    if cut >= 0:
                        if cut:
                            yield GenerationDelta(
                                pending_text[:cut], tuple(pending_ids), tuple(pending_logprobs)
                            )
                        finish = FinishReason.STOP
                        break
                release = (
                    len(pending_text) - hold if stops and delta.finish_reason is None else len(pending_text)
                )
                if release > 0 or pending_ids:
                    yield GenerationDelta(pending_text[:release], tuple(pending_ids), tuple(pending_logprobs))
                    pending_text, pending_ids, pending_logprobs = pending_text[release:], [], []
                if delta.finish_reason is not None:
                    finish = delta.finish_reason
                    break
        finally:
            # Ends the engine request at once when we stop early (stop sequence or caller cancel).
            await stream.aclose()  # type: ignore[attr-defined]
            if running:
                self._metrics.running.labels(info.name).dec()
            # Engines that learn the exact count upstream report it; it beats counting pieces.
            completion = reported_completion or completion
            prompt_tokens = engine_request.prompt_tokens or reported_prompt
            self._metrics.duration.labels(info.name).observe(time.perf_counter() - start)
            tenant = request.tenant_id or "unknown"
            self._metrics.tokens.labels(tenant, info.name, "prompt").inc(prompt_tokens)
            self._metrics.tokens.labels(tenant, info.name, "completion").inc(completion)
        yield GenerationFinished(
            finish_reason=finish,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion),
        )


async def _coalesce(
    events: AsyncIterator[GenerationEvent], interval: float
) -> AsyncIterator[GenerationEvent]:
    """Merges deltas that arrive within ``interval`` of the last message sent.

    The next event is awaited in a task, so waiting out the interval never cancels the
    generator underneath (that would abort the engine).
    """
    buffered: list[GenerationDelta] = []
    last_sent = 0.0
    next_event: asyncio.Task[Any] | None = None

    def flush() -> GenerationDelta:
        merged = GenerationDelta(
            "".join(d.text for d in buffered),
            tuple(t for d in buffered for t in d.token_ids),
            tuple(p for d in buffered for p in d.logprobs),
        )
        buffered.clear()
        return merged

    try:
        while True:
            if next_event is None:
                next_event = asyncio.ensure_future(anext(events))
            if buffered:
                timeout = max(0.0, last_sent + interval - time.perf_counter())
                done, _ = await asyncio.wait({next_event}, timeout=timeout)
                if not done:
                    yield flush()
                    last_sent = time.perf_counter()
                    continue
            try:
                event = await next_event
            except StopAsyncIteration:
                break
            finally:
                next_event = None if next_event.done() else next_event
            if isinstance(event, GenerationDelta):
                buffered.append(event)
                if time.perf_counter() - last_sent >= interval:
                    yield flush()
                    last_sent = time.perf_counter()
                continue
            if buffered:
                yield flush()
            yield event
        if buffered:
            yield flush()
    finally:
        if next_event is not None and not next_event.done():
            next_event.cancel()
        await events.aclose()  # type: ignore[attr-defined]
