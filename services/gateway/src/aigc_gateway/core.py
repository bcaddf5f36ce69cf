"""The interactive pipeline (DESIGN.md steps 1-8): admit the tenant (template and model allowed,
rate limits) -> render -> input safety -> cache -> reserve budget -> inference with output
moderation while streaming -> settle, cache store, usage record.

Plain async code over ports; no gRPC here. Authentication happens before (the servicer resolves
the API key to a :class:`Tenant`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from aigc_cache.core import CachedAnswer, Partition
from aigc_common.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, Unavailable
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
from aigc_gateway.limits import Budgets, MemoryCounters, RateLimiter
from aigc_gateway.metrics import GatewayMetrics
from aigc_gateway.ports import CachePort, InferencePort, OutputCheck, PromptPort, SafetyPort
from aigc_gateway.tenants import Tenant
from aigc_gateway.usage import LogUsageSink, UsageRecord, UsageSink
from aigc_prompt.core import RenderedPrompt
from aigc_prompt.strategies import SelfConsistency, extract_answer
from aigc_safety.pii import PlaceholderRestorer, RedactionMap
from aigc_safety.types import Action, Verdict

log = logging.getLogger(__name__)

CHAT_TEMPLATE = "chat"
# Whole answers (hits, validated or extracted ones) stream in pieces of this many characters: a
# few tokens each, few enough messages that a replay costs little more than a unary call.
REPLAY_CHUNK_CHARS = 32
# Strategies whose completion is reasoning followed by an answer line; only the answer is the result.
REASONING_STRATEGIES = frozenset({"zero_shot_cot", "few_shot_cot"})
# Tokens a chat template adds around each message, for the worst-case prompt bound.
PER_MESSAGE_TOKENS = 16
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
    timeout_seconds: float | None = None
    # A batch item: its job reserved the budget for every item at submission, and batch work does
    # not count against the interactive rate limits.
    prepaid: bool = False


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

    @classmethod
    def of(cls, stage: str, verdict: Verdict) -> SafetyDecision:
        return cls(
            stage,
            str(verdict.action),
            verdict.policy_version,
            tuple(h.rule_id for h in verdict.hits),
            verdict.message,
        )


@dataclass(frozen=True, slots=True)
class Finished:
    finish_reason: FinishReason
    usage: Usage
    currency: str
    cost_nanos: int
    time_to_first_token_seconds: float
    duration_seconds: float


GatewayEvent = Started | Delta | SafetyDecision | Finished


@dataclass
class _Run:
    """One request's state while it streams: what the model has used so far, for charging."""

    tenant: Tenant
    request_id: str
    rendered: RenderedPrompt
    model: str
    sampling: SamplingParams
    policy: str
    start: float
    deadline: float | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token_at: float = 0.0
    # Puts the caller's personal data back into the answer, when the policy allows it.
    restorer: PlaceholderRestorer | None = None

    @property
    def usage(self) -> Usage:
        return Usage(self.prompt_tokens, self.completion_tokens)

    def timeout(self) -> float | None:
        return max(0.001, self.deadline - time.monotonic()) if self.deadline is not None else None


