"""Settings of the retrieval service (env prefix ``AIGC_RETRIEVAL_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from aigc_common.settings import ServiceSettings


class RetrievalSettings(ServiceSettings):
    """The retrieval service: which index, how documents are chunked, and search limits."""

    model_config = SettingsConfigDict(env_prefix="AIGC_RETRIEVAL_", env_nested_delimiter="__", extra="ignore")

    index: Literal["memory"] = Field(
        "memory", description="Where chunks are indexed; memory: in-process, lost on restart (one replica)."
    )
    chunk_chars: int = Field(
        400, ge=50, le=20_000, description="Longest chunk in characters; chunks end at sentence ends."
    )
    chunk_overlap: int = Field(
        80, ge=0, description="Characters a chunk repeats from the one before; less than chunk_chars."
    )
    default_top_k: int = Field(5, ge=1, description="Passages a search returns when top_k is 0.")
    max_top_k: int = Field(50, ge=1, description="Largest top_k a search accepts; more is INVALID_ARGUMENT.")
    max_document_chars: int = Field(
        1_000_000, ge=1, description="Longest document text Ingest accepts, in characters."
    )

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_chunk(cls, value: int, info: ValidationInfo) -> int:
        chunk_chars = info.data.get("chunk_chars")
        if chunk_chars is not None and value >= chunk_chars:
            raise ValueError(f"must be less than chunk_chars ({chunk_chars})")
        return value
