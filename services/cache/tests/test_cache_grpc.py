"""The cache servicer behind the real server bootstrap: the semantic tier over gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import CollectorRegistry

from aigc.cache.v1 import cache_pb2, cache_pb2_grpc
from aigc.common.v1 import common_pb2
from aigc_cache.adapters.memory_store import MemoryStore
from aigc_cache.adapters.minilm_embedder import MiniLmEmbedder
from aigc_cache.convert import lookup_response_from_pb
from aigc_cache.core import CacheCore, CacheTier
from aigc_cache.metrics import CacheMetrics
from aigc_cache.servicer import binding
from aigc_common.metrics import RpcMetrics
from aigc_common.server import GrpcServer
from aigc_common.settings import GrpcSettings

PARTITION = cache_pb2.Partition(
    tenant_id="acme", bundle_id="cs-qa@3", model="smollm2", safety_policy_version="p1"
)


def user(text: str) -> list[common_pb2.ChatMessage]:
    return [common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text)]


@pytest.fixture
async def stub(embedder: MiniLmEmbedder) -> AsyncIterator[cache_pb2_grpc.CacheServiceStub]:
    registry = CollectorRegistry()
    core = CacheCore(
        MemoryStore(),
        CacheMetrics(registry),
        key_prefix="t:",
        default_ttl_seconds=60,
        max_answer_chars=1000,
        embedder=embedder,
    )
    server = GrpcServer("cache", [binding(core)], GrpcSettings(port=0), RpcMetrics(registry))
    await server.start()
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield cache_pb2_grpc.CacheServiceStub(channel)
    await server.stop(0)


async def test_semantic_hit_over_grpc(stub: cache_pb2_grpc.CacheServiceStub) -> None:
    stored = await stub.Store(
        cache_pb2.StoreRequest(
            partition=PARTITION,
            messages=user("How do I return an item I bought?"),
            answer="Open Orders and press Return.",
            usage=common_pb2.Usage(prompt_tokens=20, completion_tokens=8),
        )
    )
    assert stored.stored
    paraphrase = user("What is the process for returning a purchase?")
    reply = await stub.Lookup(
        cache_pb2.LookupRequest(partition=PARTITION, messages=paraphrase, semantic_threshold=0.7)
    )
    assert reply.hit and reply.tier == cache_pb2.TIER_SEMANTIC
    assert 0.7 <= reply.similarity < 1.0
    found = lookup_response_from_pb(reply)
    assert found is not None and found.tier == CacheTier.SEMANTIC
    assert found.answer == "Open Orders and press Return." and found.usage.completion_tokens == 8

    for exact_only in (
        cache_pb2.LookupRequest(partition=PARTITION, messages=paraphrase),
        cache_pb2.LookupRequest(
            partition=PARTITION, messages=paraphrase, semantic_threshold=0.7, exact_only=True
        ),
    ):
        miss = await stub.Lookup(exact_only)
        assert not miss.hit and miss.tier == cache_pb2.TIER_UNSPECIFIED


async def test_a_threshold_above_one_is_invalid_argument(stub: cache_pb2_grpc.CacheServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Lookup(
            cache_pb2.LookupRequest(partition=PARTITION, messages=user("hi"), semantic_threshold=1.5)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "semantic_threshold" in (err.value.details() or "")
