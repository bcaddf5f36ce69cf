"""Composition root of the prompt service."""

from __future__ import annotations

import asyncio

from aigc_common.model_files import default_gguf_path
from aigc_common.pricing import Price
from aigc_common.runtime import Builder, ProcessRuntime, core_builder
from aigc_common.tokenizer import GgufChatTokenizer
from aigc_prompt.core import PromptCore
from aigc_prompt.labels import LabelLog
from aigc_prompt.servicer import binding
from aigc_prompt.settings import PromptSettings
from aigc_prompt.templates import TemplateStore


async def build_core(settings: PromptSettings, runtime: ProcessRuntime | None = None) -> PromptCore:
    """Loads templates and the tokenizer; fails at start-up on a broken template file."""
    templates = TemplateStore(settings.templates_dir)
    tokenizer = await asyncio.to_thread(
        GgufChatTokenizer.from_path, settings.tokenizer_path or default_gguf_path()
    )
    core = PromptCore(
        templates,
        count_tokens=tokenizer.count_messages,
        count_text_tokens=lambda text: len(tokenizer.tokenize(text)),
        prices={name: Price.from_setting(p) for name, p in settings.prices.items()},
        default_model=settings.default_model,
        label_log=LabelLog(settings.label_log_path),
    )
    if settings.reload_interval_seconds > 0:
        core.watch(settings.reload_interval_seconds)
    return core


def builder(settings: PromptSettings) -> Builder:
    """What ``run_service`` calls to build the service in a process."""
    return core_builder(settings, build_core, binding)
