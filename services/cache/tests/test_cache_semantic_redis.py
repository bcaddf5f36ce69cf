"""The semantic tier's Redis layout: replicas, restarts, set expiry and concurrent compaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from aigc_cache.adapters.minilm_embedder import MiniLmEmbedder
from aigc_cache.adapters.redis_store import RedisStore
from aigc_cache.core import CacheCore, CachedAnswer, CacheTier, Partition
from aigc_cache.metrics import CacheMetrics
from aigc_common.types import ChatMessage, Role, SamplingParams, Usage

pytestmark = pytest.mark.integration

SAMPLING = SamplingParams(max_tokens=64, temperature=0.0)
PART = Partition("acme", "cs-qa@3", "smollm2", "default@1")


def ask(text: str) -> tuple[ChatMessage, ...]:
    return (ChatMessage(Role.SYSTEM, "Be brief."), ChatMessage(Role.USER, text))


Replica = Callable[..., CacheCore]


@pytest.fixture
async def replica(redis_url: str, unique_name: str, embedder: MiniLmEmbedder) -> AsyncIterator[Replica]:
    """Builds cache replicas, each with its own Redis connection, under one key prefix."""
    built: list[CacheCore] = []

    def make(**options: object) -> CacheCore:
        core = CacheCore(
            RedisStore(redis_url),
            CacheMetrics(CollectorRegistry()),
            key_prefix=f"{unique_name}:",
            default_ttl_seconds=600,
            max_answer_chars=1000,
            embedder=embedder,
            **options,  # type: ignore[arg-type]
        )
        built.append(core)
        return core

    yield make
    cleaner = make()
    await cleaner.invalidate(Partition("acme"))
    for core in built:
        await core.close()


async def test_a_restarted_replica_rebuilds_from_redis(replica: Replica) -> None:
    first = replica()
    answer = CachedAnswer("Open Orders and press Return.", Usage(20, 8))
    await first.store(PART, ask("How do I return an item I bought?"), SAMPLING, answer)
    assert await first.lookup(PART, ask("How can I send back a purchase?"), SAMPLING, semantic_threshold=0.6)
    await first.close()

    restarted = replica()
    found = await restarted.lookup(
        PART, ask("What is the process for returning a purchase?"), SAMPLING, semantic_threshold=0.7
    )
    assert found == answer
    assert found is not None and found.tier == CacheTier.SEMANTIC


async def test_a_set_lives_as_long_as_its_longest_entry(
    replica: Replica, redis_url: str, unique_name: str
) -> None:
    core = replica()
    await core.store(
        PART, ask("How do I return an item I bought?"), SAMPLING, CachedAnswer("a", Usage()), 300
    )
    await core.store(PART, ask("How do I reset my password?"), SAMPLING, CachedAnswer("b", Usage()), 100)
    client = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{unique_name}:cache-sem:*")]
        assert {k.decode().rsplit(":", 1)[1] for k in keys} == {"records", "log", "epoch"}
        for key in keys:
            assert 290 <= await client.ttl(key) <= 300
    finally:
        await client.aclose()  # type: ignore[attr-defined]


async def test_concurrent_stores_on_two_replicas_stay_within_the_limit(replica: Replica) -> None:
    # Two writers race through compaction (WATCH/MULTI); a third replica must end up with an
    # index equal to what Redis holds, and the newest entries must survive.
    left, right, reader = replica(semantic_max_entries=10), replica(semantic_max_entries=10), replica()
    topics = [f"topic number {i}: how do I configure feature {i}?" for i in range(24)]

    async def store(core: CacheCore, i: int) -> None:
        await core.store(PART, ask(topics[i]), SAMPLING, CachedAnswer(f"answer {i}", Usage(1, 1)))

    for start in range(0, 24, 4):
        await asyncio.gather(*(store(left if i % 2 else right, i) for i in range(start, start + 4)))
    assert reader._embedder is not None
    key = reader._semantic_key(PART, reader._embedder)
    stored = await reader._store.semantic_read(key, None, 0)
    assert 1 <= len(stored.records) <= 10
    last = await reader.lookup(PART, ask(topics[23]), SamplingParams(max_tokens=64, temperature=0.0))
    assert last is not None  # exact tier
    found = await reader.lookup(PART, ask(topics[23] + " Please"), SAMPLING, semantic_threshold=0.8)
    assert found is not None and found.answer == "answer 23"
    index = reader._indexes[key]
    assert {i for g in index.groups.values() for i in g.rows} == set(stored.records)
