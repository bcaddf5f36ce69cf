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


class GatewayServicer(pb_grpc.GatewayServiceServicer):
    """Serves ``aigc.gateway.v1.GatewayService``. Batch RPCs answer UNIMPLEMENTED until the batch issue."""

    def __init__(self, gateway: Gateway, tenant_id: str) -> None:
        self._gateway = gateway
        self._tenant_id = tenant_id

    async def Generate(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateResponse]:
        stream = self._gateway.generate(self._tenant_id, request_from_pb(request))
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


def binding(gateway: Gateway, tenant_id: str) -> ServiceBinding:
    servicer = GatewayServicer(gateway, tenant_id)
    return ServiceBinding(
        pb.DESCRIPTOR.services_by_name["GatewayService"].full_name,
        lambda server: pb_grpc.add_GatewayServiceServicer_to_server(servicer, server),
    )
