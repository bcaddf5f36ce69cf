"""Composition root of the inference service: settings -> engine -> core -> servicer."""

from __future__ import annotations

from aigc_common.model_files import default_gguf_path
from aigc_common.runtime import Builder, ProcessRuntime, core_builder
from aigc_inference.core import InferenceCore
from aigc_inference.engines.llama_cpp import LlamaCppEngine
from aigc_inference.metrics import InferenceMetrics
from aigc_inference.servicer import binding
from aigc_inference.settings import InferenceSettings


async def build_core(settings: InferenceSettings, runtime: ProcessRuntime) -> InferenceCore:
    """Loads the model and returns a ready core."""
    engine = LlamaCppEngine(
        settings.model_path or default_gguf_path(),
        name=settings.model_name,
        context_window=settings.context_window,
        threads=settings.threads,
        contexts=settings.contexts,
        repeat_penalty=settings.repeat_penalty,
    )
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
