"""Budget and rate-limit counters in Redis, shared by every gateway replica.

The check-and-add is one Lua script, so Redis runs it atomically: two replicas reserving the last
of a budget at the same moment cannot both succeed.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from aigc_common.errors import Unavailable

# KEYS[1] counter; ARGV amount, limit, ttl (0 = none). Returns the new value, or -1 when refused.
_ADD_WITHIN = """
local value = tonumber(redis.call('GET', KEYS[1]) or '0') + tonumber(ARGV[1])
if value > tonumber(ARGV[2]) then return -1 end
redis.call('INCRBY', KEYS[1], ARGV[1])
if tonumber(ARGV[3]) > 0 and redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return value
"""
# KEYS[1] counter; ARGV amount, ttl. Adds, sets the expiry if the key has none yet.
_ADD = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 and redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return value
"""


class RedisCounters:
    """:class:`aigc_gateway.limits.CounterStore` over Redis."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._client: Any = aioredis.from_url(url)
        self._add_within = self._client.register_script(_ADD_WITHIN)
        self._add = self._client.register_script(_ADD)

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except (OSError, aioredis.RedisError) as exc:
            raise Unavailable(
                f"cannot reach Redis at {self._url}: {exc}; start it with `make stack-up`"
            ) from None

    async def add_within(self, key: str, amount: int, limit: int, ttl_seconds: int) -> int | None:
        value = int(await self._add_within(keys=[key], args=[amount, limit, ttl_seconds]))
        return None if value < 0 else value

    async def add(self, key: str, amount: int, ttl_seconds: int) -> int:
        return int(await self._add(keys=[key], args=[amount, ttl_seconds]))

    async def get(self, key: str) -> int:
        value = await self._client.get(key)
        return int(value) if value is not None else 0

    async def close(self) -> None:
        await self._client.aclose()
