"""Trace context crosses gRPC: a server span is the child of the caller's span."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from aigc.cache.v1 import cache_pb2, cache_pb2_grpc
from aigc.common.v1 import common_pb2
from aigc_cache.adapters.memory_store import MemoryStore
from aigc_cache.core import CacheCore
from aigc_cache.metrics import CacheMetrics
from aigc_cache.servicer import binding
from aigc_common.metrics import RpcMetrics
from aigc_common.server import GrpcServer
from aigc_common.settings import GrpcSettings, OtelSettings
from aigc_common.tracing import setup_tracing, traced_channel


@pytest.fixture
def spans() -> InMemorySpanExporter:
    setup_tracing("test", OtelSettings(exporter="none"))
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def test_server_span_continues_the_callers_trace(spans: InMemorySpanExporter) -> None:
    registry = CollectorRegistry()
    core = CacheCore(
        MemoryStore(), CacheMetrics(registry), key_prefix="t:", default_ttl_seconds=5, max_answer_chars=9
    )
    server = GrpcServer("cache", [binding(core)], GrpcSettings(port=0), RpcMetrics(registry))
    await server.start()
    try:
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("caller") as caller:
            channel = traced_channel(server.address)
            await cache_pb2_grpc.CacheServiceStub(channel).Lookup(
                cache_pb2.LookupRequest(
                    partition=cache_pb2.Partition(tenant_id="t"),
                    messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="hi")],
                )
            )
            await channel.close()
    finally:
        await server.stop(0)
    server_spans = [s for s in spans.get_finished_spans() if s.name == "aigc.cache.v1.CacheService/Lookup"]
    assert len(server_spans) == 1
    span = server_spans[0]
    assert span.kind == trace.SpanKind.SERVER
    assert span.context.trace_id == caller.get_span_context().trace_id
    assert span.parent is not None and span.parent.span_id == caller.get_span_context().span_id
