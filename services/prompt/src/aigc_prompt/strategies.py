"""Chain-of-thought and few-shot strategies of the prompt runtime, as plain objects.

A strategy rewrites the rendered messages of a template (adds exemplars, a reasoning trigger) and,
for self-consistency, votes over several sampled completions. Everything here is pure: no gRPC, no
I/O, no clock; randomness comes only from ``StrategyContext.seed`` so a render is reproducible.

The answer format that few-shot chain of thought teaches the model ("Therefore, the answer is: X" /
"所以答案是：X") is the same one ``extract_answer`` parses, so the gateway can hide the reasoning
from the caller and self-consistency can compare final answers.
"""

from __future__ import annotations

import math
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Protocol, overload

from aigc_common.types import ChatMessage, Role

LANGUAGES = ("zh", "en")
SELECTIONS = ("fixed", "random", "similar")

# Zero-shot CoT trigger (Kojima et al. 2022) and its usual Chinese rendering.
COT_TRIGGERS: dict[str, str] = {
    "en": "Let's think step by step.",
    "zh": "让我们一步一步地思考。",
}
# What few-shot CoT exemplars end with; ``extract_answer`` looks for exactly this first.
ANSWER_PREFIXES: dict[str, str] = {
    "en": "Therefore, the answer is: ",
    "zh": "所以答案是：",
}

# Upper bounds mirror ``templates.StrategySpec`` so a spec that loads always builds.
MAX_K = 32
MAX_SAMPLES = 16


class StrategyConfigError(ValueError):
    """Bad strategy configuration; ``field`` names the offending key (for InvalidArgument)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Example:
    """One few-shot exemplar; ``reasoning`` is only shown by few-shot chain of thought."""

    input: str
    output: str
    reasoning: str = ""


@dataclass(frozen=True, slots=True)
class StrategyContext:
    """What a strategy may look at besides the messages."""

    language: str
    examples: Sequence[Example]
    query: str
    count_tokens: Callable[[str], int]
    seed: int = 0

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise StrategyConfigError(f"must be one of {LANGUAGES}, got {self.language!r}", field="language")


class Strategy(Protocol):
    """Rewrites rendered messages; must not mutate its input (messages are tuples)."""

    @property
    def name(self) -> str: ...

    def apply(self, messages: tuple[ChatMessage, ...], ctx: StrategyContext) -> tuple[ChatMessage, ...]: ...


def _last_user_index(messages: tuple[ChatMessage, ...]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role is Role.USER:
            return i
    # A template without a user turn has nothing to reason about: an authoring bug, so fail loudly.
    raise StrategyConfigError("no user message to apply the strategy to", field="messages")


def _with_trigger(messages: tuple[ChatMessage, ...], language: str) -> tuple[ChatMessage, ...]:
    i = _last_user_index(messages)
    trigger = COT_TRIGGERS[language]
    content = messages[i].content.rstrip()
    if content.endswith(trigger):  # already there (template author wrote it): don't say it twice
        return messages
    updated = ChatMessage(Role.USER, f"{content}\n{trigger}" if content else trigger)
    return (*messages[:i], updated, *messages[i + 1 :])


@dataclass(frozen=True, slots=True)
class NoStrategy:
    """Leaves the messages as rendered."""

    name: ClassVar[str] = "none"

    def apply(self, messages: tuple[ChatMessage, ...], ctx: StrategyContext) -> tuple[ChatMessage, ...]:
        return messages


@dataclass(frozen=True, slots=True)
class ZeroShotCoT:
    """Appends the localised "think step by step" trigger to the last user message."""

    name: ClassVar[str] = "zero_shot_cot"

    def apply(self, messages: tuple[ChatMessage, ...], ctx: StrategyContext) -> tuple[ChatMessage, ...]:
        return _with_trigger(messages, ctx.language)


# --- similarity -----------------------------------------------------------------------------------


def _bigrams(text: str) -> Counter[str]:
    # Character bigrams work for Chinese (no spaces between words) and English alike, need no
    # tokenizer or model, and tolerate inflection ("apple"/"apples" share most bigrams).
    norm = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    if len(norm) == 1:
        return Counter([norm])
    return Counter(g for g in (norm[i : i + 2] for i in range(len(norm) - 1)) if not g.isspace())


def _cosine(ca: Counter[str], na: float, cb: Counter[str], nb: float) -> float:
    if not na or not nb:
        return 0.0
    if len(cb) < len(ca):
        ca, cb = cb, ca
    return sum(n * cb[g] for g, n in ca.items()) / (na * nb)


def _norm(c: Counter[str]) -> float:
    return math.sqrt(sum(n * n for n in c.values()))


def similarity(a: str, b: str) -> float:
    """Cosine similarity of character-bigram counts, in [0, 1]."""
    ca, cb = _bigrams(a), _bigrams(b)
    return _cosine(ca, _norm(ca), cb, _norm(cb))


class ExamplePool(Sequence[Example]):
    """Exemplars with their bigram vectors computed once, so ``similar`` selection over a tenant's
    example store costs one vector for the query plus a sparse dot product per exemplar."""

    def __init__(self, examples: Sequence[Example]) -> None:
        self._examples = tuple(examples)
        self._vectors = [(v, _norm(v)) for v in (_bigrams(e.input) for e in self._examples)]

    def __len__(self) -> int:
        return len(self._examples)

    @overload
    def __getitem__(self, i: int) -> Example: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Example]: ...
    def __getitem__(self, i: int | slice) -> Example | Sequence[Example]:
        return self._examples[i]

    def scores(self, query: str) -> list[float]:
        """Similarity of ``query`` to each exemplar's input, in pool order."""
        q = _bigrams(query)
        nq = _norm(q)
        return [_cosine(q, nq, v, n) for v, n in self._vectors]


