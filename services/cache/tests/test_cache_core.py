"""The exact cache over both stores: the in-process default and real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from aigc_cache.adapters.memory_store import MemoryStore
from aigc_cache.adapters.redis_store import RedisStore
from aigc_cache.core import CacheCore, CachedAnswer, Partition
from aigc_cache.metrics import CacheMetrics
from aigc_common.errors import InvalidArgument, Unavailable
from aigc_common.types import ChatMessage, Role, SamplingParams, Usage

MESSAGES = (ChatMessage(Role.SYSTEM, "Be brief."), ChatMessage(Role.USER, "长城有多长？"))
SAMPLING = SamplingParams(max_tokens=64, temperature=0.0)
ANSWER = CachedAnswer("大约两万一千公里。", Usage(20, 9))


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def core(request: pytest.FixtureRequest, unique_name: str) -> AsyncIterator[CacheCore]:
    if request.param == "redis":
        store: MemoryStore | RedisStore = RedisStore(request.getfixturevalue("redis_url"))
    else:
        store = MemoryStore()
    cache = CacheCore(
        store,
        CacheMetrics(CollectorRegistry()),
        key_prefix=f"{unique_name}:",
        default_ttl_seconds=60,
        max_answer_chars=100,
    )
    yield cache
    await cache.invalidate(Partition("acme"))
    await cache.invalidate(Partition("globex"))
    await cache.close()


async def test_hit_after_store_with_normalised_whitespace(core: CacheCore) -> None:
    part = Partition("acme", "b-1", "smollm2", "default@1")
    assert await core.lookup(part, MESSAGES, SAMPLING) is None
    assert await core.store(part, MESSAGES, SAMPLING, ANSWER)
    spaced = (MESSAGES[0], ChatMessage(Role.USER, "  长城有多长？ "))
    assert await core.lookup(part, spaced, SAMPLING) == ANSWER


async def test_partitions_never_leak(core: CacheCore) -> None:
    part = Partition("acme", "b-1", "smollm2", "default@1")
    await core.store(part, MESSAGES, SAMPLING, ANSWER)
    for other in (
        Partition("globex", "b-1", "smollm2", "default@1"),
        Partition("acme", "b-2", "smollm2", "default@1"),
        Partition("acme", "b-1", "other-model", "default@1"),
        Partition("acme", "b-1", "smollm2", "default@2"),
    ):
        assert await core.lookup(other, MESSAGES, SAMPLING) is None
    assert await core.lookup(part, MESSAGES, SamplingParams(max_tokens=64, temperature=0.5)) is None


async def test_invalidate_a_tenant(core: CacheCore) -> None:
    await core.store(Partition("acme", "b-1", "m", "p"), MESSAGES, SAMPLING, ANSWER)
    await core.store(Partition("acme", "b-2", "m", "p"), MESSAGES, SAMPLING, ANSWER)
    await core.store(Partition("globex", "b-1", "m", "p"), MESSAGES, SAMPLING, ANSWER)
    assert await core.invalidate(Partition("acme")) == 2
    assert await core.lookup(Partition("acme", "b-1", "m", "p"), MESSAGES, SAMPLING) is None
    assert await core.lookup(Partition("globex", "b-1", "m", "p"), MESSAGES, SAMPLING) == ANSWER


async def test_invalidate_every_version_of_one_template(core: CacheCore) -> None:
    # Bundle ids start with "<template>@<version>-": a template's answers go, all versions, others stay.
    copy_v1, copy_v2 = (
        Partition("acme", "product_copy@1-aa", "m", "p"),
        Partition("acme", "product_copy@2-bb", "m", "p"),
    )
    other = Partition("acme", "product_copy_zh@1-cc", "m", "p")
    for part in (copy_v1, copy_v2, other, Partition("globex", "product_copy@1-aa", "m", "p")):
        await core.store(part, MESSAGES, SAMPLING, ANSWER)
    assert await core.invalidate(Partition("acme"), template_id="product_copy") == 2
    assert await core.lookup(copy_v1, MESSAGES, SAMPLING) is None
    assert await core.lookup(copy_v2, MESSAGES, SAMPLING) is None
    assert await core.lookup(other, MESSAGES, SAMPLING) == ANSWER, (
        "a template whose id only starts alike stays"
    )
    assert await core.lookup(Partition("globex", "product_copy@1-aa", "m", "p"), MESSAGES, SAMPLING) == ANSWER
    with pytest.raises(InvalidArgument) as err:
        await core.invalidate(Partition("acme", "product_copy@1-aa"), template_id="product_copy")
    assert err.value.field == "template_id"


async def test_oversized_answers_are_not_stored(core: CacheCore) -> None:
    part = Partition("acme", "b-1", "m", "p")
    assert not await core.store(part, MESSAGES, SAMPLING, CachedAnswer("x" * 101, Usage(1, 101)))
    assert await core.lookup(part, MESSAGES, SAMPLING) is None


async def test_unreachable_redis_is_unavailable_with_a_hint() -> None:
    store = RedisStore("redis://127.0.0.1:1/0")
    with pytest.raises(Unavailable) as err:
        await store.ping()
    assert "stack-up" in str(err.value)
    await store.close()
