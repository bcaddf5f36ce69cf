"""What the cache core needs from a key-value store."""

from __future__ import annotations

from typing import Protocol


class CacheStore(Protocol):
    """A byte store with per-key expiry and prefix deletion."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_seconds: int) -> None: ...

    async def delete_prefix(self, prefix: str) -> int:
        """Deletes every key starting with ``prefix``; returns how many."""
        ...

    async def close(self) -> None: ...
