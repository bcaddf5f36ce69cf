"""Per-process plumbing: logging, tracing, one metrics registry and its /metrics endpoint,
and the standard way a service process starts, serves and stops."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from prometheus_client import CollectorRegistry

from aigc_common.errors import ConfigError
from aigc_common.logs import configure_logging
from aigc_common.metrics import GlobalRegistryBridge, MetricsEndpoint, RpcMetrics, UsageMetrics
from aigc_common.server import GrpcServer, ServiceBinding, run_until_signal
from aigc_common.settings import ServiceSettings, load_settings
from aigc_common.tracing import setup_tracing

log = logging.getLogger(__name__)


class ProcessRuntime:
    """What one process shares among the services it hosts: the metrics registry and endpoint."""

    def __init__(
        self, name: str, settings: ServiceSettings, registry: CollectorRegistry | None = None
    ) -> None:
        self.name = name
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        # Libraries with their own metrics (vLLM, Ray, the process collector) use the global
        # registry; bridging it keeps them on this process's one /metrics endpoint.
        if registry is None:
            self.registry.register(GlobalRegistryBridge())
        self.rpc_metrics = RpcMetrics(self.registry)
        self.usage_metrics = UsageMetrics(self.registry)
        self.endpoint = MetricsEndpoint(self.registry, settings.metrics.host, settings.metrics.port)

    def start(self, configure_logs: bool = True) -> None:
        """Sets up logging and tracing and starts /metrics (unless its port is 0)."""
        if configure_logs:
            configure_logging(self.name, self.settings.log.level, self.settings.log.json_format)
        setup_tracing(self.name, self.settings.otel)
        if self.settings.metrics.port:
            self.endpoint.start()
            log.info("metrics endpoint up", extra={"fields": {"port": self.endpoint.port}})

    def stop(self) -> None:
        self.endpoint.stop()


S = TypeVar("S", bound=ServiceSettings)
Closer = Callable[[], Awaitable[None]]
Builder = Callable[
    [ProcessRuntime], Awaitable[tuple[Sequence[ServiceBinding], Callable[[], Awaitable[None]]]]
]


class _Core(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=_Core)


def core_builder(
    settings: S,
    build_core: Callable[[S, ProcessRuntime], Awaitable[C]],
    binding: Callable[[C], ServiceBinding],
) -> Builder:
    """The usual builder: one core from the settings, served by one binding, closed at shutdown."""

    async def build(runtime: ProcessRuntime) -> tuple[Sequence[ServiceBinding], Closer]:
        core = await build_core(settings, runtime)
        return [binding(core)], core.close

    return build


async def serve(name: str, settings: ServiceSettings, build: Builder) -> None:
    """Builds a service with ``build``, serves it until SIGTERM, then shuts down gracefully."""
    runtime = ProcessRuntime(name, settings)
    runtime.start()
    bindings, close = await build(runtime)
    server = GrpcServer(name, bindings, settings.grpc, runtime.rpc_metrics)
    await server.start()
    try:
        await run_until_signal([server])
    finally:
        await close()
        runtime.stop()
        log.info("stopped")


def run_service(name: str, settings_model: type[S], make_builder: Callable[[S], Builder]) -> None:
    """Entry point body for ``python -m aigc_<service>``: bad configuration exits 2 with what to change."""
    try:
        settings = load_settings(settings_model)
    except ConfigError as exc:
        print(f"aigc-{name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        asyncio.run(serve(name, settings, make_builder(settings)))
    except ConfigError as exc:
        # Raised while building (a broken template or rule pack): the message says what to fix.
        print(f"aigc-{name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
