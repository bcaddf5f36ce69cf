"""gRPC servicer of the gateway: convert, delegate, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from aigc.gateway.v1 import gateway_pb2 as pb
from aigc.gateway.v1 import gateway_pb2_grpc as pb_grpc
from aigc_common.errors import Unimplemented
from aigc_common.server import ServiceBinding
from aigc_gateway.convert import event_to_pb, request_from_pb
from aigc_gateway.core import Gateway
from aigc_gateway.tenants import API_KEY_HEADER, Directory, Tenant


class GatewayServicer(pb_grpc.GatewayServiceServicer):
    """Serves ``aigc.gateway.v1.GatewayService``. Batch RPCs answer UNIMPLEMENTED until the batch issue."""

    def __init__(self, gateway: Gateway, directory: Directory) -> None:
        self._gateway = gateway
        self._directory = directory

    def _tenant(self, context: grpc.aio.ServicerContext) -> Tenant:
        metadata = dict(context.invocation_metadata() or ())
        return self._directory.authenticate(str(metadata.get(API_KEY_HEADER, "")))

    async def Generate(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateResponse]:
        tenant = self._tenant(context)
        # The caller's deadline travels on: the engine stops when nobody waits for the answer any more.
        stream = self._gateway.generate(tenant, request_from_pb(request, context.time_remaining()))
        try:
            async for event in stream:
                yield event_to_pb(event)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def _not_yet(self, method: str) -> None:
        raise Unimplemented(
            f"{method} is not available yet: batch jobs and feedback come with the batch issue"
        )

    async def SubmitBatch(self, request: pb.SubmitBatchRequest, context: Any) -> pb.SubmitBatchResponse:
        await self._not_yet("SubmitBatch")
        raise AssertionError("unreachable")

    async def GetBatch(self, request: pb.GetBatchRequest, context: Any) -> pb.GetBatchResponse:
        await self._not_yet("GetBatch")
        raise AssertionError("unreachable")

    async def StreamBatchResults(
        self, request: pb.StreamBatchResultsRequest, context: Any
    ) -> AsyncIterator[pb.BatchItemResult]:
        await self._not_yet("StreamBatchResults")
        yield pb.BatchItemResult()

    async def CancelBatch(self, request: pb.CancelBatchRequest, context: Any) -> pb.CancelBatchResponse:
        await self._not_yet("CancelBatch")
        raise AssertionError("unreachable")

    async def SendFeedback(self, request: pb.SendFeedbackRequest, context: Any) -> pb.SendFeedbackResponse:
        await self._not_yet("SendFeedback")
        raise AssertionError("unreachable")


def binding(gateway: Gateway, directory: Directory) -> ServiceBinding:
    servicer = GatewayServicer(gateway, directory)
    return ServiceBinding(
        pb.DESCRIPTOR.services_by_name["GatewayService"].full_name,
        lambda server: pb_grpc.add_GatewayServiceServicer_to_server(servicer, server),
    )
