"""Composition root of the inference service: settings -> engine -> core -> servicer."""

from __future__ import annotations

from aigc_common.model_files import default_gguf_path
from aigc_common.runtime import Builder, ProcessRuntime, core_builder
from aigc_inference.core import InferenceCore
from aigc_inference.engine import Engine
from aigc_inference.engines.llama_cpp import LlamaCppEngine
from aigc_inference.metrics import InferenceMetrics
from aigc_inference.servicer import binding
from aigc_inference.settings import InferenceSettings


def build_engine(settings: InferenceSettings) -> Engine:
    """The engine the settings name; GPU and HTTP engines are imported only when chosen."""
    if settings.engine == "openai_compatible":
        from aigc_inference.engines.openai_compat import OpenAICompatibleEngine

        return OpenAICompatibleEngine(
            settings.openai, name=settings.model_name, context_window=settings.context_window
        )
    if settings.engine == "vllm":
        from aigc_inference.engines.vllm_engine import VllmEngine

        return VllmEngine(settings.vllm, name=settings.model_name)
    return LlamaCppEngine(
        settings.model_path or default_gguf_path(),
        name=settings.model_name,
        context_window=settings.context_window,
        threads=settings.threads,
        contexts=settings.contexts,
        repeat_penalty=settings.repeat_penalty,
    )


async def build_core(settings: InferenceSettings, runtime: ProcessRuntime) -> InferenceCore:
    """Starts the engine (loads the model or connects) and returns a ready core."""
    engine = build_engine(settings)
    await engine.start()
    return InferenceCore(
        engine,
        InferenceMetrics(runtime.registry, runtime.usage_metrics),
        max_queue=settings.max_queue,
        default_max_tokens=settings.default_max_tokens,
        coalesce_seconds=settings.coalesce_ms / 1000,
    )


def builder(settings: InferenceSettings) -> Builder:
    """What ``run_service`` calls to build the service in a process."""
    return core_builder(settings, build_core, binding)
