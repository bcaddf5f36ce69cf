"""OpenTelemetry tracing: a tracer provider per process and W3C trace context carried in
gRPC metadata (server side in :mod:`aigc_common.interceptors`, client side here)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from aigc_common.settings import OtelSettings


def setup_tracing(service: str, settings: OtelSettings) -> InMemorySpanExporter | None:
    """Installs the process's tracer provider once; returns the exporter when it is in memory."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return None  # another service in this process set it up already
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"aigc-{service}"}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
    )
    memory: InMemorySpanExporter | None = None
    if settings.exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif settings.exporter == "memory":
        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    return memory


def _with_trace_metadata(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    for key, value in carrier.items():
        metadata[key] = value
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _TraceUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Awaitable[Any]], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(_with_trace_metadata(client_call_details), request)


class _TraceUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Awaitable[Any]], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(_with_trace_metadata(client_call_details), request)


class _TraceStreamStream(grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self,
        continuation: Callable[..., Awaitable[Any]],
        client_call_details: Any,
        request_iterator: AsyncIterable[Any],
    ) -> Any:
        return await continuation(_with_trace_metadata(client_call_details), request_iterator)


def traced_channel(target: str, options: list[tuple[str, Any]] | None = None) -> grpc.aio.Channel:
    """An insecure channel whose calls carry the caller's trace context in metadata."""
    return grpc.aio.insecure_channel(
        target,
        options=options or [],
        interceptors=[_TraceUnaryUnary(), _TraceUnaryStream(), _TraceStreamStream()],
    )
