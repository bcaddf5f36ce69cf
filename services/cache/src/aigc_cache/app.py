"""Composition root of the cache service."""

from __future__ import annotations

from aigc_cache.adapters.memory_store import MemoryStore
from aigc_cache.adapters.redis_store import RedisStore
from aigc_cache.core import CacheCore
from aigc_cache.metrics import CacheMetrics
from aigc_cache.ports import CacheStore
from aigc_cache.servicer import binding
from aigc_cache.settings import CacheSettings
from aigc_common.runtime import Builder, ProcessRuntime, core_builder


async def build_core(settings: CacheSettings, runtime: ProcessRuntime) -> CacheCore:
    """Builds the store the settings name; a Redis store must answer a ping at start-up."""
    store: CacheStore
    if settings.store == "redis":
        redis_store = RedisStore(settings.redis.url)
        await redis_store.ping()
        store = redis_store
    else:
        store = MemoryStore(settings.max_memory_entries)
    return CacheCore(
        store,
        CacheMetrics(runtime.registry),
        key_prefix=settings.redis.key_prefix,
        default_ttl_seconds=settings.default_ttl_seconds,
        max_answer_chars=settings.max_answer_chars,
    )


def builder(settings: CacheSettings) -> Builder:
    """What ``run_service`` calls to build the service in a process."""
    return core_builder(settings, build_core, binding)
