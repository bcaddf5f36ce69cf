"""The gateway's structured-output stage with a scripted inference port (unit test of the core):
answers are validated against the template's schema and repaired once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry

from aigc_cache.adapters.memory_store import MemoryStore
from aigc_cache.core import CacheCore
from aigc_cache.metrics import CacheMetrics
from aigc_common.errors import FailedPrecondition
from aigc_common.metrics import UsageMetrics
from aigc_common.types import (
    ChatMessage,
    FinishReason,
    GenerationDelta,
    GenerationEvent,
    GenerationFinished,
    GenerationRequest,
    GenerationStarted,
    Role,
    SamplingParams,
    Usage,
)
from aigc_gateway.adapters.inprocess import InProcessCache
from aigc_gateway.core import Delta, Finished, Gateway, GatewayRequest, Started, schema_problem
from aigc_gateway.metrics import GatewayMetrics
from aigc_gateway.tenants import Tenant, TenantSpec
from aigc_prompt.core import RenderedPrompt
from aigc_safety.types import Action, Verdict

SCHEMA = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}


class FixedPrompt:
    async def render(
        self, tenant_id: str, template_id: str, variables: Mapping[str, str], label: str, version: int
    ) -> RenderedPrompt:
        return RenderedPrompt(
            template_id=template_id,
            version=1,
            bundle_id="b-test",
            messages=(ChatMessage(Role.USER, "Describe an apple as JSON."),),
            model="scripted",
            sampling=SamplingParams(max_tokens=32),
            safety_policy="",
            knowledge_base="",
            json_schema=json.dumps(SCHEMA),
        )


class PassThrough:
    violation = None

    async def feed(self, text: str) -> str:
        return text

    async def finish(self) -> str:
        return ""

    async def close(self) -> None:
        return None


class AllowAll:
    async def check_input(self, tenant_id: str, policy: str, text: str, **ids: str) -> Verdict:
        return Verdict(Action.ALLOW, "default@1")

    async def open_output(self, tenant_id: str, policy: str, **options: object) -> PassThrough:
        return PassThrough()


ACME = Tenant(TenantSpec(id="acme"))


class ScriptedInference:
    """Answers each request with the next scripted text."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.requests: list[GenerationRequest] = []

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        self.requests.append(request)
        text = self.answers[len(self.requests) - 1]
        yield GenerationStarted(request.request_id, "scripted", 10)
        for i in range(0, len(text), 4):
            yield GenerationDelta(text[i : i + 4], (1,))
        yield GenerationFinished(FinishReason.STOP, Usage(10, len(text)))


def _gateway(inference: ScriptedInference, prompt: FixedPrompt | None = None) -> Gateway:
    registry = CollectorRegistry()
    cache = CacheCore(
        MemoryStore(), CacheMetrics(registry), key_prefix="t:", default_ttl_seconds=60, max_answer_chars=999
    )
    return Gateway(
        prompt=prompt or FixedPrompt(),
        safety=AllowAll(),
        cache=InProcessCache(cache),
        inference=inference,
        metrics=GatewayMetrics(registry, UsageMetrics(registry)),
        prices={},
    )


async def _run(gateway: Gateway) -> tuple[str, Finished]:
    text = ""
    finished = None
    async for event in gateway.generate(ACME, GatewayRequest(template_id="apple", skip_cache=True)):
        if isinstance(event, Delta):
            text += event.text
        elif isinstance(event, Finished):
            finished = event
    assert finished is not None
    return text, finished


async def test_a_valid_answer_passes_in_one_attempt() -> None:
    inference = ScriptedInference(['{"colour": "red"}'])
    text, finished = await _run(_gateway(inference))
    assert json.loads(text) == {"colour": "red"}
    assert len(inference.requests) == 1
    assert inference.requests[0].json_schema, "the schema goes to the engine for constrained decoding"
    assert finished.usage.completion_tokens == len('{"colour": "red"}')


async def test_an_invalid_answer_is_repaired_once_and_both_attempts_are_charged() -> None:
    inference = ScriptedInference(['{"color": "red"', '{"colour": "green"}'])
    text, finished = await _run(_gateway(inference))
    assert json.loads(text) == {"colour": "green"}, "the caller never sees the broken first answer"
    assert len(inference.requests) == 2
    repair = inference.requests[1].messages
    assert repair[-2] == ChatMessage(Role.ASSISTANT, '{"color": "red"')
    assert "not JSON" in repair[-1].content
    assert finished.usage.completion_tokens == len('{"color": "red"') + len('{"colour": "green"}')
    assert finished.usage.prompt_tokens == 20


async def test_two_invalid_answers_end_with_a_clear_error_that_does_not_echo_them() -> None:
    inference = ScriptedInference(['{"color": "secret-red"}', '{"shade": "secret-blue"}'])
    with pytest.raises(FailedPrecondition) as err:
        await _run(_gateway(inference))
    message = str(err.value)
    assert "output_schema" in message and "repair" in message and "required" in message
    assert "secret" not in message


