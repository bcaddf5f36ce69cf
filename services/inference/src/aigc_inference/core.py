"""Inference product logic over an :class:`Engine`: validation, limits, stop sequences,
usage, cancellation. No gRPC here."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import AsyncIterator

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
    """Serves generation requests from one engine with a bounded wait queue."""

    def __init__(
        self, engine: Engine, metrics: InferenceMetrics, *, max_queue: int, default_max_tokens: int
    ) -> None:
        self._engine = engine
        self._metrics = metrics
        self._max_queue = max_queue
        self._default_max_tokens = default_max_tokens
        self._active = 0

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

    def count_tokens(self, model: str, messages: tuple[ChatMessage, ...], text: str) -> tuple[int, int]:
        """Tokens of raw text, or of messages after the chat template; and the context window."""
        info = self._check_model(model)
        if text:
            return len(self._engine.tokenize(text)), info.context_window
        if not messages:
            raise InvalidArgument("give messages or text to count", field="messages")
        return len(self._engine.tokenize(self._engine.apply_chat_template(messages))), info.context_window

    def _validate(self, request: GenerationRequest) -> None:
        if not request.messages:
            raise InvalidArgument("at least one message is required", field="messages")
        for i, message in enumerate(request.messages):
            if not message.content and i != len(request.messages) - 1:
                raise InvalidArgument("must not be empty", field=f"messages[{i}].content")
        s = request.sampling
        if (s.temperature is not None and not (0.0 <= s.temperature <= 2.0)) or (
            s.temperature is not None and math.isnan(s.temperature)
        ):
            raise InvalidArgument(
                f"must be between 0 and 2, got {s.temperature}", field="sampling.temperature"
            )
        if s.top_p is not None and not (0.0 < s.top_p <= 1.0):
            raise InvalidArgument(f"must be in (0, 1], got {s.top_p}", field="sampling.top_p")
        if len(s.stop) > MAX_STOP_SEQUENCES:
            raise InvalidArgument(f"at most {MAX_STOP_SEQUENCES} stop sequences", field="sampling.stop")
        if any(not stop for stop in s.stop):
            raise InvalidArgument("stop sequences must not be empty", field="sampling.stop")

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """Streams Started, Deltas and Finished. Closing the stream aborts the engine request."""
        info = self._check_model(request.model)
        self._validate(request)
        prompt_ids = self._engine.tokenize(self._engine.apply_chat_template(request.messages))
        if len(prompt_ids) >= info.context_window:
            raise InvalidArgument(
                f"prompt is {len(prompt_ids)} tokens; the context window of {info.name} "
                f"is {info.context_window}",
                field="messages",
            )
        max_tokens = request.sampling.max_tokens or self._default_max_tokens
        max_tokens = min(max_tokens, info.context_window - len(prompt_ids))
        # Requests beyond the engine's slots wait; past max_queue waiting they are refused at once.
        if self._active >= self._engine.concurrency + self._max_queue:
            raise ResourceExhausted(
                f"inference queue is full ({self._max_queue} waiting); retry shortly", retry_after=1.0
            )
        request_id = request.request_id or uuid.uuid4().hex
        self._active += 1
        self._metrics.queue_depth.labels(info.name).set(self._active)
        try:
            yield GenerationStarted(request_id=request_id, model=info.name, prompt_tokens=len(prompt_ids))
            async for event in self._stream(request, request_id, prompt_ids, max_tokens, info):
                yield event
        finally:
            self._active -= 1
            self._metrics.queue_depth.labels(info.name).set(self._active)

    async def _stream(
        self,
        request: GenerationRequest,
        request_id: str,
        prompt_ids: list[int],
        max_tokens: int,
        info: ModelInfo,
    ) -> AsyncIterator[GenerationEvent]:
        stops = request.sampling.stop
        hold = max((len(s) for s in stops), default=1) - 1
        engine_request = EngineRequest(
            request_id=request_id,
            prompt_token_ids=prompt_ids,
            sampling=request.sampling,
            max_tokens=max_tokens,
            json_schema=request.json_schema,
        )
        start = time.perf_counter()
        last = start
        completion = 0
        pending_text = ""  # text held back because it may be the start of a stop sequence
        pending_ids: list[int] = []
        finish = FinishReason.STOP
        stream = self._engine.generate(engine_request)
        try:
            async for delta in stream:
                now = time.perf_counter()
                if delta.token_ids:
                    if completion == 0:
                        self._metrics.time_to_first_token.labels(info.name).observe(now - start)
                    else:
                        self._metrics.inter_token.labels(info.name).observe(now - last)
                    last = now
                    completion += len(delta.token_ids)
                pending_text += delta.text
                pending_ids.extend(delta.token_ids)
                if stops:
                    cut = min((i for i in (pending_text.find(s) for s in stops) if i >= 0), default=-1)
                    if cut >= 0:
                        if cut:
                            yield GenerationDelta(pending_text[:cut], tuple(pending_ids))
                        finish = FinishReason.STOP
                        break
                release = (
                    len(pending_text) - hold if stops and delta.finish_reason is None else len(pending_text)
                )
                if release > 0 or pending_ids:
                    yield GenerationDelta(pending_text[:release], tuple(pending_ids))
                    pending_text, pending_ids = pending_text[release:], []
                if delta.finish_reason is not None:
                    finish = delta.finish_reason
                    break
        finally:
            # Ends the engine request at once when we stop early (stop sequence or caller cancel).
            await stream.aclose()  # type: ignore[attr-defined]
            self._metrics.duration.labels(info.name).observe(time.perf_counter() - start)
            self._metrics.engine_tokens.labels(info.name, "prompt").inc(len(prompt_ids))
            self._metrics.engine_tokens.labels(info.name, "completion").inc(completion)
        yield GenerationFinished(
            finish_reason=finish, usage=Usage(prompt_tokens=len(prompt_ids), completion_tokens=completion)
        )
