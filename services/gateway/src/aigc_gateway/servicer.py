"""gRPC servicer of the gateway: convert, delegate, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from aigc.gateway.v1 import gateway_pb2 as pb
from aigc.gateway.v1 import gateway_pb2_grpc as pb_grpc
from aigc_common.errors import Unimplemented
from aigc_common.server import ServiceBinding
from aigc_gateway.batch.service import BatchService
from aigc_gateway.convert import (
    batch_request_from_pb,
    event_to_pb,
    item_result_to_pb,
    job_view_to_pb,
    request_from_pb,
    submitted_to_pb,
)
from aigc_gateway.core import Gateway
from aigc_gateway.tenants import API_KEY_HEADER, Directory, Tenant


class GatewayServicer(pb_grpc.GatewayServiceServicer):
    """Serves ``aigc.gateway.v1.GatewayService``; batch RPCs when a :class:`BatchService` is given."""

    def __init__(self, gateway: Gateway, directory: Directory, batch: BatchService | None = None) -> None:
        self._gateway = gateway
        self._directory = directory
        self._batch_service = batch

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

    def _batch(self) -> BatchService:
        if self._batch_service is None:
            raise Unimplemented("batch jobs are not enabled on this gateway (AIGC_GATEWAY_BATCH__ENABLED)")
        return self._batch_service

    async def SubmitBatch(
        self, request: pb.SubmitBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitBatchResponse:
        tenant = self._tenant(context)
        submitted = await self._batch().submit(tenant, batch_request_from_pb(request))
        return submitted_to_pb(submitted)

    async def GetBatch(
        self, request: pb.GetBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetBatchResponse:
        return job_view_to_pb(await self._batch().get(self._tenant(context), request.job_id))

    async def StreamBatchResults(
        self, request: pb.StreamBatchResultsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.BatchItemResult]:
        cursor = request.cursor
        async for result in self._batch().results(self._tenant(context), request.job_id, cursor):
            cursor += 1
            yield item_result_to_pb(result, cursor)

    async def CancelBatch(
        self, request: pb.CancelBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelBatchResponse:
        view = await self._batch().cancel(self._tenant(context), request.job_id)
        return pb.CancelBatchResponse(state=job_view_to_pb(view).state)

    async def SendFeedback(self, request: pb.SendFeedbackRequest, context: Any) -> pb.SendFeedbackResponse:
        raise Unimplemented("SendFeedback is not available yet")


def binding(gateway: Gateway, directory: Directory, batch: BatchService | None = None) -> ServiceBinding:
    servicer = GatewayServicer(gateway, directory, batch)
    return ServiceBinding(
        pb.DESCRIPTOR.services_by_name["GatewayService"].full_name,
        lambda server: pb_grpc.add_GatewayServiceServicer_to_server(servicer, server),
    )
