"""Composition root of the safety service: settings -> packs and policies, classifier, audit sink
-> core -> servicer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aigc_common.kafka import EventProducer
from aigc_common.runtime import Builder, Closer, ProcessRuntime
from aigc_common.server import ServiceBinding
from aigc_safety.adapters.kafka_audit import KafkaAuditSink
from aigc_safety.audit import AuditSink, LogAuditSink
from aigc_safety.classifier import SafetyClassifier
from aigc_safety.core import SafetyCore, freeze_long_lived
from aigc_safety.metrics import SafetyMetrics
from aigc_safety.normalize import folding_path, use_native_fold
from aigc_safety.policy import PolicyStore
from aigc_safety.servicer import binding
from aigc_safety.settings import SafetySettings

log = logging.getLogger(__name__)


async def build_core(
    settings: SafetySettings, runtime: ProcessRuntime, audit: AuditSink | None = None
) -> SafetyCore:
    """Loads packs, policies and the classifier; a broken file fails start-up naming file and field."""
    use_native_fold(settings.fold_native)
    store = await asyncio.to_thread(
        PolicyStore,
        settings.packs_dir,
        settings.policies_dir,
        native_scan=settings.scanner_native,
        facts_cache=settings.facts_cache,
    )
    log.info("safety policies loaded (%s rule scan, %s fold)", store.scanning_path, folding_path())
    classifier = (
        await asyncio.to_thread(
            SafetyClassifier.load, settings.classifier_path, use_native=settings.classifier_native
        )
        if settings.classifier_enabled
        else None
    )
    if classifier is not None:
        log.info("safety classifier %s loaded (%s scoring)", classifier.version, classifier.scoring_path)
    core = SafetyCore(
        store,
        SafetyMetrics(runtime.registry),
        classifier=classifier,
        audit=audit or LogAuditSink(),
        default_policy=settings.default_policy,
        tenant_policies=settings.tenant_policies,
        holdback_chars=settings.holdback_chars,
        max_text_chars=settings.max_text_chars,
    )
    started = time.perf_counter()
    await asyncio.to_thread(core.warm_up)
    log.info("safety core warmed up in %.2f s", time.perf_counter() - started)
    if settings.gc_freeze:
        freeze_long_lived()
    if settings.reload_interval_seconds > 0:
        core.watch(settings.reload_interval_seconds, freeze=settings.gc_freeze)
    return core


def audit_sink(settings: SafetySettings) -> tuple[AuditSink, Closer]:
    """The configured audit sink and how to close it (Kafka connects here, failing start-up if down)."""
    if settings.audit.sink == "kafka":
        sink = KafkaAuditSink(EventProducer(settings.kafka).start(), settings.audit.topic)

        async def close() -> None:
            await asyncio.to_thread(sink.close)

        return sink, close

    async def nothing() -> None:
        return None

    return LogAuditSink(), nothing


def builder(settings: SafetySettings) -> Builder:
    """What ``run_service`` calls to build the service in a process."""

    async def build(runtime: ProcessRuntime) -> tuple[Sequence[ServiceBinding], Closer]:
        sink, close_sink = await asyncio.to_thread(audit_sink, settings)
        core = await build_core(settings, runtime, sink)

        async def close() -> None:
            await core.close()
            await close_sink()

        return [binding(core)], close

    return build
