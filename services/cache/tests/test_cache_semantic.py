"""The semantic tier over both stores, with the real MiniLM embedder.

Partitions and conversations are hard boundaries: the same text never hits across them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from prometheus_client import CollectorRegistry

from aigc_cache.adapters.memory_store import MemoryStore
from aigc_cache.adapters.minilm_embedder import MiniLmEmbedder
from aigc_cache.adapters.redis_store import RedisStore
from aigc_cache.core import CacheCore, CachedAnswer, CacheTier, Partition
from aigc_cache.metrics import CacheMetrics
from aigc_common.errors import InvalidArgument
from aigc_common.types import ChatMessage, Role, SamplingParams, Usage

SYSTEM = ChatMessage(Role.SYSTEM, "You are the shop's customer-service assistant.")
SAMPLING = SamplingParams(max_tokens=128, temperature=0.0)
PART = Partition("acme", "cs-qa@3", "smollm2", "default@1")
ANSWER = CachedAnswer("Open Orders, pick the item and press Return.", Usage(30, 12))
THRESHOLD = 0.7


def ask(text: str, *earlier: ChatMessage) -> tuple[ChatMessage, ...]:
    return (SYSTEM, *earlier, ChatMessage(Role.USER, text))


RETURN = ask("How do I return an item I bought?")
RETURN_PARAPHRASE = ask("What is the process for returning a purchase?")
PASSWORD = ask("How do I reset my password?")


class Clock:
    """Wall time the test moves by hand (the core) and its monotonic twin (the memory store)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now - 1_700_000_000.0


CoreFactory = Callable[..., CacheCore]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def make_core(
    request: pytest.FixtureRequest, unique_name: str, embedder: MiniLmEmbedder
) -> AsyncIterator[CoreFactory]:
    """Builds replicas sharing one store (one memory store, or one Redis and key prefix)."""
    clock = Clock()
    shared = MemoryStore(clock=clock.monotonic)
    built: list[CacheCore] = []

    def make(registry: CollectorRegistry | None = None, **options: object) -> CacheCore:
        if request.param == "redis":
            store: MemoryStore | RedisStore = RedisStore(request.getfixturevalue("redis_url"))
        else:
            store = shared
        core = CacheCore(
            store,
            CacheMetrics(registry or CollectorRegistry()),
            key_prefix=f"{unique_name}:",
            default_ttl_seconds=600,
            max_answer_chars=1000,
            embedder=embedder,
            clock=clock.wall,
            **options,  # type: ignore[arg-type]
        )
        core.test_clock = clock  # type: ignore[attr-defined]
        built.append(core)
        return core

    yield make
    for tenant in ("acme", "globex"):
        await built[0].invalidate(Partition(tenant))
    for core in built:
        await core.close()


def semantic_count(registry: CollectorRegistry, result: str) -> float:
    return (
        registry.get_sample_value("aigc_cache_requests_total", {"tier": "semantic", "result": result}) or 0.0
    )


async def test_a_paraphrase_hits_with_its_similarity(make_core: CoreFactory) -> None:
    registry = CollectorRegistry()
    core = make_core(registry)
    assert await core.store(PART, RETURN, SAMPLING, ANSWER)
    found = await core.lookup(PART, RETURN_PARAPHRASE, SAMPLING, semantic_threshold=THRESHOLD)
    assert found == ANSWER
    assert found is not None and found.tier == CacheTier.SEMANTIC
    assert THRESHOLD <= found.similarity < 1.0
    exact = await core.lookup(PART, RETURN, SAMPLING, semantic_threshold=THRESHOLD)
    assert exact is not None and exact.tier == CacheTier.EXACT and exact.similarity == 1.0
    assert semantic_count(registry, "hit") == 1


async def test_a_different_question_in_the_partition_misses(make_core: CoreFactory) -> None:
    registry = CollectorRegistry()
    core = make_core(registry)
    await core.store(PART, RETURN, SAMPLING, ANSWER)
    assert await core.lookup(PART, PASSWORD, SAMPLING, semantic_threshold=THRESHOLD) is None
    assert semantic_count(registry, "miss") == 1


async def test_a_threshold_above_the_similarity_misses(make_core: CoreFactory) -> None:
    core = make_core()
    await core.store(PART, RETURN, SAMPLING, ANSWER)
    found = await core.lookup(PART, RETURN_PARAPHRASE, SAMPLING, semantic_threshold=THRESHOLD)
    assert found is not None
    above = min(1.0, found.similarity + 0.01)
    assert await core.lookup(PART, RETURN_PARAPHRASE, SAMPLING, semantic_threshold=above) is None


