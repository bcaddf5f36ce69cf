"""Chain-of-thought and few-shot strategies: their effect on messages, exemplar selection and
budgets, answer extraction and self-consistency voting. Pure functions, no model."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from aigc_common.types import ChatMessage, Role
from aigc_prompt.strategies import (
    ANSWER_PREFIXES,
    COT_TRIGGERS,
    Example,
    Extracted,
    FewShot,
    FewShotCoT,
    NoStrategy,
    SelfConsistency,
    StrategyConfigError,
    StrategyContext,
    ZeroShotCoT,
    build_strategy,
    extract_answer,
    normalise_answer,
    similarity,
)

SYSTEM = ChatMessage(Role.SYSTEM, "You are helpful.")

EN_EXAMPLES = (
    Example("How many legs does a spider have?", "8", "Spiders are arachnids; arachnids have 8 legs."),
    Example("What colour is the sky on a clear day?", "blue", "Sunlight scatters; blue scatters most."),
    Example("How many apples are in 3 boxes of 4 apples?", "12", "3 boxes of 4 apples is 3 * 4 = 12."),
)
ZH_EXAMPLES = (
    Example("保温杯能保温多久？", "12小时", "产品说明写明保温12小时。"),
    Example("这款手机支持快充吗？", "支持", "参数表中有65W快充。"),
    Example("运费怎么算？", "满99元包邮", "店铺规则：满99元包邮。"),
)


def _chars(text: str) -> int:
    # A stand-in tokenizer: one token per character keeps the budget arithmetic visible.
    return len(text)


def _ctx(
    language: str = "en",
    examples: Sequence[Example] = EN_EXAMPLES,
    query: str = "",
    seed: int = 0,
) -> StrategyContext:
    return StrategyContext(language=language, examples=examples, query=query, count_tokens=_chars, seed=seed)


def _messages(query: str) -> tuple[ChatMessage, ...]:
    return (SYSTEM, ChatMessage(Role.USER, query))


def _exemplar_inputs(messages: tuple[ChatMessage, ...]) -> list[str]:
    # Exemplar user turns sit between the system message and the final (query) user message.
    return [m.content for m in messages[1:-1] if m.role is Role.USER]


# --- none / zero-shot CoT -------------------------------------------------------------------------


def test_no_strategy_returns_the_messages_unchanged() -> None:
    messages = _messages("hi")
    assert NoStrategy().apply(messages, _ctx()) is messages
    assert NoStrategy.name == "none"


@pytest.mark.parametrize(
    ("language", "query", "expected"),
    [
        ("en", "What is 2 + 2?", "What is 2 + 2?\nLet's think step by step."),
        ("zh", "2 加 2 等于几？", "2 加 2 等于几？\n让我们一步一步地思考。"),
    ],
)
def test_zero_shot_cot_appends_the_localised_trigger_to_the_last_user_message(
    language: str, query: str, expected: str
) -> None:
    earlier = ChatMessage(Role.USER, "earlier turn")
    messages = (SYSTEM, earlier, ChatMessage(Role.ASSISTANT, "ok"), ChatMessage(Role.USER, query))
    out = ZeroShotCoT().apply(messages, _ctx(language))
    assert out[:3] == messages[:3]  # only the last user turn changes
    assert out[3] == ChatMessage(Role.USER, expected)
    # Applying twice does not repeat the trigger.
    assert ZeroShotCoT().apply(out, _ctx(language)) == out


def test_a_strategy_needs_a_user_message() -> None:
    with pytest.raises(ValueError, match="messages"):
        ZeroShotCoT().apply((SYSTEM,), _ctx())


# --- few-shot selection ---------------------------------------------------------------------------


def test_fixed_few_shot_inserts_the_first_k_as_alternating_turns_before_the_query() -> None:
    out = FewShot(selection="fixed", k=2).apply(_messages("How many legs does a cat have?"), _ctx())
    assert [m.role for m in out] == [
        Role.SYSTEM,
        Role.USER,
        Role.ASSISTANT,
        Role.USER,
        Role.ASSISTANT,
        Role.USER,
    ]
    assert out[0] == SYSTEM
    assert out[-1] == ChatMessage(Role.USER, "How many legs does a cat have?")
    # Template order is relevance order, so the first exemplar sits closest to the query.
    assert [m.content for m in out[1:5]] == [
        EN_EXAMPLES[1].input,
        "blue",
        EN_EXAMPLES[0].input,
        "8",
    ]


def test_few_shot_in_chinese_uses_the_outputs_verbatim() -> None:
    out = FewShot(k=3).apply(_messages("这个杯子多重？"), _ctx("zh", ZH_EXAMPLES))
    assistants = [m.content for m in out if m.role is Role.ASSISTANT]
    assert sorted(assistants) == sorted(e.output for e in ZH_EXAMPLES)
    assert out[-1].content == "这个杯子多重？"  # plain few-shot adds no trigger


def test_seeded_random_selection_is_reproducible_and_depends_on_the_seed() -> None:
    examples = tuple(Example(f"question {i}", str(i)) for i in range(20))
    strategy = FewShot(selection="random", k=3, token_budget=10_000)
    picks = {
        seed: _exemplar_inputs(strategy.apply(_messages("q"), _ctx(examples=examples, seed=seed)))
        for seed in range(5)
    }
    again = _exemplar_inputs(strategy.apply(_messages("q"), _ctx(examples=examples, seed=0)))
    assert again == picks[0]
    assert all(len(p) == 3 for p in picks.values())
    assert len({tuple(p) for p in picks.values()}) > 1


@pytest.mark.parametrize(
    ("language", "examples", "query", "most_similar", "second"),
    [
        (
            "en",
            EN_EXAMPLES,
            "How many legs does an ant have?",
            EN_EXAMPLES[0].input,
            EN_EXAMPLES[2].input,
        ),
        ("zh", ZH_EXAMPLES, "这个保温杯保温多久？", ZH_EXAMPLES[0].input, None),
    ],
)
def test_similar_selection_puts_the_most_similar_exemplar_closest_to_the_query(
    language: str, examples: Sequence[Example], query: str, most_similar: str, second: str | None
) -> None:
    out = FewShot(selection="similar", k=2).apply(_messages(query), _ctx(language, examples, query))
    inputs = _exemplar_inputs(out)
    assert len(inputs) == 2
    assert inputs[-1] == most_similar
    if second is not None:
        assert inputs[0] == second


def test_similarity_is_cosine_over_character_bigrams() -> None:
    assert similarity("保温杯", "保温杯") == pytest.approx(1.0)
    assert similarity("Apple", "apple") == pytest.approx(1.0)  # casefolded
    assert similarity("abc", "xyz") == 0.0
    assert similarity("", "abc") == 0.0
    assert similarity("保温杯保温多久", "保温杯能保温多久？") > similarity("保温杯保温多久", "运费怎么算？")


def test_token_budget_is_never_exceeded_and_the_least_similar_goes_first() -> None:
    examples = (
        Example("giraffe height", "5m"),  # least similar to the query, yet first in template order
        Example("insect legs count", "6"),
        Example("spider legs count", "8"),  # most similar
    )
    query = "spider legs count please"
    ctx = _ctx(examples=examples, query=query)
    costs = {e.input: len(e.input) + len(e.output) for e in examples}
    # All three cost 16 + 18 + 18 = 52; a budget of 40 must drop exactly the least similar one.
    assert sum(costs.values()) == 52
    out = FewShot(selection="similar", k=3, token_budget=40).apply(_messages(query), ctx)
    inputs = _exemplar_inputs(out)
    assert inputs == ["insect legs count", "spider legs count"]
    assert sum(costs[i] for i in inputs) <= 40
    # Budget smaller than any exemplar: no exemplars, query untouched.
    assert FewShot(selection="similar", token_budget=5).apply(_messages(query), ctx) == _messages(query)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"k": 0}, "k"),
        ({"k": 33}, "k"),
        ({"k": True}, "k"),
        ({"k": "3"}, "k"),
        ({"token_budget": 0}, "token_budget"),
        ({"selection": "best"}, "selection"),
    ],
)
def test_bad_few_shot_config_is_a_value_error_naming_the_field(config: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field) as info:
        FewShot(**config)  # type: ignore[arg-type]
    assert isinstance(info.value, StrategyConfigError)
    assert info.value.field == field


def test_context_rejects_an_unknown_language() -> None:
    with pytest.raises(ValueError, match="language"):
        _ctx(language="fr")


# --- few-shot CoT ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "examples", "query"),
    [("en", EN_EXAMPLES, "How many legs does a cat have?"), ("zh", ZH_EXAMPLES, "这个杯子多重？")],
)
def test_few_shot_cot_shows_reasoning_then_the_parseable_answer_and_adds_the_trigger(
    language: str, examples: Sequence[Example], query: str
) -> None:
    out = FewShotCoT(k=1).apply(_messages(query), _ctx(language, examples, query))
    assert [m.role for m in out] == [Role.SYSTEM, Role.USER, Role.ASSISTANT, Role.USER]
    first = examples[0]
    assert out[1].content == first.input
    assert out[2].content == f"{first.reasoning}\n{ANSWER_PREFIXES[language]}{first.output}"
    assert out[3].content == f"{query}\n{COT_TRIGGERS[language]}"
    # The taught format round-trips through extraction.
    assert extract_answer(out[2].content, language) == Extracted(first.output, first.reasoning)


def test_few_shot_cot_without_exemplars_is_zero_shot_cot() -> None:
    messages = _messages("What is 6 * 7?")
    ctx = _ctx(examples=())
    assert FewShotCoT().apply(messages, ctx) == ZeroShotCoT().apply(messages, ctx)


def test_few_shot_cot_exemplar_without_reasoning_is_just_the_answer_line() -> None:
    out = FewShotCoT(k=1).apply(_messages("q"), _ctx("zh", (Example("问", "答"),)))
    assert out[2].content == "所以答案是：答"


# --- answer extraction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "language", "answer", "reasoning"),
    [
        ("3 * 4 = 12.\nTherefore, the answer is: 12.", "en", "12", "3 * 4 = 12."),
        (
            "2 盒共 12 支，加上 5 支是 17 支。\n所以答案是：17",
            "zh",
            "17",
            "2 盒共 12 支，加上 5 支是 17 支。",
        ),
        ("因此答案为 蓝色。", "zh", "蓝色", ""),
        ("Let me check.\n**Final Answer:** 8", "en", "8", "Let me check."),
        ("先算单价，再算总价。最终答案：21元", "zh", "21元", "先算单价，再算总价。"),
        ("Thinking...\nAnswer: blue", "en", "blue", "Thinking..."),
        ("分析如下。\n答案：支持", "zh", "支持", "分析如下。"),
        # Chinese marker in an English template: both languages are tried.
        ("Reasoning in English.\n所以答案是：42", "en", "42", "Reasoning in English."),
        # The last marker wins over a provisional one.
        ("Answer: 10? No, recount.\nAnswer: 11", "en", "11", "Answer: 10? No, recount."),
    ],
)
def test_extract_answer_splits_answer_and_reasoning(
    text: str, language: str, answer: str, reasoning: str
) -> None:
    assert extract_answer(text, language) == Extracted(answer, reasoning)


def test_extract_answer_falls_back_to_the_last_number_of_the_last_line() -> None:
    text = "Each pen costs 3 yuan.\n7 pens cost 3 * 7 = 21"
    assert extract_answer(text, "en") == Extracted("21", text)
    assert extract_answer("每小时 80 公里，3 小时共 240 公里", "zh").answer == "240"
    # Turned off (non-maths templates), the whole text is the answer.
    assert extract_answer(text, "en", number_fallback=False) == Extracted(text, "")


@pytest.mark.parametrize("text", ["  A warm, steel cup.  ", "这款保温杯很好用。", "42", ""])
def test_extract_answer_without_a_marker_returns_the_whole_text(text: str) -> None:
    assert extract_answer(text, "zh") == Extracted(text.strip(), "")


def test_extract_answer_rejects_an_unknown_language() -> None:
    with pytest.raises(ValueError, match="language"):
        extract_answer("x", "de")


# --- self-consistency -----------------------------------------------------------------------------


def test_self_consistency_delegates_apply_to_its_inner_strategy() -> None:
    messages = _messages("How many legs does a cat have?")
    ctx = _ctx()
    assert SelfConsistency(n=3).apply(messages, ctx) == FewShotCoT().apply(messages, ctx)
    assert SelfConsistency(inner=ZeroShotCoT()).apply(messages, ctx) == ZeroShotCoT().apply(messages, ctx)


def test_vote_takes_the_majority_of_extracted_answers_with_numeric_normalisation() -> None:
    samples = [
        "3 * 14 = 42\nTherefore, the answer is: 42",
        "所以答案是：４２",  # full-width digits
        "Answer: 41",
        "6 * 7 = 42.0",  # last-number fallback, compared numerically
        "Final answer: 41",
    ]
    result = SelfConsistency(n=5).vote(samples, "en")
    assert (result.answer, result.votes, result.total, result.index) == ("42", 3, 5, 0)
    assert result.agreement == pytest.approx(0.6)


def test_vote_ties_go_to_the_first_answer_seen() -> None:
    result = SelfConsistency().vote(["答案：蓝色", "答案：红色", "答案：红色。", "答案： 蓝色！"], "zh")
    assert (result.answer, result.votes, result.total) == ("蓝色", 2, 4)


def test_vote_compares_text_answers_without_case_punctuation_or_spaces() -> None:
    result = SelfConsistency().vote(["Answer: New York", "Answer: new-york!", "Answer: Boston"], "en")
    assert (result.answer, result.votes) == ("New York", 2)


def test_vote_over_nothing_has_no_answer() -> None:
    assert SelfConsistency().vote([]).votes == 0
    empty = SelfConsistency().vote(["", "  "])
    assert (empty.answer, empty.votes, empty.total, empty.agreement) == ("", 0, 2, 0.0)


@pytest.mark.parametrize(
    ("a", "b"), [("42", "42.0"), ("42", "４２"), ("1,000", "1000"), ("-0", "0"), ("$5", "5.00")]
)
def test_numbers_normalise_by_value(a: str, b: str) -> None:
    assert normalise_answer(a) == normalise_answer(b)
    assert normalise_answer("42") != normalise_answer("420")


# --- registry -------------------------------------------------------------------------------------


def test_build_strategy_builds_each_named_strategy() -> None:
    assert isinstance(build_strategy("none"), NoStrategy)
    assert isinstance(build_strategy("zero_shot_cot"), ZeroShotCoT)
    assert build_strategy("few_shot", selection="similar", k=2, token_budget=100) == FewShot(
        "similar", 2, 100
    )
    assert build_strategy("few_shot_cot", k=4) == FewShotCoT(k=4)
    sc = build_strategy("self_consistency", n=5, selection="similar", k=2, token_budget=600)
    assert sc == SelfConsistency(n=5, inner=FewShotCoT("similar", 2, 600))
    # The template spec calls n "samples".
    assert build_strategy("self_consistency", samples=3) == SelfConsistency(n=3)
    for name in ("none", "zero_shot_cot", "few_shot", "few_shot_cot", "self_consistency"):
        assert build_strategy(name).name == name


@pytest.mark.parametrize(
    ("name", "config", "field", "message"),
    [
        ("tree_of_thought", {}, "name", "tree_of_thought"),
        ("zero_shot_cot", {"k": 3}, "k", "'k'"),
        ("few_shot", {"samples": 3}, "samples", "'samples'"),
        ("few_shot", {"k": -1}, "k", "k"),
        ("self_consistency", {"n": 0}, "n", "n"),
        ("self_consistency", {"n": 17}, "n", "n"),
        ("self_consistency", {"n": 2, "samples": 2}, "samples", "samples"),
    ],
)
def test_build_strategy_rejects_unknown_names_and_bad_config(
    name: str, config: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as info:
        build_strategy(name, **config)
    assert isinstance(info.value, StrategyConfigError)
    assert info.value.field == field
