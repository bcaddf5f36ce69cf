"""Batch jobs in Redis, shared by gateway replicas, trackers and workers (cancellation).

Per job: ``job:<id>`` (the record, JSON), ``job:<id>:items`` (item -> status), ``job:<id>:results``
(serialized results in recording order), ``job:<id>:counts`` (status -> n, plus cost and how many
items are published), ``job:<id>:staged`` (serialized requests the pacer has yet to publish, dropped
once all are out), ``job:<id>:lease`` (which pacer releases the job's items now) and the set
``job:unpublished``. Recording a result is one Lua script, so "first result per item wins" holds
even with two trackers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import redis.asyncio as aioredis

from aigc.events.v1 import events_pb2
from aigc_gateway.jobs import JobRecord, JobStatus

# KEYS items, results, counts; ARGV item id, status, serialized result, cost nanos, now, ttl seconds.
_RECORD = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
redis.call('HINCRBY', KEYS[3], '_cost', ARGV[4])
redis.call('HSETNX', KEYS[3], '_first', ARGV[5])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[6]) end
return 1
"""
_META = ("_cost", "_first", "_cancelled", "_published")
# KEYS counts, staged, unpublished set; ARGV job id, published upto, total, ttl seconds.
_PUBLISHED = """
local known = tonumber(redis.call('HGET', KEYS[1], '_published') or '0')
if tonumber(ARGV[2]) > known then redis.call('HSET', KEYS[1], '_published', ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[4])
if tonumber(ARGV[2]) >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[3], ARGV[1])
end
return 1
"""
# KEYS staged, unpublished set; ARGV job id, expected length, ttl seconds, requests...
_STAGE = """
if redis.call('LLEN', KEYS[1]) ~= tonumber(ARGV[2]) then return 0 end
for i = 4, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""
# KEYS lease; ARGV owner, ttl ms. Taken when free, or renewed by its owner.
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


class RedisJobStore:
    def __init__(self, url: str, key_prefix: str, ttl_seconds: int = 7 * 86400) -> None:
        self._client: Any = aioredis.from_url(url)
        self._prefix = key_prefix + "job:"
        self._ttl = ttl_seconds
        self._record = self._client.register_script(_RECORD)
        self._published = self._client.register_script(_PUBLISHED)
        self._lease = self._client.register_script(_LEASE)
        self._stage = self._client.register_script(_STAGE)
        self._unpublished = self._prefix + "unpublished"

    def _k(self, job_id: str, part: str = "") -> str:
        return f"{self._prefix}{job_id}{':' + part if part else ''}"

    async def create(self, job: JobRecord) -> JobRecord:
        if job.client_token:
            token_key = f"{self._prefix}token:{job.tenant_id}:{job.client_token}"
            if not await self._client.set(token_key, job.job_id, nx=True, ex=self._ttl):
                known = await self.get((await self._client.get(token_key)).decode())
                if known is not None:
                    return known
        await self._client.set(self._k(job.job_id), json.dumps(asdict(job)), ex=self._ttl)
        return job

    async def get(self, job_id: str) -> JobRecord | None:
        raw = await self._client.get(self._k(job_id))
        return JobRecord(**json.loads(raw)) if raw else None

    async def find_by_token(self, tenant_id: str, client_token: str) -> str | None:
        raw = await self._client.get(f"{self._prefix}token:{tenant_id}:{client_token}")
        return raw.decode() if raw else None

    async def record(self, result: events_pb2.GenerationResult) -> bool:
        return (await self.record_many([result]))[0]

    async def record_many(self, results: Sequence[events_pb2.GenerationResult]) -> list[bool]:
        # One round trip for the lot: the tracker records a whole poll of results at once.
        now = time.time()
        pipe = self._client.pipeline(transaction=False)
        for result in results:
            job = result.job_id
            keys = [self._k(job, "items"), self._k(job, "results"), self._k(job, "counts")]
            args: list[bytes | str | int | float] = [
                result.item_id,
                result.status,
                result.SerializeToString(),
                result.cost.amount_nanos,
                now,
                self._ttl,
            ]
            await self._record(keys=keys, args=args, client=pipe)
        return [bool(recorded) for recorded in await pipe.execute()] if results else []

    async def status(self, job_id: str) -> JobStatus:
        raw = {
            k.decode(): v.decode() for k, v in (await self._client.hgetall(self._k(job_id, "counts"))).items()
        }
        return JobStatus(
            counts={k: int(v) for k, v in raw.items() if k not in _META},
            cost_nanos=int(raw.get("_cost", 0)),
            cancelled=raw.get("_cancelled") == "1",
            first_result_at=float(raw.get("_first", 0)),
            published=int(raw.get("_published", 0)),
        )

    async def results(self, job_id: str, cursor: int, limit: int) -> list[events_pb2.GenerationResult]:
        raw = await self._client.lrange(self._k(job_id, "results"), cursor, cursor + limit - 1)
        return [events_pb2.GenerationResult.FromString(r) for r in raw]

    async def cancel(self, job_id: str) -> None:
        await self._client.hset(self._k(job_id, "counts"), "_cancelled", "1")
        await self._client.expire(self._k(job_id, "counts"), self._ttl)

    async def is_cancelled(self, job_id: str) -> bool:
        return await self._client.hget(self._k(job_id, "counts"), "_cancelled") == b"1"

    async def claim_settlement(self, job_id: str) -> bool:
        return bool(await self._client.set(self._k(job_id, "settled"), "1", nx=True, ex=self._ttl))

    async def stage(self, job_id: str, requests: Sequence[bytes], *, at: int = 0) -> bool:
        keys = [self._k(job_id, "staged"), self._unpublished]
        return bool(await self._stage(keys=keys, args=[job_id, at, self._ttl, *requests]))

    async def staged(self, job_id: str, start: int, end: int) -> list[bytes]:
        if end <= start:
            return []
        return list(await self._client.lrange(self._k(job_id, "staged"), start, end - 1))

    async def mark_published(self, job_id: str, upto: int, total: int) -> None:
        keys = [self._k(job_id, "counts"), self._k(job_id, "staged"), self._unpublished]
        await self._published(keys=keys, args=[job_id, upto, total, self._ttl])

    async def unpublished_jobs(self) -> list[str]:
        return sorted(member.decode() for member in await self._client.smembers(self._unpublished))

    async def lease(self, job_id: str, owner: str, ttl_s: float) -> bool:
        return bool(await self._lease(keys=[self._k(job_id, "lease")], args=[owner, int(ttl_s * 1000)]))

    async def close(self) -> None:
        await self._client.aclose()
