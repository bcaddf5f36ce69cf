"""Job stores, in memory and in Redis: the tracker records a whole poll of results at once, and the
first result of an item wins even when the same item arrives twice in one poll or across polls."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from aigc.common.v1 import common_pb2
from aigc.events.v1 import events_pb2
from aigc_gateway.adapters.redis_jobs import RedisJobStore
from aigc_gateway.jobs import JobRecord, JobStore, MemoryJobStore


@pytest_asyncio.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, unique_name: str) -> AsyncIterator[JobStore]:
    if request.param == "memory":
        yield MemoryJobStore()
        return
    redis_url = request.getfixturevalue("redis_url")
    redis_store = RedisJobStore(redis_url, key_prefix=f"{unique_name}:")
    yield redis_store
    await redis_store.close()


def _result(
    item: str, status: str = "succeeded", cost: int = 1_000, text: str = ""
) -> events_pb2.GenerationResult:
    return events_pb2.GenerationResult(
        job_id="job-1",
        item_id=item,
        tenant_id="acme",
        status=status,
        text=text or f"answer {item}",
        cost=common_pb2.Cost(currency="CNY", amount_nanos=cost),
    )


async def test_a_poll_with_repeats_records_each_item_once(store: JobStore) -> None:
    await store.create(JobRecord("job-1", "acme", "chat", "production", "m", total=3, created_at=1.0))

    first = await store.record_many(
        [_result("a"), _result("b", "failed", 0), _result("a", text="second answer for a")]
    )
    again = await store.record_many([_result("b"), _result("c", cost=500)])

    assert first == [True, True, False]
    assert again == [False, True]
    status = await store.status("job-1")
    assert status.counts == {"succeeded": 2, "failed": 1}
    assert status.cost_nanos == 1_500  # a and c; the repeat of a and the late success of b add nothing
    kept = await store.results("job-1", 0, 10)
    assert [(r.item_id, r.status, r.text) for r in kept] == [
        ("a", "succeeded", "answer a"),
        ("b", "failed", "answer b"),
        ("c", "succeeded", "answer c"),
    ]
    assert await store.record_many([]) == []