# --- few-shot -------------------------------------------------------------------------------------


def _check_int(value: object, field: str, low: int, high: int | None) -> None:
    # bool is an int subclass; `k: true` in YAML is a mistake, not k=1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise StrategyConfigError(f"must be an integer, got {value!r}", field=field)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise StrategyConfigError(f"must be {bound}, got {value}", field=field)


@dataclass(frozen=True, slots=True)
class FewShot:
    """Inserts up to ``k`` exemplars as user/assistant turns before the last user message.

    Exemplars are ranked by relevance (``fixed``: template order; ``random``: seeded draw order;
    ``similar``: bigram similarity to the query), then kept greedily while their text fits
    ``token_budget``, so the least relevant are the ones dropped. They are placed with the most
    relevant last, closest to the query, where models weight them most.
    """

    name: ClassVar[str] = "few_shot"

    selection: str = "fixed"
    k: int = 3
    token_budget: int = 1024

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise StrategyConfigError(
                f"must be one of {SELECTIONS}, got {self.selection!r}", field="selection"
            )
        _check_int(self.k, "k", 1, MAX_K)
        _check_int(self.token_budget, "token_budget", 1, None)

    def assistant_turn(self, example: Example, language: str) -> str:
        """What the assistant says in an exemplar: here just the output."""
        return example.output

    def ranked(self, ctx: StrategyContext) -> list[Example]:
        """Candidates, most relevant first (before the ``k`` cut and the budget)."""
        examples = list(ctx.examples)
        if self.selection == "random":
            return random.Random(ctx.seed).sample(examples, len(examples))
        if self.selection == "similar":
            pool = ctx.examples
            scores = (
                pool.scores(ctx.query)
                if isinstance(pool, ExamplePool)
                else [similarity(ctx.query, e.input) for e in examples]
            )
            # Stable sort: equally similar exemplars keep template order.
            order = sorted(range(len(examples)), key=lambda i: -scores[i])
            return [examples[i] for i in order]
        return examples

    def select(self, ctx: StrategyContext) -> list[tuple[Example, str]]:
        """The exemplars to show with their assistant turns, most relevant first."""
        chosen: list[tuple[Example, str]] = []
        used = 0
        for example in self.ranked(ctx)[: self.k]:
            answer = self.assistant_turn(example, ctx.language)
            cost = ctx.count_tokens(example.input) + ctx.count_tokens(answer)
            if used + cost <= self.token_budget:
                chosen.append((example, answer))
                used += cost
        return chosen

    def apply(self, messages: tuple[ChatMessage, ...], ctx: StrategyContext) -> tuple[ChatMessage, ...]:
        i = _last_user_index(messages)
        turns: list[ChatMessage] = []
        for example, answer in reversed(self.select(ctx)):
            turns += [ChatMessage(Role.USER, example.input), ChatMessage(Role.ASSISTANT, answer)]
        return (*messages[:i], *turns, *messages[i:])


