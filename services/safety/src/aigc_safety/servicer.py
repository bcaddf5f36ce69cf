"""gRPC servicer of the safety service: convert, delegate, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import grpc

from aigc.safety.v1 import safety_pb2 as pb
from aigc.safety.v1 import safety_pb2_grpc as pb_grpc
from aigc_common.server import ServiceBinding
from aigc_safety.convert import (
    entity_to_pb,
    output_event_from_pb,
    output_result_to_pb,
    rule_info_to_pb,
    verdict_to_pb,
)
from aigc_safety.core import SafetyCore


class SafetyServicer(pb_grpc.SafetyServiceServicer):
    """Serves ``aigc.safety.v1.SafetyService`` from a :class:`SafetyCore`."""

    def __init__(self, core: SafetyCore) -> None:
        self._core = core

    async def CheckInput(
        self, request: pb.CheckInputRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckInputResponse:
        verdict = self._core.check_input(
            request.tenant_id,
            request.policy,
            request.text,
            request_id=request.request_id,
            bundle_id=request.bundle_id,
        )
        return pb.CheckInputResponse(verdict=verdict_to_pb(verdict))

    async def CheckOutput(
        self, request_iterator: AsyncIterable[pb.CheckOutputRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.CheckOutputResponse]:
        events = (output_event_from_pb(request) async for request in request_iterator)
        async for result in self._core.moderate(events):
            yield output_result_to_pb(result)

    async def Redact(self, request: pb.RedactRequest, context: grpc.aio.ServicerContext) -> pb.RedactResponse:
        redacted, entities = self._core.redact(request.text, request.tenant_id, request.policy, request.mode)
        return pb.RedactResponse(redacted_text=redacted, entities=[entity_to_pb(e) for e in entities])

    async def ListRules(
        self, request: pb.ListRulesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRulesResponse:
        policy = self._core.policy(request.tenant_id, request.policy)
        return pb.ListRulesResponse(
            pack_version=policy.version,
            rules=[rule_info_to_pb(r) for r in self._core.list_rules(request.tenant_id, request.policy)],
            reload_error=self._core.reload_error,
        )


def binding(core: SafetyCore) -> ServiceBinding:
    servicer = SafetyServicer(core)
    return ServiceBinding(
        pb.DESCRIPTOR.services_by_name["SafetyService"].full_name,
        lambda server: pb_grpc.add_SafetyServiceServicer_to_server(servicer, server),
    )