def test_schema_problem_names_place_and_rule() -> None:
    assert schema_problem('{"colour": "red"}', SCHEMA) is None
    assert schema_problem('{"colour": 3}', SCHEMA) == "at $.colour: fails 'type'"
    assert (schema_problem("[1", SCHEMA) or "").startswith("not JSON")


class MathsPrompt(FixedPrompt):
    async def render(
        self, tenant_id: str, template_id: str, variables: Mapping[str, str], label: str, version: int
    ) -> RenderedPrompt:
        rendered = await super().render(tenant_id, template_id, variables, label, version)
        return replace(rendered, json_schema="", strategy="self_consistency", samples=3)


async def test_self_consistency_streams_only_the_voted_answer() -> None:
    inference = ScriptedInference(
        [
            "7 pens at 3 yuan is 7 * 3 = 21. Therefore, the answer is: 21",
            "3 + 7 = 10. Therefore, the answer is: 10",
            "Each pen costs 3, so 21 in total. Therefore, the answer is: 21.0",
        ]
    )
    text, finished = await _run(_gateway(inference, MathsPrompt()))
    assert text == "21", "the caller gets the majority answer, not the reasoning"
    assert len(inference.requests) == 3
    assert len({r.request_id for r in inference.requests}) == 3
    assert finished.usage.completion_tokens == sum(len(a) for a in inference.answers)
    assert finished.usage.prompt_tokens == 30


class ReasoningPrompt(FixedPrompt):
    def __init__(self, show_reasoning: bool) -> None:
        self.show_reasoning = show_reasoning

    async def render(
        self, tenant_id: str, template_id: str, variables: Mapping[str, str], label: str, version: int
    ) -> RenderedPrompt:
        rendered = await super().render(tenant_id, template_id, variables, label, version)
        return replace(rendered, json_schema="", strategy="few_shot_cot", show_reasoning=self.show_reasoning)


COT_ANSWER = "Each box holds 6 eggs and there are 4 boxes, so 6 * 4 = 24.\n所以答案是：24 个"


async def _events(gateway: Gateway) -> list[object]:
    return [e async for e in gateway.generate(ACME, GatewayRequest(template_id="eggs", skip_cache=True))]


async def test_chain_of_thought_reasoning_is_hidden_and_only_the_answer_streams() -> None:
    inference = ScriptedInference([COT_ANSWER])
    events = await _events(_gateway(inference, ReasoningPrompt(show_reasoning=False)))
    deltas = [e for e in events if isinstance(e, Delta)]
    assert "".join(d.text for d in deltas) == "24 个"
    assert not any(d.reasoning for d in deltas)
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.usage.completion_tokens == len(COT_ANSWER), "the hidden reasoning is still charged"


async def test_a_template_that_allows_it_streams_reasoning_apart_before_the_answer() -> None:
    inference = ScriptedInference([COT_ANSWER])
    events = await _events(_gateway(inference, ReasoningPrompt(show_reasoning=True)))
    deltas = [e for e in events if isinstance(e, Delta)]
    reasoning = "".join(d.text for d in deltas if d.reasoning)
    answer = "".join(d.text for d in deltas if not d.reasoning)
    assert reasoning == COT_ANSWER
    assert answer == "24 个"
    first_answer = next(i for i, d in enumerate(deltas) if not d.reasoning)
    assert all(d.reasoning for d in deltas[:first_answer]), "reasoning comes first, the answer last"


class SampledPrompt(FixedPrompt):
    def __init__(self, allow_sampled: bool) -> None:
        self.allow_sampled = allow_sampled

    async def render(
        self, tenant_id: str, template_id: str, variables: Mapping[str, str], label: str, version: int
    ) -> RenderedPrompt:
        rendered = await super().render(tenant_id, template_id, variables, label, version)
        return replace(
            rendered,
            json_schema="",
            sampling=SamplingParams(max_tokens=32, temperature=0.8),
            cache_sampled=self.allow_sampled,
        )


@pytest.mark.parametrize("allow_sampled", [False, True])
async def test_sampled_answers_are_cached_only_when_the_template_allows_it(allow_sampled: bool) -> None:
    inference = ScriptedInference(["A red apple.", "A green apple."])
    gateway = _gateway(inference, SampledPrompt(allow_sampled))
    runs = []
    for _ in range(2):
        runs.append([e async for e in gateway.generate(ACME, GatewayRequest(template_id="apple"))])
    second_started = runs[1][0]
    assert isinstance(second_started, Started)
    assert second_started.cache_hit is allow_sampled
    assert len(inference.requests) == (1 if allow_sampled else 2)
