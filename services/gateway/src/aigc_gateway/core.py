"""The interactive pipeline: render -> input safety -> cache -> inference -> cache store.

Plain async code over ports; no gRPC here. Later issues add auth, budgets, retrieval and
output moderation as further stages of the same pipeline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field, replace

from aigc_cache.core import CachedAnswer, Partition
from aigc_common.errors import FailedPrecondition, InvalidArgument, Unavailable
from aigc_common.pricing import Price
from aigc_common.types import (
    ChatMessage,
    FinishReason,
    GenerationDelta,
    GenerationFinished,
    GenerationRequest,
    GenerationStarted,
    Role,
    SamplingParams,
    Usage,
)
from aigc_gateway.metrics import GatewayMetrics
from aigc_gateway.ports import CachePort, InferencePort, PromptPort, SafetyPort
from aigc_prompt.core import RenderedPrompt
from aigc_prompt.strategies import SelfConsistency, extract_answer
from aigc_safety.types import Action

log = logging.getLogger(__name__)

CHAT_TEMPLATE = "chat"
# Strategies whose completion is reasoning followed by an answer line; only the answer is the result.
REASONING_STRATEGIES = frozenset({"zero_shot_cot", "few_shot_cot"})
REPLAY_CHUNK_CHARS = 12
REPAIR_PROMPT = (
    "Your previous answer was not valid: {problem}. Reply again with only a JSON value that matches the "
    "required schema. 上一个回答不符合要求的 JSON 格式，请只输出符合格式的 JSON。"
)


@dataclass(frozen=True, slots=True)
class GatewayRequest:
    """What a business team asks for."""

    template_id: str = ""
    label: str = ""
    version: int = 0
    variables: Mapping[str, str] = field(default_factory=dict)
    prompt: str = ""
    model: str = ""
    sampling: SamplingParams = field(default_factory=SamplingParams)
    skip_cache: bool = False
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class Started:
    request_id: str
    bundle_id: str
    model: str
    cache_hit: bool
    template_version: int


@dataclass(frozen=True, slots=True)
class Delta:
    text: str
    reasoning: bool = False


@dataclass(frozen=True, slots=True)
class SafetyDecision:
    stage: str
    action: str
    policy_version: str
    rule_ids: tuple[str, ...]
    message: str


@dataclass(frozen=True, slots=True)
class Finished:
    finish_reason: FinishReason
    usage: Usage
    currency: str
    cost_nanos: int
    time_to_first_token_seconds: float
    duration_seconds: float


GatewayEvent = Started | Delta | SafetyDecision | Finished


class Gateway:
    """Runs one interactive generation through every stage, streaming what the caller sees."""

    def __init__(
        self,
        *,
        prompt: PromptPort,
        safety: SafetyPort,
        cache: CachePort,
        inference: InferencePort,
        metrics: GatewayMetrics,
        prices: Mapping[str, Price],
    ) -> None:
        self._prompt = prompt
        self._safety = safety
        self._cache = cache
        self._inference = inference
        self._metrics = metrics
        self._prices = dict(prices)

    async def generate(self, tenant_id: str, req: GatewayRequest) -> AsyncIterator[GatewayEvent]:
        start = time.perf_counter()
        request_id = req.request_id or uuid.uuid4().hex
        template_id = req.template_id or CHAT_TEMPLATE
        variables = dict(req.variables)
        if template_id == CHAT_TEMPLATE:
            if not req.prompt.strip() and not variables.get("prompt", "").strip():
                raise InvalidArgument("must not be empty", field="prompt")
            variables.setdefault("prompt", req.prompt)
        rendered = await self._prompt.render(tenant_id, template_id, variables, req.label, req.version)
        model = req.model or rendered.model
        sampling = req.sampling.merged_over(rendered.sampling)

        # User turns carry the caller's text; each is checked on its own so a redaction can
        # replace exactly the message it came from. System text is the template author's.
        messages = list(rendered.messages)
        notices: list[SafetyDecision] = []
        policy_version = ""
        for i, message in enumerate(messages):
            if message.role != Role.USER:
                continue
            verdict = await self._safety.check_input(tenant_id, rendered.safety_policy, message.content)
            policy_version = verdict.policy_version
            decision = SafetyDecision(
                "input",
                str(verdict.action),
                verdict.policy_version,
                tuple(h.rule_id for h in verdict.hits),
                verdict.message,
            )
            if verdict.action == Action.BLOCK:
                self._metrics.safety_blocks.labels(tenant_id, "input").inc()
                yield Started(request_id, rendered.bundle_id, model, False, rendered.version)
                yield decision
                yield Finished(FinishReason.CONTENT_FILTER, Usage(), "", 0, 0.0, time.perf_counter() - start)
                return
            if verdict.action == Action.REDACT and verdict.redacted_text:
                messages[i] = ChatMessage(Role.USER, verdict.redacted_text)
                notices.append(decision)
            elif verdict.action == Action.REVIEW:
                notices.append(decision)
        rendered = replace(rendered, messages=tuple(messages))

        partition = Partition(tenant_id, rendered.bundle_id, model, policy_version)
        if not req.skip_cache:
            hit = await self._cache.lookup(partition, rendered.messages, sampling)
            if hit is not None:
                async for replayed in self._replay(
                    tenant_id, request_id, rendered.bundle_id, model, rendered.version, hit, start, notices
                ):
                    yield replayed
                return

        if rendered.samples > 1 and not rendered.json_schema:
            async for voted in self._self_consistency(
                tenant_id, request_id, rendered, model, sampling, notices, start
            ):
                yield voted
            return

        # Answers with an output schema are held back, validated, and repaired once if needed, so
        # the caller never receives JSON that does not match the template's schema.
        schema = json.loads(rendered.json_schema) if rendered.json_schema else None
        # Chain-of-thought answers are held back too: the final answer is parsed out of the
        # reasoning at the end, and the reasoning reaches the caller only if the template allows.
        reasoning = schema is None and rendered.strategy in REASONING_STRATEGIES
        attempt_messages = rendered.messages
        first_token_at = 0.0
        prompt_tokens = completion_tokens = 0
        text = ""
        finished: GenerationFinished | None = None
        for attempt in (1, 2):
            answer: list[str] = []
            finished = None
            stream = self._inference.generate(
                GenerationRequest(
                    messages=attempt_messages,
                    sampling=sampling,
                    model=model,
                    request_id=request_id if attempt == 1 else f"{request_id}-repair",
                    tenant_id=tenant_id,
                    json_schema=rendered.json_schema,
                )
            )
            try:
                async for event in stream:
                    if isinstance(event, GenerationStarted):
                        model = event.model
                        if attempt == 1:
                            yield Started(request_id, rendered.bundle_id, model, False, rendered.version)
                            for notice in notices:
                                yield notice
                    elif isinstance(event, GenerationDelta):
                        if event.text:
                            answer.append(event.text)
                            if reasoning and rendered.show_reasoning:
                                yield Delta(event.text, reasoning=True)
                            elif schema is None and not reasoning:
                                first_token_at = first_token_at or time.perf_counter()
                                yield Delta(event.text)
                    elif isinstance(event, GenerationFinished):
                        finished = event
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
            if finished is None:
                raise Unavailable("the inference service ended the stream without a result")
            prompt_tokens += finished.usage.prompt_tokens
            completion_tokens += finished.usage.completion_tokens
            text = "".join(answer)
            if reasoning:
                text = extract_answer(text, "en").answer
                first_token_at = time.perf_counter()
                for chunk in _chunks(text):
                    yield chunk
                break
            if schema is None:
                break
            problem = schema_problem(text, schema)
            if problem is None:
                first_token_at = time.perf_counter()
                for chunk in _chunks(text):
                    yield chunk
                break
            if attempt == 2:
                # Both attempts used the model: the tenant is charged for them before the error.
                self._charge(tenant_id, model, Usage(prompt_tokens, completion_tokens))
                raise FailedPrecondition(
                    f"the model's answer did not match the template's output schema after one repair "
                    f"attempt ({problem})",
                    field="output_schema",
                )
            attempt_messages = (
                *rendered.messages,
                ChatMessage(Role.ASSISTANT, text),
                ChatMessage(Role.USER, REPAIR_PROMPT.format(problem=problem)),
            )
        assert finished is not None
        usage = Usage(prompt_tokens, completion_tokens)
        currency, cost = self._charge(tenant_id, model, usage)
        if not req.skip_cache and finished.finish_reason in (FinishReason.STOP, FinishReason.LENGTH):
            # Only complete, allowed answers are cached (the input verdict let this request through).
            await self._cache.store(partition, rendered.messages, sampling, CachedAnswer(text, usage))
        done = Finished(
            finished.finish_reason,
            usage,
            currency,
            cost,
            (first_token_at - start) if first_token_at else 0.0,
            time.perf_counter() - start,
        )
        _log_request(tenant_id, request_id, rendered.bundle_id, model, False, done)
        yield done

    async def _self_consistency(
        self,
        tenant_id: str,
        request_id: str,
        rendered: RenderedPrompt,
        model: str,
        sampling: SamplingParams,
        notices: list[SafetyDecision],
        start: float,
    ) -> AsyncIterator[GatewayEvent]:
        """Samples ``rendered.samples`` reasoning paths at once, majority-votes their final answers and
        streams only the winning answer: the reasoning stays hidden from the caller."""
        yield Started(request_id, rendered.bundle_id, model, False, rendered.version)
        for notice in notices:
            yield notice

        async def sample(i: int) -> tuple[str, Usage]:
            # Distinct seeds, or every sample of a seeded request would be the same path.
            seeded = replace(sampling, seed=sampling.seed + i) if sampling.seed is not None else sampling
            stream = self._inference.generate(
                GenerationRequest(
                    messages=rendered.messages,
                    sampling=seeded,
                    model=model,
                    request_id=f"{request_id}-s{i}",
                    tenant_id=tenant_id,
                )
            )
            parts: list[str] = []
            finished: GenerationFinished | None = None
            try:
                async for event in stream:
                    if isinstance(event, GenerationDelta):
                        parts.append(event.text)
                    elif isinstance(event, GenerationFinished):
                        finished = event
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
            if finished is None:
                raise Unavailable("the inference service ended a sample without a result")
            return "".join(parts), finished.usage

        results = await asyncio.gather(*(sample(i) for i in range(rendered.samples)))
        vote = SelfConsistency(n=rendered.samples).vote([text for text, _ in results], language="en")
        usage = Usage(sum(u.prompt_tokens for _, u in results), sum(u.completion_tokens for _, u in results))
        first = time.perf_counter()
        for chunk in _chunks(vote.answer):
            yield chunk
        currency, cost = self._charge(tenant_id, model, usage)
        done = Finished(
            FinishReason.STOP,
            usage,
            currency,
            cost,
            first - start,
            time.perf_counter() - start,
        )
        log.info(
            "self-consistency vote",
            extra={"fields": {"request_id": request_id, "votes": vote.votes, "samples": vote.total}},
        )
        _log_request(tenant_id, request_id, rendered.bundle_id, model, False, done)
        yield done

    async def _replay(
        self,
        tenant_id: str,
        request_id: str,
        bundle_id: str,
        model: str,
        version: int,
        hit: CachedAnswer,
        start: float,
        notices: list[SafetyDecision],
    ) -> AsyncIterator[GatewayEvent]:
        """Replays a cached answer as a stream, so callers handle hits and misses alike."""
        yield Started(request_id, bundle_id, model, True, version)
        for notice in notices:
            yield notice
        text = hit.answer
        first = time.perf_counter()
        for chunk in _chunks(text):
            yield chunk
        usage = Usage(
            hit.usage.prompt_tokens, hit.usage.completion_tokens, cached_tokens=hit.usage.completion_tokens
        )
        self._metrics.tokens.labels(tenant_id, model, "cached").inc(usage.cached_tokens)
        self._metrics.cache_tokens_saved.labels(tenant_id).inc(usage.cached_tokens)
        price = self._prices.get(model)
        _log_request(
            tenant_id, request_id, bundle_id, model, True, Finished(FinishReason.STOP, usage, "", 0, 0, 0)
        )
        # A hit costs no model time: it is charged nothing, and says so.
        yield Finished(
            FinishReason.STOP,
            usage,
            price.currency if price else "",
            0,
            first - start,
            time.perf_counter() - start,
        )

    def _charge(self, tenant_id: str, model: str, usage: Usage) -> tuple[str, int]:
        """Prices model work and records the cost; returns (currency, nanos), ("", 0) if unpriced.
        Prompt and completion tokens are counted by inference, which knows them exactly."""
        price = self._prices.get(model)
        if price is None:
            return "", 0
        cost = price.cost_nanos(usage.prompt_tokens, usage.completion_tokens)
        self._metrics.cost.labels(tenant_id, model, price.currency).inc(cost / 1e9)
        return price.currency, cost


def _chunks(text: str) -> Iterator[Delta]:
    """A whole answer (cache hit, validated or voted) as a stream of small deltas."""
    for i in range(0, len(text), REPLAY_CHUNK_CHARS):
        yield Delta(text[i : i + REPLAY_CHUNK_CHARS])


def _log_request(
    tenant_id: str, request_id: str, bundle_id: str, model: str, cache_hit: bool, done: Finished
) -> None:
    # Ids and counts only: prompt and answer text never reach the logs.
    log.info(
        "generation finished",
        extra={
            "fields": {
                "request_id": request_id,
                "tenant": tenant_id,
                "bundle_id": bundle_id,
                "model": model,
                "cache_hit": cache_hit,
                "finish_reason": str(done.finish_reason),
                "prompt_tokens": done.usage.prompt_tokens,
                "completion_tokens": done.usage.completion_tokens,
                "duration_s": round(done.duration_seconds, 4),
            }
        },
    )


def schema_problem(text: str, schema: dict[str, object]) -> str | None:
    """Why ``text`` is not a JSON value matching ``schema``; None when it is. The reason names the
    place and the rule, never the answer's text."""
    import jsonschema

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg} at character {exc.pos})"
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if error is None:
        return None
    where = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"at {where}: fails '{error.validator}'"
