"""Composition root of the gateway: each port in-process or over gRPC, as settings say."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from aigc_common.pricing import Price
from aigc_common.runtime import Builder, Closer, ProcessRuntime
from aigc_common.server import ServiceBinding
from aigc_common.settings import load_settings
from aigc_common.tracing import traced_channel
from aigc_gateway.adapters import grpc_clients, inprocess
from aigc_gateway.core import Gateway
from aigc_gateway.metrics import GatewayMetrics
from aigc_gateway.ports import CachePort, InferencePort, PromptPort, SafetyPort
from aigc_gateway.servicer import binding
from aigc_gateway.settings import GatewaySettings, PortSettings


@dataclass
class Wiring:
    """The gateway with the resources its adapters hold."""

    gateway: Gateway
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    closers: list[Closer] = field(default_factory=list)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()
        for closer in self.closers:
            await closer()


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
    wiring.gateway = Gateway(
        prompt=prompt,
        safety=safety,
        cache=cache,
        inference=inference,
        metrics=GatewayMetrics(runtime.registry, runtime.usage_metrics),
        prices={name: Price.from_setting(p) for name, p in settings.prices.items()},
    )
    return wiring


def builder(settings: GatewaySettings) -> Builder:
    """What ``run_service`` calls to build the gateway in its own process."""

    async def build(runtime: ProcessRuntime) -> tuple[Sequence[ServiceBinding], Closer]:
        wiring = await build_gateway(settings, runtime)
        return [binding(wiring.gateway, settings.default_tenant)], wiring.close

    return build