@dataclass(frozen=True, slots=True)
class FewShotCoT(FewShot):
    """Few-shot whose exemplars show their reasoning and end in the parseable answer line.

    With no exemplars available this is exactly ``ZeroShotCoT``.
    """

    name: ClassVar[str] = "few_shot_cot"

    def assistant_turn(self, example: Example, language: str) -> str:
        """Reasoning, then the localised answer line that ``extract_answer`` parses."""
        answer = f"{ANSWER_PREFIXES[language]}{example.output}"
        reasoning = example.reasoning.strip()
        return f"{reasoning}\n{answer}" if reasoning else answer

    def apply(self, messages: tuple[ChatMessage, ...], ctx: StrategyContext) -> tuple[ChatMessage, ...]:
        return _with_trigger(FewShot.apply(self, messages, ctx), ctx.language)


# --- answer extraction ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Extracted:
    """A completion split into the final answer and the reasoning that led to it."""

    answer: str
    reasoning: str


_B = r"\**"  # markdown bold around markers ("**Final answer:** 42") is common in model output
# Tiers, most specific first; within a tier the last marker in the text wins, because models
# often restate a provisional answer before the final one.
_ANSWER_MARKERS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(tier, re.IGNORECASE)
    for tier in (
        # The format few-shot CoT teaches.
        rf"{_B}\b(?:therefore|thus|hence|so),?\s+the\s+(?:final\s+)?answer\s+is{_B}\s*[:：]?{_B}\s*"
        rf"|{_B}(?:所以|因此|故)(?:最终)?答案(?:是|为){_B}\s*[:：]?{_B}\s*",
        # "Final answer: X" / "最终答案：X".
        rf"{_B}\b(?:the\s+)?final\s+answer{_B}\s*(?:is\s*[:：]?|[:：]){_B}\s*"
        rf"|{_B}最终答案{_B}\s*(?:是|为)?\s*[:：]?{_B}\s*",
        # "Answer: X", "The answer is X" / "答案：X", "答案是X".
        rf"{_B}\b(?:the\s+)?answer{_B}\s*(?:is\s*[:：]?|[:：]){_B}\s*"
        rf"|{_B}答案{_B}\s*(?:是|为)?\s*[:：]{_B}\s*|{_B}答案(?:是|为)\s*",
    )
)
_NUMBER = re.compile(r"[-+]?\d+(?:[,，]\d{3})*(?:\.\d+)?")


def _clean_answer(text: str) -> str:
    answer = text.strip().strip("*").strip()
    if "\n" not in answer:
        # The sentence full stop belongs to the format, not to the answer ("42." is 42).
        answer = answer.rstrip(".。").rstrip()
    return answer


def extract_answer(text: str, language: str, *, number_fallback: bool = True) -> Extracted:
    """Splits ``text`` into final answer and reasoning.

    Looks for "Therefore, the answer is:" / "所以答案是：", then "Final answer" / "最终答案", then
    "Answer:" / "答案：". Markers of both languages are tried whatever ``language`` says (it is only
    validated), because models switch language mid-answer. Without a
    marker, the last number of the last line is the answer when ``number_fallback`` is on (maths
    completions that ran out of format); otherwise the whole text is the answer, no reasoning.
    """
    if language not in LANGUAGES:
        raise StrategyConfigError(f"must be one of {LANGUAGES}, got {language!r}", field="language")
    stripped = text.strip()
    for marker in _ANSWER_MARKERS:
        matches = list(marker.finditer(stripped))
        if matches:
            last = matches[-1]
            answer = _clean_answer(stripped[last.end() :])
            if answer:
                return Extracted(answer, stripped[: last.start()].strip())
    if number_fallback and stripped:
        numbers = _NUMBER.findall(stripped.splitlines()[-1])
        if numbers and numbers[-1] != stripped:
            return Extracted(numbers[-1], stripped)
    return Extracted(stripped, "")


