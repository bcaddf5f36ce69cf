"""The gRPC server bootstrap every service uses.

It wires the standard health service, reflection, tracing, metrics and error mapping, and
shuts down gracefully: on SIGTERM health turns NOT_SERVING, new calls are refused, and
in-flight calls (streams too) get ``grace_seconds`` to finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from aigc_common.interceptors import (
    ChainedInterceptor,
    ErrorMappingInterceptor,
    MetricsInterceptor,
    TracingInterceptor,
)
from aigc_common.metrics import RpcMetrics
from aigc_common.settings import GrpcSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceBinding:
    """One gRPC service to host: its full name (for health and reflection), how to add it, and
    optionally a probe whose answer the health service reports (checked every few seconds)."""

    name: str
    register: Callable[[grpc.aio.Server], None]
    healthy: Callable[[], bool] | None = None


class GrpcServer:
    """A ``grpc.aio`` server hosting one or more services with the standard plumbing."""

    def __init__(
        self, service: str, bindings: Sequence[ServiceBinding], settings: GrpcSettings, metrics: RpcMetrics
    ) -> None:
        self._service = service
        self._bindings = list(bindings)
        self._settings = settings
        self._metrics = metrics
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._probe_task: asyncio.Task[None] | None = None
        self.probe_interval = 2.0
        self.port = 0

    @property
    def address(self) -> str:
        return f"{self._settings.host}:{self.port}"

    async def start(self) -> None:
        """Binds, starts serving and marks every hosted service SERVING."""
        limit = self._settings.max_message_bytes
        server = grpc.aio.server(
            # Order matters: tracing outermost so metrics and errors happen inside the span. One
            # chained wrapper, so a streamed message passes one generator, not three.
            interceptors=[
                ChainedInterceptor(
                    TracingInterceptor(self._service),
                    MetricsInterceptor(self._service, self._metrics),
                    ErrorMappingInterceptor(),
                )
            ],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
            ],
        )
        for binding in self._bindings:
            binding.register(server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = [b.name for b in self._bindings]
        reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
        self.port = server.add_insecure_port(f"{self._settings.host}:{self._settings.port}")
        if self.port == 0:
            raise OSError(f"cannot bind gRPC port {self._settings.host}:{self._settings.port}")
        await server.start()
        self._server = server
        for name in ["", *names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if any(b.healthy for b in self._bindings):
            self._probe_task = asyncio.create_task(self._probe())
        log.info("serving", extra={"fields": {"address": self.address, "services": names}})

    async def _probe(self) -> None:
        """Keeps health honest: a dead engine turns its service NOT_SERVING, so load balancers and
        Kubernetes stop sending it traffic."""
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        while True:
            await asyncio.sleep(self.probe_interval)
            overall = True
            for binding in self._bindings:
                ok = binding.healthy() if binding.healthy else True
                overall &= ok
                await self._health.set(binding.name, serving if ok else not_serving)
            await self._health.set("", serving if overall else not_serving)

    async def stop(self, grace: float | None = None) -> None:
        """Refuses new calls and waits up to ``grace`` seconds for in-flight ones."""
        if self._probe_task is not None:
            self._probe_task.cancel()
            self._probe_task = None
        if self._server is None:
            return
        await self._health.enter_graceful_shutdown()
        grace = self._settings.grace_seconds if grace is None else grace
        log.info("shutting down", extra={"fields": {"grace_seconds": grace}})
        await self._server.stop(grace)
        self._server = None

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


async def run_until_signal(
    servers: Sequence[GrpcServer], on_stop: Callable[[], object] | None = None
) -> None:
    """Runs started servers until SIGTERM or SIGINT, then stops them gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await asyncio.gather(*(s.stop() for s in servers))
    if on_stop is not None:
        result = on_stop()
        if asyncio.iscoroutine(result):
            await result
