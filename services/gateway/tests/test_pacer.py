"""The pacer releases a job's staged items a window at a time: a fresh job gets its first window at
once, no more goes out until items are done, the window follows the job's throughput and its
priority, a cancelled job's rest goes out at once, and a failed publish loses nothing. Against the
memory store and Redis."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

import pytest
import pytest_asyncio

from aigc.events.v1 import events_pb2
from aigc_common.errors import Unavailable
from aigc_gateway.adapters.redis_jobs import RedisJobStore
from aigc_gateway.batch.pacer import Pacer
from aigc_gateway.jobs import JobRecord, JobStore, MemoryJobStore


class Clock:
    """Wall time that moves only when told: the stores stamp the first result with wall time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Publisher:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.fail = False

    async def publish(self, items: Sequence[events_pb2.GenerationRequested]) -> None:
        if self.fail:
            raise Unavailable("the broker is away")
        self.items += [f"{i.job_id}/{i.item_id}" for i in items]


@pytest_asyncio.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, unique_name: str) -> AsyncIterator[JobStore]:
    if request.param == "memory":
        yield MemoryJobStore()
        return
    redis_store = RedisJobStore(request.getfixturevalue("redis_url"), key_prefix=f"{unique_name}:")
    yield redis_store
    await redis_store.close()


async def _job(store: JobStore, job_id: str, total: int, priority: str = "normal") -> JobRecord:
    job = JobRecord(job_id, "acme", "chat", "production", "m", total=total, created_at=1.0, priority=priority)
    await store.create(job)
    await store.stage(
        job_id,
        [
            events_pb2.GenerationRequested(job_id=job_id, item_id=f"i{n:04d}").SerializeToString()
            for n in range(total)
        ],
    )
    return job


async def _finish(store: JobStore, job_id: str, published: list[str]) -> None:
    """Records a result for every published item of the job."""
    await store.record_many(
        [
            events_pb2.GenerationResult(job_id=job_id, item_id=key.split("/")[1], status="succeeded")
            for key in published
            if key.startswith(job_id + "/")
        ]
    )


async def test_the_first_window_goes_out_and_no_more_until_items_are_done(store: JobStore) -> None:
    clock, publisher = Clock(), Publisher()
    pacer = Pacer(store, publisher, min_window=10, horizon_s=5.0, clock=clock)
    job = await _job(store, "job-a", 1_000)

    assert await pacer.release(job) == 20  # min_window times the normal weight
    assert await pacer.release(job) == 0  # nothing is done yet: the window is full
    assert publisher.items == [f"job-a/i{n:04d}" for n in range(20)]
    assert (await store.status("job-a")).published == 20
    assert await store.unpublished_jobs() == ["job-a"]

    # 20 items done in the ~2 s since the first result: ~10/s, so 5 s of work (x2 normal) is ~100,
    # all of it free since the 20 published are done (a little more: the store stamped the first
    # result with real time, a few milliseconds after the test clock started).
    await _finish(store, "job-a", publisher.items)
    clock.now += 2.0
    released = await pacer.release(job)
    assert 100 <= released <= 110
    assert publisher.items[20:] == [f"job-a/i{n:04d}" for n in range(20, 20 + released)]


async def test_priority_weighs_the_window(store: JobStore) -> None:
    pacer = Pacer(store, Publisher(), min_window=8, clock=Clock())
    low, normal, high = [await _job(store, f"job-{p}", 500, p) for p in ("low", "normal", "high")]

    assert [await pacer.release(j) for j in (low, normal, high)] == [8, 16, 32]


async def test_a_cancelled_job_releases_the_rest_at_once_and_leaves_the_queue(store: JobStore) -> None:
    publisher = Publisher()
    pacer = Pacer(store, publisher, min_window=5, clock=Clock())
    job = await _job(store, "job-c", 60)
    await pacer.release(job)

    await store.cancel("job-c")
    assert await pacer.release(job) == 50
    assert sorted(publisher.items) == [f"job-c/i{n:04d}" for n in range(60)]  # each once
    assert await store.unpublished_jobs() == []
    assert await pacer.release(job) == 0


async def test_a_failed_publish_is_retried_with_the_same_items(store: JobStore) -> None:
    publisher = Publisher()
    pacer = Pacer(store, publisher, min_window=4, clock=Clock())
    job = await _job(store, "job-f", 30)
    publisher.fail = True

    with pytest.raises(Unavailable):
        await pacer.release(job)
    assert (await store.status("job-f")).published == 0

    publisher.fail = False
    assert await pacer.release(job) == 8
    assert publisher.items == [f"job-f/i{n:04d}" for n in range(8)]


async def test_the_window_never_exceeds_its_cap(store: JobStore) -> None:
    clock, publisher = Clock(), Publisher()
    pacer = Pacer(store, publisher, min_window=10, max_window=50, clock=clock)
    job = await _job(store, "job-x", 400)
    await pacer.release(job)
    await _finish(store, "job-x", publisher.items)
    clock.now += 0.01  # 20 done "at once": a huge rate

    assert await pacer.release(job) == 50


async def test_two_pacers_do_not_release_the_same_job_at_once(store: JobStore) -> None:
    if isinstance(store, MemoryJobStore):
        pytest.skip("the memory store belongs to one process; leases matter across replicas (Redis)")
    first, second = Publisher(), Publisher()
    job = await _job(store, "job-l", 100)

    assert await Pacer(store, first, min_window=5, clock=Clock()).release(job) == 10
    assert await Pacer(store, second, min_window=5, clock=Clock()).release(job) == 0
    assert second.items == []