async def test_partitions_never_leak_even_for_the_identical_text(make_core: CoreFactory) -> None:
    core = make_core()
    await core.store(PART, RETURN, SAMPLING, ANSWER)
    for other in (
        Partition("globex", "cs-qa@3", "smollm2", "default@1"),
        Partition("acme", "cs-qa@4", "smollm2", "default@1"),
        Partition("acme", "cs-qa@3", "other-model", "default@1"),
        Partition("acme", "cs-qa@3", "smollm2", "default@2"),
    ):
        for messages in (RETURN, RETURN_PARAPHRASE):
            assert await core.lookup(other, messages, SAMPLING, semantic_threshold=0.01) is None


async def test_only_the_same_earlier_conversation_hits(make_core: CoreFactory) -> None:
    core = make_core()
    laptop = (ChatMessage(Role.USER, "I bought a laptop."), ChatMessage(Role.ASSISTANT, "Great choice!"))
    phone = (ChatMessage(Role.USER, "I bought a phone."), ChatMessage(Role.ASSISTANT, "Great choice!"))
    await core.store(PART, ask("How do I return an item I bought?", *laptop), SAMPLING, ANSWER)
    assert await core.lookup(PART, RETURN_PARAPHRASE, SAMPLING, semantic_threshold=THRESHOLD) is None
    paraphrase_after_phone = ask("What is the process for returning a purchase?", *phone)
    assert await core.lookup(PART, paraphrase_after_phone, SAMPLING, semantic_threshold=THRESHOLD) is None
    other_system = (ChatMessage(Role.SYSTEM, "You are a pirate."), *RETURN_PARAPHRASE[1:])
    assert await core.lookup(PART, other_system, SAMPLING, semantic_threshold=THRESHOLD) is None
    paraphrase_after_laptop = ask("What is the process for returning a purchase?", *laptop)
    assert await core.lookup(PART, paraphrase_after_laptop, SAMPLING, semantic_threshold=THRESHOLD) == ANSWER


async def test_other_sampling_parameters_miss(make_core: CoreFactory) -> None:
    core = make_core()
    await core.store(PART, RETURN, SAMPLING, ANSWER)
    longer = SamplingParams(max_tokens=512, temperature=0.0)
    assert await core.lookup(PART, RETURN_PARAPHRASE, longer, semantic_threshold=THRESHOLD) is None


async def test_expired_entries_miss_and_are_dropped(make_core: CoreFactory) -> None:
    core = make_core()
    await core.store(PART, RETURN, SAMPLING, ANSWER, ttl_seconds=30)
    core.test_clock.now += 29  # type: ignore[attr-defined]
    assert await core.lookup(PART, RETURN_PARAPHRASE, SAMPLING, semantic_threshold=THRESHOLD) == ANSWER
    core.test_clock.now += 2  # type: ignore[attr-defined]
    assert await core.lookup(PART, RETURN_PARAPHRASE, SAMPLING, semantic_threshold=THRESHOLD) is None
    # Dropped from the store, so a replica starting now does not even load it.
    fresh = make_core()
    read = await fresh._store.semantic_read(fresh._semantic_key(PART, fresh._embedder), None, 0)  # type: ignore[arg-type]
    assert read.records == {}


async def test_threshold_zero_is_exact_only(make_core: CoreFactory) -> None:
    registry = CollectorRegistry()
    core = make_core(registry)
    await core.store(PART, RETURN, SAMPLING, ANSWER)
    assert await core.lookup(PART, RETURN_PARAPHRASE, SAMPLING) is None
    assert await core.lookup(PART, RETURN_PARAPHRASE, SAMPLING, semantic_threshold=0.0) is None
    assert await core.lookup(PART, RETURN, SAMPLING) == ANSWER
    assert semantic_count(registry, "miss") == semantic_count(registry, "hit") == 0


async def test_a_threshold_outside_0_to_1_is_invalid(make_core: CoreFactory) -> None:
    core = make_core()
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(InvalidArgument) as err:
            await core.lookup(PART, RETURN, SAMPLING, semantic_threshold=bad)
        assert err.value.field == "semantic_threshold"


async def test_invalidation_removes_semantic_entries_on_every_replica(make_core: CoreFactory) -> None:
    writer, other = make_core(), make_core()
    await writer.store(PART, RETURN, SAMPLING, ANSWER)
    await writer.store(Partition("acme", "cs-qa@4", "smollm2", "default@1"), RETURN, SAMPLING, ANSWER)
    await writer.store(Partition("globex", "cs-qa@3", "smollm2", "default@1"), RETURN, SAMPLING, ANSWER)
    assert await other.lookup(PART, RETURN_PARAPHRASE, SAMPLING, semantic_threshold=THRESHOLD) == ANSWER

    assert await writer.invalidate(Partition("acme", "cs-qa@3")) == 1
    for core in (writer, other):
        assert await core.lookup(PART, RETURN_PARAPHRASE, SAMPLING, semantic_threshold=THRESHOLD) is None
    bundle_4 = Partition("acme", "cs-qa@4", "smollm2", "default@1")
    assert await other.lookup(bundle_4, RETURN_PARAPHRASE, SAMPLING, semantic_threshold=THRESHOLD) == ANSWER

    assert await writer.invalidate(Partition("acme")) == 1
    assert await other.lookup(bundle_4, RETURN_PARAPHRASE, SAMPLING, semantic_threshold=THRESHOLD) is None
    globex = Partition("globex", "cs-qa@3", "smollm2", "default@1")
    assert await other.lookup(globex, RETURN_PARAPHRASE, SAMPLING, semantic_threshold=THRESHOLD) == ANSWER

    # A store after the invalidation is seen, and the invalidated entry does not come back.
    await writer.store(PART, PASSWORD, SAMPLING, CachedAnswer("Use 'Forgot password'.", Usage(9, 5)))
    assert await other.lookup(PART, RETURN_PARAPHRASE, SAMPLING, semantic_threshold=THRESHOLD) is None
    found = await other.lookup(
        PART, ask("I forgot my password, how can I reset it?"), SAMPLING, semantic_threshold=THRESHOLD
    )
    assert found is not None and found.answer == "Use 'Forgot password'."


