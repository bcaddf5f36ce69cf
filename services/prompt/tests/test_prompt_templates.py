"""Every template shipped in prompt_templates/ loads, renders in each of its languages, and has a
valid output schema where it declares one."""

from __future__ import annotations

import jsonschema
import pytest

from aigc_common.types import ChatMessage, Role
from aigc_prompt.core import PromptCore
from aigc_prompt.settings import PromptSettings
from aigc_prompt.templates import TemplateStore

SAMPLES: dict[str, list[dict[str, str]]] = {
    "chat": [{"prompt": "长城有多长？"}, {"prompt": "How long is the Great Wall?"}],
    "product_copy": [
        {"product": "保温杯", "selling_points": "304不锈钢", "language": "zh"},
        {"product": "Thermos", "language": "en"},
    ],
    "product_attributes": [
        {"title": "小米 保温杯 500ml 白色 304不锈钢", "language": "zh"},
        {
            "title": "Xiaomi vacuum flask 500 ml, white, steel",
            "description": "Keeps warm 12h",
            "language": "en",
        },
    ],
    "translation": [
        {"text": "本产品采用304不锈钢。", "glossary": "304不锈钢 = 304 stainless steel"},
        {"text": "Free shipping over 99 yuan.", "source_language": "en", "target_language": "zh"},
    ],
    "customer_service": [
        {"question": "多久发货？", "context": "现货商品 48 小时内发货。"},
        {"question": "Can I return it?"},
    ],
    "compliance_review": [{"text": "全国第一的保温杯，喝了能预防感冒！"}, {"text": "Certified organic."}],
    "math_word_problem": [
        {"problem": "A shop sells pens at 3 yuan each. How much do 7 pens cost?"},
        {"problem": "一辆车每小时行驶 80 公里，3 小时行驶多少公里？"},
    ],
}

STORE = TemplateStore(PromptSettings().templates_dir)


def _core() -> PromptCore:
    return PromptCore(
        STORE,
        count_tokens=lambda m: 0,
        count_text_tokens=len,
        prices={},
        default_model="smollm2-135m-instruct",
    )


def test_every_shipped_template_has_samples_here() -> None:
    assert sorted(STORE.entries) == sorted(SAMPLES)


@pytest.mark.parametrize(
    ("template", "variables"), [(t, v) for t, samples in SAMPLES.items() for v in samples]
)
def test_shipped_template_renders(template: str, variables: dict[str, str]) -> None:
    rendered = _core().render("any-tenant", template, variables)
    assert rendered.messages[-1].role == Role.USER
    user = rendered.messages[-1].content
    for value in variables.values():
        if len(value) > 3 and value not in ("zh", "en"):
            assert value in user or any(value in m.content for m in rendered.messages), value
    assert all(isinstance(m, ChatMessage) and m.content.strip() for m in rendered.messages)


@pytest.mark.parametrize("template", sorted(SAMPLES))
def test_output_schemas_are_valid_json_schema(template: str) -> None:
    spec = STORE.entries[template].versions[STORE.entries[template].latest].spec
    if spec.output_schema is not None:
        jsonschema.Draft202012Validator.check_schema(spec.output_schema)


def test_the_maths_template_applies_few_shot_cot_with_similar_exemplars() -> None:
    rendered = _core().render(
        "t", "math_word_problem", {"problem": "一辆车每小时行驶 80 公里，3 小时行驶多少公里？"}
    )
    assert rendered.strategy == "self_consistency" and rendered.samples == 5
    roles = [m.role for m in rendered.messages]
    assert roles[0] == Role.SYSTEM and roles[-1] == Role.USER
    shots = [m.content for m in rendered.messages if m.role == Role.ASSISTANT]
    assert len(shots) == 2  # k = 2
    assert all("answer is" in s or "答案是" in s for s in shots)
    # The Chinese exemplar is the most similar to a Chinese problem, so it sits next to the query.
    assert "2 盒" in shots[-1]
    assert (
        "think step by step" in rendered.messages[-1].content or "一步一步" in rendered.messages[-1].content
    )


def test_templates_without_a_strategy_are_left_alone() -> None:
    rendered = _core().render("t", "chat", {"prompt": "hi"})
    assert rendered.strategy == "none" and [m.content for m in rendered.messages][-1] == "hi"
