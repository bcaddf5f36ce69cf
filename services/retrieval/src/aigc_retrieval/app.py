"""Composition root of the retrieval service: settings -> index -> core -> servicer."""

from __future__ import annotations

from aigc_common.runtime import Builder, ProcessRuntime, core_builder
from aigc_retrieval.adapters.memory_index import MemoryIndex
from aigc_retrieval.core import Retriever
from aigc_retrieval.metrics import RetrievalMetrics
from aigc_retrieval.servicer import binding
from aigc_retrieval.settings import RetrievalSettings


async def build_core(settings: RetrievalSettings, runtime: ProcessRuntime) -> Retriever:
    """Builds the index the settings name and returns a ready core."""
    return Retriever(
        MemoryIndex(),
        RetrievalMetrics(runtime.registry),
        chunk_chars=settings.chunk_chars,
        chunk_overlap=settings.chunk_overlap,
        default_top_k=settings.default_top_k,
        max_top_k=settings.max_top_k,
        max_document_chars=settings.max_document_chars,
    )


def builder(settings: RetrievalSettings) -> Builder:
    """What ``run_service`` calls to build the service in a process."""
    return core_builder(settings, build_core, binding)
