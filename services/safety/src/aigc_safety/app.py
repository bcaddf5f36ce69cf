"""Composition root of the safety service: settings -> rule pack -> core -> servicer."""

from __future__ import annotations

from aigc_common.runtime import Builder, ProcessRuntime, core_builder
from aigc_safety.core import SafetyCore
from aigc_safety.metrics import SafetyMetrics
from aigc_safety.rules import default_pack_path, load_pack
from aigc_safety.servicer import binding
from aigc_safety.settings import SafetySettings


async def build_core(settings: SafetySettings, runtime: ProcessRuntime) -> SafetyCore:
    """Loads and compiles the rule pack (a broken pack fails start-up naming file and rule)."""
    pack = load_pack(settings.rule_pack or default_pack_path())
    return SafetyCore(
        pack,
        SafetyMetrics(runtime.registry),
        holdback_chars=settings.holdback_chars,
        max_text_chars=settings.max_text_chars,
    )


def builder(settings: SafetySettings) -> Builder:
    """What ``run_service`` calls to build the service in a process."""
    return core_builder(settings, build_core, binding)
