"""Composition root of the safety service: settings -> rule pack -> core -> servicer."""

from __future__ import annotations

from collections.abc import Sequence

from aigc_common.runtime import Builder, Closer, ProcessRuntime
from aigc_common.server import ServiceBinding
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

    async def build(runtime: ProcessRuntime) -> tuple[Sequence[ServiceBinding], Closer]:
        core = await build_core(settings, runtime)
        return [binding(core)], core.close

    return build
