"""A lost job store is rebuilt from Kafka: mid-job, every key of the Redis job store is deleted; a
tracker and a restorer with fresh consumer groups re-create the job from the job log and re-record
the results, the pacer releases what was left, and the job completes with one result per item."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from aigc_gateway.adapters.redis_jobs import RedisJobStore
from aigc_gateway.batch.service import BatchRequest
from aigc_gateway.tenants import Tenant, TenantSpec

from .batch_helpers import batch_rig

pytestmark = pytest.mark.integration

ITEMS = 2_500  # three job-log chunks


async def test_the_job_store_is_rebuilt_from_kafka_and_the_job_completes_exactly_once(
    kafka_bootstrap: str, redis_url: str, unique_name: str, cpu_model_path: Path
) -> None:
    prefix = f"{unique_name}:"
    store = RedisJobStore(redis_url, key_prefix=prefix)
    tenant = Tenant(TenantSpec(id="acme"))
    items = {f"i{n:04d}": {"text": f"商品 {n}"} for n in range(ITEMS)}
    async with batch_rig(
        kafka_bootstrap, unique_name, store, cpu_model_path, horizon_s=0.5, min_window=50, interval_s=0.05
    ) as rig:
        submitted = await rig.service.submit(tenant, BatchRequest(template_id="translation", items=items))
        job_id = submitted.job.job_id
        deadline = time.monotonic() + 240
        await rig.wait_done(job_id, 300, deadline)
        assert 300 <= await rig.done(job_id) < ITEMS, "the loss must land mid-job"

        # The store loses everything; the bookkeeping starts over with fresh consumer groups.
        await rig.stop_bookkeeping()
        client = aioredis.from_url(redis_url)
        lost = [key async for key in client.scan_iter(match=f"{prefix}*")]
        await client.delete(*lost)
        await client.aclose()
        assert await store.get(job_id) is None
        rig.start_bookkeeping(f"{unique_name}-rebuilt")

        await rig.wait_done(job_id, ITEMS, deadline)
        restorer = rig.tasks["restorer"][0]
        assert restorer.restored_jobs == 1
        job = await store.get(job_id)
        status = await store.status(job_id)
        results = await store.results(job_id, 0, ITEMS + 10)

    assert job is not None and (job.tenant_id, job.total, job.template_id) == ("acme", ITEMS, "translation")
    assert status.counts == {"succeeded": ITEMS}
    ids = Counter(r.item_id for r in results)
    assert set(ids) == set(items) and max(ids.values()) == 1  # every item once
    await store.close()