async def test_a_replica_sees_entries_stored_by_another(make_core: CoreFactory) -> None:
    first, second = make_core(), make_core()
    # The second replica builds its (empty) index before anything is stored, then follows the log.
    assert await second.lookup(PART, RETURN_PARAPHRASE, SAMPLING, semantic_threshold=THRESHOLD) is None
    await first.store(PART, RETURN, SAMPLING, ANSWER)
    assert await second.lookup(PART, RETURN_PARAPHRASE, SAMPLING, semantic_threshold=THRESHOLD) == ANSWER
    reset = CachedAnswer("Use 'Forgot password'.", Usage(9, 5))
    await first.store(PART, PASSWORD, SAMPLING, reset)
    found = await second.lookup(
        PART, ask("I forgot my password, how can I reset it?"), SAMPLING, semantic_threshold=THRESHOLD
    )
    assert found == reset


async def test_the_oldest_entries_are_evicted_beyond_the_limit(make_core: CoreFactory) -> None:
    core = make_core(semantic_max_entries=3)
    questions = [
        "How do I return an item I bought?",
        "How do I reset my password?",
        "When will my order be delivered?",
        "Can I pay with a credit card?",
    ]
    for i, question in enumerate(questions):
        await core.store(PART, ask(question), SAMPLING, CachedAnswer(f"answer {i}", Usage(1, 1)))
    reader = make_core()
    assert await reader.lookup(PART, RETURN_PARAPHRASE, SAMPLING, semantic_threshold=THRESHOLD) is None
    found = await reader.lookup(
        PART, ask("Is it possible to pay by credit card?"), SAMPLING, semantic_threshold=THRESHOLD
    )
    assert found is not None and found.answer == "answer 3"
    # The exact tier still has the evicted entry: only its vector went.
    assert await reader.lookup(PART, RETURN, SAMPLING) == CachedAnswer("answer 0", Usage(1, 1))


async def test_a_vector_whose_answer_is_gone_misses(embedder: MiniLmEmbedder) -> None:
    # The memory store's answer LRU (2 entries here) evicts an answer while its vector remains.
    store = MemoryStore(max_entries=2)
    core = CacheCore(
        store,
        CacheMetrics(CollectorRegistry()),
        key_prefix="t:",
        default_ttl_seconds=60,
        max_answer_chars=1000,
        embedder=embedder,
    )
    await core.store(PART, RETURN, SAMPLING, ANSWER)
    await core.store(PART, PASSWORD, SAMPLING, ANSWER)
    await core.store(PART, ask("When will my order be delivered?"), SAMPLING, ANSWER)
    assert await core.lookup(PART, RETURN_PARAPHRASE, SAMPLING, semantic_threshold=THRESHOLD) is None
    read = await store.semantic_read(core._semantic_key(PART, embedder), None, 0)
    assert len(read.records) == 2


async def test_semantic_tier_needs_a_user_turn_last(make_core: CoreFactory) -> None:
    core = make_core()
    await core.store(PART, RETURN, SAMPLING, ANSWER)
    prefilled = (*RETURN_PARAPHRASE, ChatMessage(Role.ASSISTANT, "Sure:"))
    assert await core.lookup(PART, prefilled, SAMPLING, semantic_threshold=THRESHOLD) is None


async def test_without_an_embedder_a_threshold_means_exact_only() -> None:
    core = CacheCore(
        MemoryStore(),
        CacheMetrics(CollectorRegistry()),
        key_prefix="t:",
        default_ttl_seconds=60,
        max_answer_chars=99,
    )
    assert not core.semantic_enabled
    await core.store(PART, RETURN, SAMPLING, ANSWER)
    assert await core.lookup(PART, RETURN_PARAPHRASE, SAMPLING, semantic_threshold=THRESHOLD) is None
    assert await core.lookup(PART, RETURN, SAMPLING, semantic_threshold=THRESHOLD) == ANSWER
