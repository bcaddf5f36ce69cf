"""The shared server bootstrap: health, reflection, error mapping and RPC metrics,
exercised through a real service (cache, memory store) on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

from aigc.cache.v1 import cache_pb2, cache_pb2_grpc
from aigc.common.v1 import common_pb2
from aigc_cache.adapters.memory_store import MemoryStore
from aigc_cache.core import CacheCore
from aigc_cache.metrics import CacheMetrics
from aigc_cache.servicer import binding
from aigc_common.metrics import RpcMetrics
from aigc_common.server import GrpcServer, ServiceBinding
from aigc_common.settings import GrpcSettings


@pytest.fixture
async def served() -> AsyncIterator[tuple[GrpcServer, CollectorRegistry]]:
    registry = CollectorRegistry()
    core = CacheCore(
        MemoryStore(), CacheMetrics(registry), key_prefix="t:", default_ttl_seconds=60, max_answer_chars=1000
    )
    server = GrpcServer("cache", [binding(core)], GrpcSettings(port=0), RpcMetrics(registry))
    await server.start()
    yield server, registry
    await server.stop(0)


async def test_health_serving_and_reflection(served: tuple[GrpcServer, CollectorRegistry]) -> None:
    server, _ = served
    async with grpc.aio.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "aigc.cache.v1.CacheService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name async for r in responses for s in r.list_services_response.service}
    assert {"aigc.cache.v1.CacheService", "grpc.health.v1.Health"} <= names


async def test_domain_error_becomes_invalid_argument_and_is_counted(
    served: tuple[GrpcServer, CollectorRegistry],
) -> None:
    server, registry = served
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Lookup(cache_pb2.LookupRequest(partition=cache_pb2.Partition(tenant_id="")))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "partition.tenant_id" in (err.value.details() or "")
        ok = await stub.Lookup(
            cache_pb2.LookupRequest(
                partition=cache_pb2.Partition(tenant_id="t1"),
                messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="hi")],
            )
        )
        assert not ok.hit
    labels = {"service": "cache", "method": "Lookup"}
    assert (
        registry.get_sample_value("aigc_rpc_duration_seconds_count", {**labels, "code": "INVALID_ARGUMENT"})
        == 1
    )
    assert registry.get_sample_value("aigc_rpc_duration_seconds_count", {**labels, "code": "OK"}) == 1
    assert registry.get_sample_value("aigc_rpc_in_flight", labels) == 0


async def test_graceful_stop_turns_health_not_serving(served: tuple[GrpcServer, CollectorRegistry]) -> None:
    server, _ = served
    address = server.address
    await server.stop(0.5)
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_health_follows_the_services_probe() -> None:
    registry = CollectorRegistry()
    core = CacheCore(
        MemoryStore(), CacheMetrics(registry), key_prefix="t:", default_ttl_seconds=60, max_answer_chars=1000
    )
    state = {"ok": True}
    plain = binding(core)
    probed = ServiceBinding(plain.name, plain.register, healthy=lambda: state["ok"])
    server = GrpcServer("cache", [probed], GrpcSettings(port=0), RpcMetrics(registry))
    server.probe_interval = 0.05
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            async def status() -> int:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=plain.name))
                return int(reply.status)

            assert await status() == health_pb2.HealthCheckResponse.SERVING
            state["ok"] = False  # e.g. the engine died
            deadline = asyncio.get_running_loop().time() + 5
            while await status() != health_pb2.HealthCheckResponse.NOT_SERVING:
                assert asyncio.get_running_loop().time() < deadline, "health never turned NOT_SERVING"
                await asyncio.sleep(0.05)
            state["ok"] = True
            while await status() != health_pb2.HealthCheckResponse.SERVING:
                assert asyncio.get_running_loop().time() < deadline, "health never recovered"
                await asyncio.sleep(0.05)
    finally:
        await server.stop(0)
