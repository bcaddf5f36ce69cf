"""Settings of the cache service (env prefix ``AIGC_CACHE_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aigc_common.settings import RedisSettings, ServiceSettings


class CacheSettings(ServiceSettings):
    """The cache service: which store, expiry and limits."""

    model_config = SettingsConfigDict(env_prefix="AIGC_CACHE_", env_nested_delimiter="__", extra="ignore")

    store: Literal["memory", "redis"] = Field(
        "memory", description="memory: in-process (one replica only); redis: shared by all replicas."
    )
    redis: RedisSettings = Field(default_factory=RedisSettings, description="Redis, when store is redis.")
    default_ttl_seconds: int = Field(86_400, ge=1, description="Expiry of an entry when Store gives none.")
    max_answer_chars: int = Field(32_000, ge=1, description="Longer answers are not cached.")
    max_memory_entries: int = Field(10_000, ge=1, description="Entries the memory store keeps (LRU).")
