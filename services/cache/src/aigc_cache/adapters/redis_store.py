"""Redis store, shared by every cache replica (plain commands only: no modules, no scripts)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from aigc_cache.adapters.semantic_log import must_compact, plan_compaction
from aigc_cache.ports import SemanticRead
from aigc_common.errors import Unavailable


class RedisStore:
    """Keys live under the deployment's key prefix; expiry is Redis's own.

    A semantic set under ``key`` is three keys: ``{key}records`` (hash of entry id -> record),
    ``{key}log`` (list of stored ids, in store order) and ``{key}epoch`` (a random token,
    replaced when the log is rewritten). A random token rather than a counter: a counter would
    restart at 1 after an invalidation deleted it, and a replica holding an old index at "1"
    would never notice.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._client = aioredis.from_url(url)

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except (OSError, aioredis.RedisError) as exc:
            raise Unavailable(
                f"cannot reach Redis at {self._url}: {exc}; start it with `make stack-up`"
            ) from None

    async def get(self, key: str) -> bytes | None:
        value = await self._client.get(key)
        return bytes(value) if value is not None else None

    async def set(self, key: str, value: bytes, ttl_seconds: int) -> None:
        await self._client.set(key, value, ex=ttl_seconds)

    async def delete_prefix(self, prefix: str) -> int:
        removed = 0
        # SCAN, not KEYS: never block Redis on a large keyspace.
        async for key in self._client.scan_iter(match=_glob_escape(prefix) + "*", count=500):
            removed += int(await self._client.delete(key))
        return removed

    async def semantic_add(
        self, key: str, entry_id: str, record: bytes, ttl_seconds: int, max_entries: int
    ) -> None:
        records, log, epoch = key + "records", key + "log", key + "epoch"
        # One transaction: a reader sees the record and its log entry together, or neither.
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(records, entry_id, record)
            pipe.rpush(log, entry_id)
            pipe.set(epoch, _new_epoch(), nx=True)
            pipe.ttl(records)
            pipe.hlen(records)
            _, log_length, created, ttl_left, count = await pipe.execute()
        # Keep the set alive as long as its longest-lived entry (EXPIRE ... GT needs Redis 7;
        # reading TTL first works on any version, and a lost race only shortens a set's life).
        if created or ttl_left < ttl_seconds:
            async with self._client.pipeline(transaction=False) as pipe:
                for name in (records, log, epoch):
                    pipe.expire(name, max(ttl_seconds, int(ttl_left)))
                await pipe.execute()
        if must_compact(int(count), int(log_length), max_entries):
            await self._compact(key, max_entries)

    async def _compact(self, key: str, max_entries: int) -> None:
        records, log, epoch = key + "records", key + "log", key + "epoch"
        async with self._client.pipeline(transaction=True) as pipe:
            try:
                # WATCH: a store landing between the read and the rewrite aborts the rewrite,
                # so no logged id is ever lost; the next store over the limit compacts again.
                await pipe.watch(records, log)
                ids = [i.decode() for i in await pipe.lrange(log, 0, -1)]
                live = {i.decode() for i in await pipe.hkeys(records)}
                ttl_left = int(await pipe.ttl(records))
                keep, evict = plan_compaction(ids, live, max_entries)
                pipe.multi()
                if evict:
                    pipe.hdel(records, *evict)
                pipe.delete(log)
                if keep:
                    pipe.rpush(log, *keep)
                # A new epoch tells every replica its log offset is void: rebuild.
                pipe.set(epoch, _new_epoch())
                if ttl_left > 0:
                    pipe.expire(log, ttl_left)
                    pipe.expire(epoch, ttl_left)
                await pipe.execute()
            except WatchError:
                pass

    async def semantic_read(self, key: str, epoch: str | None, offset: int) -> SemanticRead:
        records, log, epoch_key = key + "records", key + "log", key + "epoch"
        if epoch is not None:
            # The common case, one round trip: same epoch, nothing or a few new ids.
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.get(epoch_key)
                pipe.lrange(log, offset, -1)
                current, new_ids = await pipe.execute()
            if current is not None and current.decode() == epoch:
                ids = list(dict.fromkeys(i.decode() for i in new_ids))
                found: dict[str, bytes] = {}
                if ids:
                    values = await self._client.hmget(records, ids)
                    found = {i: bytes(v) for i, v in zip(ids, values, strict=True) if v is not None}
                return SemanticRead(epoch, offset + len(new_ids), found, complete=False)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.get(epoch_key)
            pipe.llen(log)
            pipe.hgetall(records)
            current, length, everything = await pipe.execute()
        return SemanticRead(
            current.decode() if current is not None else None,
            int(length),
            {k.decode(): bytes(v) for k, v in everything.items()},
            complete=True,
        )

    async def semantic_remove(self, key: str, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            await self._client.hdel(key + "records", *entry_ids)

    async def close(self) -> None:
        await self._client.aclose()  # type: ignore[attr-defined]  # types-redis lags redis 5+


def _new_epoch() -> str:
    return uuid.uuid4().hex


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
