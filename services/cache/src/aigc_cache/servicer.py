"""gRPC servicer of the cache service: convert, delegate, nothing else."""

from __future__ import annotations

import grpc

from aigc.cache.v1 import cache_pb2 as pb
from aigc.cache.v1 import cache_pb2_grpc as pb_grpc
from aigc_cache.convert import lookup_response_to_pb, partition_from_pb, semantic_threshold_from_pb
from aigc_cache.core import CacheCore, CachedAnswer
from aigc_common.convert import messages_from_pb, sampling_from_pb, usage_from_pb
from aigc_common.server import ServiceBinding


class CacheServicer(pb_grpc.CacheServiceServicer):
    """Serves ``aigc.cache.v1.CacheService`` from a :class:`CacheCore`."""

    def __init__(self, core: CacheCore) -> None:
        self._core = core

    async def Lookup(self, request: pb.LookupRequest, context: grpc.aio.ServicerContext) -> pb.LookupResponse:
        found = await self._core.lookup(
            partition_from_pb(request.partition),
            messages_from_pb(request.messages),
            sampling_from_pb(request.sampling),
            semantic_threshold=semantic_threshold_from_pb(request),
        )
        return lookup_response_to_pb(found)

    async def Store(self, request: pb.StoreRequest, context: grpc.aio.ServicerContext) -> pb.StoreResponse:
        stored = await self._core.store(
            partition_from_pb(request.partition),
            messages_from_pb(request.messages),
            sampling_from_pb(request.sampling),
            CachedAnswer(request.answer, usage_from_pb(request.usage)),
            request.ttl_seconds,
        )
        return pb.StoreResponse(stored=stored)

    async def Invalidate(
        self, request: pb.InvalidateRequest, context: grpc.aio.ServicerContext
    ) -> pb.InvalidateResponse:
        return pb.InvalidateResponse(
            removed=await self._core.invalidate(partition_from_pb(request.partition), request.template_id)
        )


def binding(core: CacheCore) -> ServiceBinding:
    servicer = CacheServicer(core)
    return ServiceBinding(
        pb.DESCRIPTOR.services_by_name["CacheService"].full_name,
        lambda server: pb_grpc.add_CacheServiceServicer_to_server(servicer, server),
    )
