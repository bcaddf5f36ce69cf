"""Composition root of the gateway: each port in-process or over gRPC, as settings say."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import grpc

from aigc_common.errors import ConfigError
from aigc_common.kafka import EventProducer, Topics, ensure_topics
from aigc_common.pricing import Price
from aigc_common.runtime import Builder, Closer, ProcessRuntime
from aigc_common.server import ServiceBinding
from aigc_common.settings import load_settings
from aigc_common.tracing import traced_channel
from aigc_gateway.adapters import grpc_clients, inprocess
from aigc_gateway.adapters.kafka_requests import KafkaJobLog, KafkaRequestPublisher
from aigc_gateway.adapters.kafka_usage import KafkaUsageSink
from aigc_gateway.adapters.redis_counters import RedisCounters
from aigc_gateway.adapters.redis_jobs import RedisJobStore
from aigc_gateway.batch import BatchMetrics, BatchWorker, WorkerConfig
from aigc_gateway.batch.joblog import JobRestorer
from aigc_gateway.batch.pacer import Pacer
from aigc_gateway.batch.pipeline import BatchPipeline
from aigc_gateway.batch.service import BatchService
from aigc_gateway.batch.tracker import ResultTracker
from aigc_gateway.core import Gateway
from aigc_gateway.jobs import JobStore, MemoryJobStore
from aigc_gateway.limits import Budgets, CounterStore, MemoryCounters, RateLimiter
from aigc_gateway.metrics import GatewayMetrics
from aigc_gateway.ports import CachePort, InferencePort, PromptPort, SafetyPort
from aigc_gateway.servicer import binding
from aigc_gateway.settings import GatewaySettings, PortSettings
from aigc_gateway.tenants import Directory, OpenDirectory, TenantDirectory
from aigc_gateway.usage import LogUsageSink, UsageSink

log = logging.getLogger(__name__)


@dataclass
class Wiring:
    """The gateway with the resources its adapters hold."""

    gateway: Gateway
    directory: Directory = field(default_factory=lambda: OpenDirectory("default"))
    batch: BatchService | None = None
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    closers: list[Closer] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        # Closers first: workers finishing their batch still call the remote ports.
        for closer in self.closers:
            await closer()
        for channel in self.channels:
            await channel.close()


async def build_gateway(
    settings: GatewaySettings,
    runtime: ProcessRuntime,
    *,
    prompt: PromptPort | None = None,
    safety: SafetyPort | None = None,
    cache: CachePort | None = None,
    inference: InferencePort | None = None,
) -> Wiring:
    """Builds every port not given: in-process from the service's own settings, or a gRPC client."""
    wiring = Wiring(gateway=None)  # type: ignore[arg-type]

    def channel(port: PortSettings) -> grpc.aio.Channel:
        ch = traced_channel(port.address)
        wiring.channels.append(ch)
        return ch

    if prompt is None:
        if settings.prompt.mode == "inprocess":
            from aigc_prompt.app import build_core as build_prompt
            from aigc_prompt.settings import PromptSettings

            prompt = inprocess.InProcessPrompt(await build_prompt(load_settings(PromptSettings), runtime))
        else:
            prompt = grpc_clients.GrpcPrompt(channel(settings.prompt), settings.prompt.timeout_seconds)
    if safety is None:
        if settings.safety.mode == "inprocess":
            from aigc_safety.app import build_core as build_safety
            from aigc_safety.settings import SafetySettings

            safety = inprocess.InProcessSafety(await build_safety(load_settings(SafetySettings), runtime))
        else:
            safety = grpc_clients.GrpcSafety(channel(settings.safety), settings.safety.timeout_seconds)
    if cache is None:
        if settings.cache.mode == "inprocess":
            from aigc_cache.app import build_core as build_cache
            from aigc_cache.settings import CacheSettings

            cache_core = await build_cache(load_settings(CacheSettings), runtime)
            wiring.closers.append(cache_core.close)
            cache = inprocess.InProcessCache(cache_core)
        else:
            cache = grpc_clients.GrpcCache(channel(settings.cache), settings.cache.timeout_seconds)
    if inference is None:
        if settings.inference.mode == "inprocess":
            from aigc_inference.app import build_core as build_inference
            from aigc_inference.settings import InferenceSettings

            inference_core = await build_inference(load_settings(InferenceSettings), runtime)
            wiring.closers.append(inference_core.close)
            inference = inprocess.InProcessInference(inference_core)
        else:
            inference = grpc_clients.GrpcInference(channel(settings.inference))
    counters: CounterStore
    if settings.counters == "redis":
        redis_counters = RedisCounters(settings.redis.url)
        await redis_counters.ping()
        counters = redis_counters
    else:
        counters = MemoryCounters()
    wiring.closers.append(counters.close)
    usage: UsageSink = LogUsageSink()
    if settings.usage_sink == "kafka":
        kafka_usage = KafkaUsageSink(
            await asyncio.to_thread(EventProducer(settings.kafka).start), settings.usage_topic
        )

        async def close_usage() -> None:
            await asyncio.to_thread(kafka_usage.close)

        wiring.closers.append(close_usage)
        usage = kafka_usage
    prices = {name: Price.from_setting(p) for name, p in settings.prices.items()}
    wiring.directory = directory(settings, prices)
    budgets = Budgets(counters, key_prefix=settings.redis.key_prefix)
    wiring.gateway = Gateway(
        prompt=prompt,
        safety=safety,
        cache=cache,
        inference=inference,
        metrics=GatewayMetrics(runtime.registry, runtime.usage_metrics),
        prices=prices,
        budgets=budgets,
        limiter=RateLimiter(counters, key_prefix=settings.redis.key_prefix),
        usage=usage,
    )
    if settings.batch.enabled:
        await _build_batch(settings, runtime, wiring, prompt, budgets, prices)
    return wiring