class _Stopped(Exception):
    """Output moderation stopped the answer."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict


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
        budgets: Budgets | None = None,
        limiter: RateLimiter | None = None,
        usage: UsageSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._prompt = prompt
        self._safety = safety
        self._cache = cache
        self._inference = inference
        self._metrics = metrics
        self._prices = dict(prices)
        counters = MemoryCounters()
        self._budgets = budgets or Budgets(counters, key_prefix="aigc:")
        self._limiter = limiter or RateLimiter(counters, key_prefix="aigc:")
        self._usage = usage or LogUsageSink()
        self._clock = clock

    # --- the pipeline ---------------------------------------------------------------------------

    async def generate(self, tenant: Tenant, req: GatewayRequest) -> AsyncIterator[GatewayEvent]:
        start = time.perf_counter()
        deadline = time.monotonic() + req.timeout_seconds if req.timeout_seconds else None
        request_id = req.request_id or uuid.uuid4().hex
        template_id = req.template_id or CHAT_TEMPLATE
        variables = dict(req.variables)
        if template_id == CHAT_TEMPLATE:
            if not req.prompt.strip() and not variables.get("prompt", "").strip():
                raise InvalidArgument("must not be empty", field="prompt")
            variables.setdefault("prompt", req.prompt)
        tenant.check_template(template_id)
        if not req.prepaid:
            try:
                await self._limiter.admit(tenant)
            except ResourceExhausted:
                self._metrics.rate_limited.labels(tenant.id).inc()
                raise
        rendered = await self._prompt.render(tenant.id, template_id, variables, req.label, req.version)
        model = req.model or rendered.model
        tenant.check_model(model)
        run = _Run(
            tenant,
            request_id,
            rendered,
            model,
            req.sampling.merged_over(rendered.sampling),
            rendered.safety_policy or tenant.spec.safety_policy,
            start,
            deadline,
        )

        # User turns carry the caller's text; each is checked on its own so a redaction can
        # replace exactly the message it came from. System text is the template author's.
        messages = list(rendered.messages)
        notices: list[SafetyDecision] = []
        restorable: list[RedactionMap] = []
        policy_version = ""
        for i, message in enumerate(messages):
            if message.role != Role.USER:
                continue
            verdict = await self._safety.check_input(
                tenant.id, run.policy, message.content, request_id=request_id, bundle_id=rendered.bundle_id
            )
            policy_version = verdict.policy_version
            if verdict.action == Action.BLOCK:
                self._metrics.safety_blocks.labels(tenant.id, "input").inc()
                yield Started(request_id, rendered.bundle_id, model, False, rendered.version)
                yield SafetyDecision.of("input", verdict)
                yield self._finish(run, FinishReason.CONTENT_FILTER, Usage(), "", 0, cache_hit=False)
                return
            if verdict.action == Action.REDACT and verdict.redacted_text:
                if verdict.entities:
                    restorable.append(RedactionMap.from_entities(message.content, verdict.entities))
                messages[i] = ChatMessage(Role.USER, verdict.redacted_text)
                notices.append(SafetyDecision.of("input", verdict))
            elif verdict.action == Action.REVIEW:
                notices.append(SafetyDecision.of("input", verdict))
        run.rendered = rendered = replace(rendered, messages=tuple(messages))
        if len(restorable) == 1:
            # Placeholders are numbered per message; with several redacted turns the same
            # placeholder could stand for two values, so only a single turn's are restored.
            run.restorer = PlaceholderRestorer(restorable[0])

        partition = Partition(tenant.id, rendered.bundle_id, model, policy_version)
        cache = tenant.spec.cache
        sampled = bool(run.sampling.temperature) and (run.sampling.temperature or 0) > 0
        cacheable = cache.enabled and not req.skip_cache and (not sampled or rendered.cache_sampled)
        if cacheable:
            threshold = rendered.semantic_threshold if cache.semantic else 0.0
            hit = await self._cache.lookup(
                partition, rendered.messages, run.sampling, semantic_threshold=threshold
            )
            if hit is not None:
                async for replayed in self._replay(run, hit, notices):
                    yield replayed
                return

        hold = None if req.prepaid else await self._budgets.reserve(tenant, self._worst_case_nanos(run))
        finished_ok = False
        try:
            yield Started(request_id, rendered.bundle_id, model, False, rendered.version)
            for notice in notices:
                yield notice
            answer = ""
            reason = FinishReason.STOP
            try:
                if rendered.samples > 1 and not rendered.json_schema:
                    stream = self._self_consistency(run)
                elif rendered.json_schema:
                    stream = self._structured(run)
                elif rendered.strategy in REASONING_STRATEGIES:
                    stream = self._reasoning(run)
                else:
                    stream = self._plain(run)
                async for item in stream:
                    if isinstance(item, Delta):
                        run.first_token_at = run.first_token_at or time.perf_counter()
                        delta = _restored(run, item)
                        if delta.text:
                            yield delta
                    else:
                        answer, reason = item
                if run.restorer is not None:
                    rest = run.restorer.finish()
                    if rest:
                        yield Delta(rest)
            except _Stopped as stopped:
                self._metrics.safety_blocks.labels(tenant.id, "output").inc()
                yield SafetyDecision.of("output", stopped.verdict)
                reason = FinishReason.CONTENT_FILTER
            currency, cost = self._charge(tenant.id, run.model, run.usage)
            await self._budgets.settle(hold, cost)
            finished_ok = True
            await self._limiter.record_tokens(tenant, run.usage.total_tokens)
            await self._report_budget(tenant)
            if cacheable and reason == FinishReason.STOP:
                # Only complete answers that passed output safety are stored.
                await self._cache.store(
                    partition, rendered.messages, run.sampling, CachedAnswer(answer, run.usage)
                )
            yield self._finish(run, reason, run.usage, currency, cost, cache_hit=False)
        finally:
            if not finished_ok:
                # Failed or cancelled: charge exactly what the model produced so far, release the rest.
                currency, cost = self._charge(tenant.id, run.model, run.usage)
                await asyncio.shield(self._budgets.settle(hold, cost))

    # --- answer strategies: each yields Deltas, then one (answer, finish reason) ----------------

    async def _stream_model(
        self, run: _Run, messages: tuple[ChatMessage, ...], suffix: str = "", json_schema: str = ""
    ) -> AsyncIterator[str | GenerationFinished]:
        """One model call: yields text pieces, then the finished event; counts usage on the run as it
        goes, so a cancelled stream is charged what it produced."""
        stream = self._inference.generate(
            GenerationRequest(
                messages=messages,
                sampling=run.sampling,
                model=run.model,
                request_id=run.request_id + suffix,
                tenant_id=run.tenant.id,
                json_schema=json_schema,
                timeout_seconds=run.timeout(),
            )
        )
        finished: GenerationFinished | None = None
        prompt_tokens = completion_tokens = 0
        try:
            async for event in stream:
                if isinstance(event, GenerationStarted):
                    run.model = event.model or run.model
                    prompt_tokens = event.prompt_tokens
                    run.prompt_tokens += prompt_tokens
                elif isinstance(event, GenerationDelta):
                    completion_tokens += len(event.token_ids)
                    run.completion_tokens += len(event.token_ids)
                    if event.text:
                        yield event.text
                elif isinstance(event, GenerationFinished):
                    finished = event
                    # The engine's final count is exact; it replaces the running count of this call.
                    run.prompt_tokens += event.usage.prompt_tokens - prompt_tokens
                    run.completion_tokens += event.usage.completion_tokens - completion_tokens
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        if finished is None:
            raise Unavailable("the inference service ended the stream without a result")
        yield finished

    async def _open(self, run: _Run, reasoning: bool = False) -> OutputCheck:
        return await self._safety.open_output(
            run.tenant.id,
            run.policy,
            request_id=run.request_id,
            bundle_id=run.rendered.bundle_id,
            reasoning=reasoning,
        )

    async def _checked_whole(self, run: _Run, text: str, reasoning: bool = False) -> str:
        """Output check of a complete text (held back anyway): returns it, or raises _Stopped."""
        check = await self._open(run, reasoning)
        try:
            released = await check.feed(text) if text else ""
            released += await check.finish()
            if check.violation is not None:
                raise _Stopped(check.violation)
            return released
        finally:
            await check.close()

    async def _moderated(
        self, run: _Run, *, reasoning: bool, show: bool
    ) -> AsyncIterator[Delta | tuple[str, FinishReason]]:
        """One model call streamed through output moderation: checked text is yielded as deltas
        (when ``show``), then the whole completion and its finish reason."""
        check = await self._open(run, reasoning=reasoning)
        parts: list[str] = []
        reason = FinishReason.STOP
        try:
            async for piece in self._stream_model(run, run.rendered.messages):
                if isinstance(piece, GenerationFinished):
                    reason = piece.finish_reason
                    continue
                parts.append(piece)
                released = await check.feed(piece)
                if check.violation is not None:
                    raise _Stopped(check.violation)
                if released and show:
                    yield Delta(released, reasoning=reasoning)
            rest = await check.finish()
            if check.violation is not None:
                raise _Stopped(check.violation)
            if rest and show:
                yield Delta(rest, reasoning=reasoning)
        finally:
            await check.close()
        yield "".join(parts), reason

    def _plain(self, run: _Run) -> AsyncIterator[Delta | tuple[str, FinishReason]]:
        """Streams the answer through output moderation: only checked text reaches the caller."""
        return self._moderated(run, reasoning=False, show=True)

    async def _reasoning(self, run: _Run) -> AsyncIterator[Delta | tuple[str, FinishReason]]:
        """Chain of thought: the completion is checked under the reasoning policy while it streams
        (shown to the caller only if the template allows), then the final answer is parsed out of it
        and checked and sent as the answer."""
        completion, reason = "", FinishReason.STOP
        async for item in self._moderated(run, reasoning=True, show=run.rendered.show_reasoning):
            if isinstance(item, Delta):
                yield item
            else:
                completion, reason = item
        answer = await self._checked_whole(run, extract_answer(completion, "en").answer)
        for chunk in _chunks(answer):
            yield chunk
        yield answer, reason

    async def _structured(self, run: _Run) -> AsyncIterator[Delta | tuple[str, FinishReason]]:
        """Answers with an output schema are held back, validated, and repaired once if needed, so
        the caller never receives JSON that does not match the template's schema."""
        schema = json.loads(run.rendered.json_schema)
        messages = run.rendered.messages
        text = ""
        reason = FinishReason.STOP
        for attempt in (1, 2):
            parts: list[str] = []
            async for piece in self._stream_model(
                run, messages, "" if attempt == 1 else "-repair", run.rendered.json_schema
            ):
                if isinstance(piece, GenerationFinished):
                    reason = piece.finish_reason
                else:
                    parts.append(piece)
            text = "".join(parts)
            problem = schema_problem(text, schema)
            if problem is None:
                break
            if attempt == 2:
                # Both attempts used the model: the tenant is charged for them (by the caller's
                # settle on the way out) before the error.
                raise FailedPrecondition(
                    f"the model's answer did not match the template's output schema after one repair "
                    f"attempt ({problem})",
                    field="output_schema",
                )
            messages = (
                *run.rendered.messages,
                ChatMessage(Role.ASSISTANT, text),
                ChatMessage(Role.USER, REPAIR_PROMPT.format(problem=problem)),
            )
        answer = await self._checked_whole(run, text)
        for chunk in _chunks(answer):
            yield chunk
        yield answer, reason

    async def _self_consistency(self, run: _Run) -> AsyncIterator[Delta | tuple[str, FinishReason]]:
        """Samples ``samples`` reasoning paths at once, checks each under the reasoning policy,
        majority-votes their final answers and streams only the winning answer."""

        async def sample(i: int) -> str:
            seeded = (
                replace(run.sampling, seed=run.sampling.seed + i)
                if run.sampling.seed is not None
                else run.sampling
            )
            one = replace(run, sampling=seeded, prompt_tokens=0, completion_tokens=0)
            parts: list[str] = []
            try:
                async for piece in self._stream_model(one, run.rendered.messages, f"-s{i}"):
                    if not isinstance(piece, GenerationFinished):
                        parts.append(piece)
            finally:
                # Each path's tokens count, finished or not (a cancelled vote is still charged).
                run.prompt_tokens += one.prompt_tokens
                run.completion_tokens += one.completion_tokens
            text = "".join(parts)
            await self._checked_whole(run, text, reasoning=True)
            return text

        texts = await asyncio.gather(*(sample(i) for i in range(run.rendered.samples)))
        vote = SelfConsistency(n=run.rendered.samples).vote(list(texts), language="en")
        log.info(
            "self-consistency vote",
            extra={"fields": {"request_id": run.request_id, "votes": vote.votes, "samples": vote.total}},
        )
        answer = await self._checked_whole(run, vote.answer)
        for chunk in _chunks(answer):
            yield chunk
        yield answer, FinishReason.STOP

    # --- cache hits, charging, accounting -------------------------------------------------------

    async def _replay(
        self, run: _Run, hit: CachedAnswer, notices: list[SafetyDecision]
    ) -> AsyncIterator[GatewayEvent]:
        """Replays a cached answer as a stream, so callers handle hits and misses alike."""
        yield Started(run.request_id, run.rendered.bundle_id, run.model, True, run.rendered.version)
        for notice in notices:
            yield notice
        for chunk in _chunks(hit.answer):
            run.first_token_at = run.first_token_at or time.perf_counter()
            delta = _restored(run, chunk)
            if delta.text:
                yield delta
        if run.restorer is not None and (rest := run.restorer.finish()):
            yield Delta(rest)
        usage = Usage(
            hit.usage.prompt_tokens, hit.usage.completion_tokens, cached_tokens=hit.usage.completion_tokens
        )
        self._metrics.tokens.labels(run.tenant.id, run.model, "cached").inc(usage.cached_tokens)
        self._metrics.cache_tokens_saved.labels(run.tenant.id).inc(usage.cached_tokens)
        price = self._prices.get(run.model)
        # A hit costs no model time: it is charged nothing, and says so.
        yield self._finish(run, FinishReason.STOP, usage, price.currency if price else "", 0, cache_hit=True)

    async def _report_budget(self, tenant: Tenant) -> None:
        spec = tenant.spec.budget
        if spec is not None:
            left = spec.amount_nanos - await self._budgets.spent(tenant)
            self._metrics.budget_remaining.labels(tenant.id, spec.currency).set(left / 1e9)

    def _worst_case_nanos(self, run: _Run) -> int:
        price = self._prices.get(run.model)
        return worst_case_nanos(price, run.rendered, run.sampling) if price is not None else 0

    def _charge(self, tenant_id: str, model: str, usage: Usage) -> tuple[str, int]:
        """Prices model work and records the cost; returns (currency, nanos), ("", 0) if unpriced.
        Prompt and completion tokens are counted by inference, which knows them exactly."""
        price = self._prices.get(model)
        if price is None:
            return "", 0
        cost = price.cost_nanos(usage.prompt_tokens, usage.completion_tokens)
        if cost:
            self._metrics.cost.labels(tenant_id, model, price.currency).inc(cost / 1e9)
        return price.currency, cost

    def _finish(
        self, run: _Run, reason: FinishReason, usage: Usage, currency: str, cost: int, *, cache_hit: bool
    ) -> Finished:
        now = time.perf_counter()
        done = Finished(
            reason,
            usage,
            currency,
            cost,
            (run.first_token_at - run.start) if run.first_token_at else 0.0,
            now - run.start,
        )
        self._usage.record(
            UsageRecord(
                run.request_id,
                run.tenant.id,
                run.model,
                run.rendered.bundle_id,
                usage,
                currency,
                cost,
                cache_hit,
                self._clock(),
            )
        )
        _log_request(run.tenant.id, run.request_id, run.rendered.bundle_id, run.model, cache_hit, done)
        return done


def worst_case_nanos(price: Price, rendered: RenderedPrompt, sampling: SamplingParams) -> int:
    """What one request can cost at most: a prompt bound (byte-level tokenizers never make more
    tokens than UTF-8 bytes) plus every completion token it may generate."""
    prompt = sum(len(m.content.encode()) + PER_MESSAGE_TOKENS for m in rendered.messages)
    max_tokens = sampling.max_tokens or 256
    calls = rendered.samples if rendered.samples > 1 else (2 if rendered.json_schema else 1)
    # A repair attempt resends the prompt with the first answer appended.
    prompt_calls = prompt * calls + (max_tokens if rendered.json_schema else 0)
    return price.cost_nanos(prompt_calls, max_tokens * calls)


def _restored(run: _Run, delta: Delta) -> Delta:
    # After output moderation, which saw placeholders: the values are the caller's own data.
    if run.restorer is None or delta.reasoning:
        return delta
    return Delta(run.restorer.feed(delta.text))


def _chunks(text: str) -> Iterator[Delta]:
    """A whole answer (cache hit, validated, extracted or voted) as a stream of small deltas."""
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