# --- self-consistency -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VoteResult:
    """The majority answer of several samples; ``index`` is the first sample that gave it."""

    answer: str
    votes: int
    total: int
    agreement: float
    index: int = -1


def normalise_answer(answer: str) -> str:
    """The form answers are compared in: NFKC, casefolded, no punctuation or spaces, numbers by value."""
    text = unicodedata.normalize("NFKC", answer).casefold().strip()
    number = text.replace(",", "").replace(" ", "").rstrip(".。").lstrip("$¥€£")
    if _NUMBER.fullmatch(number):
        try:
            value = Decimal(number)
        except InvalidOperation:  # pragma: no cover - the regex only admits valid decimals
            value = None
        if value is not None:
            # "42", "42.0" and "+42" are one answer; 0 and -0 too.
            return "#" + str(value.normalize() if value else Decimal(0))
    return "".join(c for c in text if unicodedata.category(c)[0] not in "PZC" and not c.isspace())


@dataclass(frozen=True, slots=True)
class SelfConsistency:
    """Samples ``n`` reasoning paths with the inner strategy's prompt and majority-votes the answers.

    ``apply`` only shapes the prompt (the gateway asks the engine for ``n`` samples at a non-zero
    temperature); ``vote`` picks the answer. The default inner strategy is ``FewShotCoT``, which
    falls back to ``ZeroShotCoT`` behaviour when the template has no exemplars.
    """

    name: ClassVar[str] = "self_consistency"

    n: int = 5
    inner: Strategy = FewShotCoT()

    def __post_init__(self) -> None:
        _check_int(self.n, "n", 1, MAX_SAMPLES)

    def apply(self, messages: tuple[ChatMessage, ...], ctx: StrategyContext) -> tuple[ChatMessage, ...]:
        return self.inner.apply(messages, ctx)

    def vote(self, answers: Sequence[str], language: str = "zh") -> VoteResult:
        """Majority vote over the final answers of ``answers`` (full completions); ties go to the
        answer that appeared first. Samples without an answer count in ``total`` but never win."""
        keys: list[str] = []
        extracted: list[str] = []
        for text in answers:
            answer = extract_answer(text, language).answer
            extracted.append(answer)
            keys.append(normalise_answer(answer))
        counts = Counter(k for k in keys if k)
        total = len(answers)
        if not counts:
            return VoteResult("", 0, total, 0.0)
        first = {k: keys.index(k) for k in counts}
        winner = max(counts, key=lambda k: (counts[k], -first[k]))
        return VoteResult(
            extracted[first[winner]], counts[winner], total, counts[winner] / total, first[winner]
        )


# --- registry -------------------------------------------------------------------------------------

_FEW_SHOT_KEYS = frozenset({"selection", "k", "token_budget"})
_KEYS: dict[str, frozenset[str]] = {
    "none": frozenset(),
    "zero_shot_cot": frozenset(),
    "few_shot": _FEW_SHOT_KEYS,
    "few_shot_cot": _FEW_SHOT_KEYS,
    # ``samples`` is the name the template spec (StrategySpec) uses for ``n``.
    "self_consistency": _FEW_SHOT_KEYS | {"n", "samples"},
}
STRATEGY_NAMES: tuple[str, ...] = tuple(_KEYS)


def build_strategy(name: str, **config: Any) -> Strategy:
    """The strategy called ``name`` with ``config``; unknown names and keys are ``ValueError``."""
    allowed = _KEYS.get(name)
    if allowed is None:
        raise StrategyConfigError(f"unknown strategy {name!r}; known: {STRATEGY_NAMES}", field="name")
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise StrategyConfigError(f"strategy {name!r} takes no option {unknown[0]!r}", field=unknown[0])
    if name == "none":
        return NoStrategy()
    if name == "zero_shot_cot":
        return ZeroShotCoT()
    few_shot = {key: config[key] for key in _FEW_SHOT_KEYS & set(config)}
    if name == "few_shot":
        return FewShot(**few_shot)
    if name == "few_shot_cot":
        return FewShotCoT(**few_shot)
    if "n" in config and "samples" in config:
        raise StrategyConfigError("give either n or samples, not both", field="samples")
    n = config.get("n", config.get("samples", 5))
    return SelfConsistency(n=n, inner=FewShotCoT(**few_shot))
