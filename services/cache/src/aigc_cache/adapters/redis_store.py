"""Redis store, shared by every cache replica."""

from __future__ import annotations

import redis.asyncio as aioredis

from aigc_common.errors import Unavailable


class RedisStore:
    """Keys live under the deployment's key prefix; expiry is Redis's own."""

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

    async def close(self) -> None:
        await self._client.aclose()  # type: ignore[attr-defined]  # types-redis lags redis 5+


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
