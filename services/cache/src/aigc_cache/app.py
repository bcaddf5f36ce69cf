"""Composition root of the cache service."""

from __future__ import annotations

import asyncio
import logging

from aigc_cache.adapters.memory_store import MemoryStore
from aigc_cache.adapters.minilm_embedder import MiniLmEmbedder
from aigc_cache.adapters.redis_store import RedisStore
from aigc_cache.core import CacheCore
from aigc_cache.metrics import CacheMetrics
from aigc_cache.ports import CacheStore
from aigc_cache.servicer import binding
from aigc_cache.settings import CacheSettings
from aigc_common.runtime import Builder, ProcessRuntime, core_builder

log = logging.getLogger(__name__)


async def build_embedder(settings: CacheSettings) -> MiniLmEmbedder | None:
    """The sentence embedder, loaded once (about 90 MB of weights), or None when the tier is off."""
    if not settings.semantic_enabled:
        return None
    embedder = MiniLmEmbedder(settings.semantic_model_path, blas_threads=settings.semantic_blas_threads)
    # Loading takes a fraction of a second of disk and CPU: off the event loop.
    await asyncio.to_thread(embedder.start)
    log.info("semantic tier ready", extra={"fields": {"embedder": embedder.name}})
    return embedder


async def build_core(settings: CacheSettings, runtime: ProcessRuntime) -> CacheCore:
    """Builds the store the settings name (a Redis store must answer a ping at start-up) and
    the embedder of the semantic tier."""
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
        embedder=await build_embedder(settings),
        semantic_max_entries=settings.semantic_max_entries,
        semantic_max_indexes=settings.semantic_max_indexes,
    )


def builder(settings: CacheSettings) -> Builder:
    """What ``run_service`` calls to build the service in a process."""
    return core_builder(settings, build_core, binding)