async def _build_batch(
    settings: GatewaySettings,
    runtime: ProcessRuntime,
    wiring: Wiring,
    prompt: PromptPort,
    budgets: Budgets,
    prices: Mapping[str, Price],
) -> None:
    """Job API, tracker and (optionally) in-process workers over Kafka."""
    batch = settings.batch
    topics = Topics.with_prefix(batch.topic_prefix) if batch.topic_prefix else Topics()
    store: JobStore
    if batch.store == "redis":
        store = RedisJobStore(settings.redis.url, settings.redis.key_prefix)
    else:
        store = MemoryJobStore()
    wiring.closers.append(store.close)
    await asyncio.to_thread(
        ensure_topics,
        settings.kafka,
        [topics.generation_requests, topics.generation_results, topics.generation_dlq, topics.batch_jobs],
    )
    producer = await asyncio.to_thread(EventProducer(settings.kafka).start)
    publisher = KafkaRequestPublisher(producer, topics.generation_requests)

    async def close_publisher() -> None:
        await asyncio.to_thread(publisher.close)

    wiring.closers.append(close_publisher)
    # Every replica paces (per-job leases in the store keep them from releasing the same items).
    pacer = Pacer(
        store,
        publisher,
        horizon_s=batch.pace_horizon_seconds,
        min_window=batch.pace_min_window,
        max_window=max(batch.pace_max_window, batch.pace_min_window),
    )
    pacer_task = asyncio.get_running_loop().create_task(pacer.run())

    async def stop_pacer() -> None:
        pacer.stop()
        await asyncio.wait([pacer_task], timeout=10)

    wiring.closers.insert(0, stop_pacer)
    wiring.batch = BatchService(
        prompt=prompt,
        store=store,
        pacer=pacer,
        job_log=KafkaJobLog(producer, topics.batch_jobs),
        budgets=budgets,
        prices=prices,
    )
    if batch.tracker:
        tracker = ResultTracker(
            settings.kafka,
            topic=topics.generation_results,
            group_id=batch.tracker_group,
            store=store,
            budgets=budgets,
        )
        # Restores jobs a lost store no longer knows (a no-op next to an intact store).
        restorer = JobRestorer(
            settings.kafka, topic=topics.batch_jobs, group_id=f"{batch.tracker_group}-jobs", store=store
        )
        for task in (tracker, restorer):
            wiring.tasks.append(asyncio.get_running_loop().create_task(task.run()))
    pipeline = BatchPipeline(wiring.gateway, wiring.directory.tenants)
    metrics = BatchMetrics(runtime.registry) if batch.workers else None
    workers: list[tuple[BatchWorker, asyncio.Task[None]]] = []
    for index in range(batch.workers):
        worker = BatchWorker(
            settings.kafka,
            WorkerConfig(
                group_id=batch.worker_group,
                worker_index=batch.worker_index_base + index,
                topics=topics,
                concurrency=batch.worker_concurrency,
                max_poll_records=batch.worker_max_poll_records,
                target_batch_s=batch.worker_target_batch_seconds,
            ),
            pipeline,
            is_cancelled=store.is_cancelled,
            metrics=metrics,
        )
        workers.append((worker, asyncio.get_running_loop().create_task(worker.run())))

    async def stop_workers() -> None:
        # Graceful: the batch in hand commits, then each worker leaves the group.
        for worker, _ in workers:
            worker.stop()
        await asyncio.wait([task for _, task in workers], timeout=30)

    if workers:
        wiring.closers.insert(0, stop_workers)


def directory(settings: GatewaySettings, prices: Mapping[str, Price]) -> Directory:
    """The tenants file's tenants, or one open tenant without it. A budget in a currency that a
    priced model does not use could never be checked, so it fails start-up."""
    if settings.tenants_file is None:
        log.warning(
            "no tenants file: API keys are not checked, every caller is tenant %r", settings.default_tenant
        )
        return OpenDirectory(settings.default_tenant)
    found = TenantDirectory.from_file(settings.tenants_file)
    for tenant in found.tenants.values():
        budget = tenant.spec.budget
        if budget is None:
            continue
        for model, price in prices.items():
            if price.currency != budget.currency:
                raise ConfigError(
                    f"tenants file {settings.tenants_file}: tenant {tenant.id!r} has a budget in "
                    f"{budget.currency} but model {model!r} is priced in {price.currency}"
                )
    return found


def builder(settings: GatewaySettings) -> Builder:
    """What ``run_service`` calls to build the gateway in its own process."""

    async def build(runtime: ProcessRuntime) -> tuple[Sequence[ServiceBinding], Closer]:
        wiring = await build_gateway(settings, runtime)
        return [binding(wiring.gateway, wiring.directory, wiring.batch)], wiring.close

    return build
