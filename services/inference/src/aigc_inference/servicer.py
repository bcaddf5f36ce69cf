"""gRPC servicer of the inference service: convert, delegate, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from aigc.inference.v1 import inference_pb2 as pb
from aigc.inference.v1 import inference_pb2_grpc as pb_grpc
from aigc_common.convert import messages_from_pb
from aigc_common.server import ServiceBinding
from aigc_inference.convert import event_to_pb, model_to_pb, request_from_pb
from aigc_inference.core import InferenceCore


class InferenceServicer(pb_grpc.InferenceServiceServicer):
    """Serves ``aigc.inference.v1.InferenceService`` from an :class:`InferenceCore`."""

    def __init__(self, core: InferenceCore) -> None:
        self._core = core

    async def Generate(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateResponse]:
        stream = self._core.generate(request_from_pb(request))
        try:
            async for event in stream:
                yield event_to_pb(event)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def CountTokens(
        self, request: pb.CountTokensRequest, context: grpc.aio.ServicerContext
    ) -> pb.CountTokensResponse:
        tokens, window = await self._core.count_tokens(
            request.model, messages_from_pb(request.messages), request.text
        )
        return pb.CountTokensResponse(tokens=tokens, context_window=window)

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[model_to_pb(m) for m in self._core.models])


def binding(core: InferenceCore) -> ServiceBinding:
    servicer = InferenceServicer(core)
    return ServiceBinding(
        pb.DESCRIPTOR.services_by_name["InferenceService"].full_name,
        lambda server: pb_grpc.add_InferenceServiceServicer_to_server(servicer, server),
        healthy=core.health,
    )
