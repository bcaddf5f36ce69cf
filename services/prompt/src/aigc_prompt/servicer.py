"""gRPC servicer of the prompt service: convert, delegate, nothing else."""

from __future__ import annotations

import grpc

from aigc.common.v1 import common_pb2
from aigc.prompt.v1 import prompt_pb2 as pb
from aigc.prompt.v1 import prompt_pb2_grpc as pb_grpc
from aigc_common.server import ServiceBinding
from aigc_prompt.convert import rendered_to_pb, summary_to_pb, template_to_pb
from aigc_prompt.core import PromptCore


class PromptServicer(pb_grpc.PromptServiceServicer):
    """Serves ``aigc.prompt.v1.PromptService`` from a :class:`PromptCore`."""

    def __init__(self, core: PromptCore) -> None:
        self._core = core

    async def Render(self, request: pb.RenderRequest, context: grpc.aio.ServicerContext) -> pb.RenderResponse:
        t = request.template
        return rendered_to_pb(
            self._core.render(request.tenant_id, t.template_id, dict(request.variables), t.label, t.version)
        )

    async def ListTemplates(
        self, request: pb.ListTemplatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTemplatesResponse:
        entries = self._core.list_templates(request.tenant_id)
        return pb.ListTemplatesResponse(
            templates=[summary_to_pb(e, self._core.labels(e.template_id)) for e in entries]
        )

    async def GetTemplate(
        self, request: pb.GetTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTemplateResponse:
        t = request.template
        tv = self._core.resolve(request.tenant_id, t.template_id, t.label, t.version)
        return template_to_pb(tv, self._core.labels(tv.spec.id), self._core.history(tv.spec.id))

    async def SetLabel(
        self, request: pb.SetLabelRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetLabelResponse:
        previous = self._core.set_label(
            request.tenant_id, request.template_id, request.label, request.version, request.actor
        )
        return pb.SetLabelResponse(previous_version=previous)

    async def EstimateCost(
        self, request: pb.EstimateCostRequest, context: grpc.aio.ServicerContext
    ) -> pb.EstimateCostResponse:
        t = request.template
        est = self._core.estimate_cost(
            request.tenant_id,
            t.template_id,
            dict(request.variables),
            label=t.label,
            version=t.version,
            item_count=request.item_count,
            completion_tokens_per_item=request.completion_tokens_per_item,
        )
        return pb.EstimateCostResponse(
            prompt_tokens=est.prompt_tokens,
            completion_tokens=est.completion_tokens,
            cost=common_pb2.Cost(currency=est.currency, amount_nanos=est.amount_nanos),
        )


def binding(core: PromptCore) -> ServiceBinding:
    servicer = PromptServicer(core)
    return ServiceBinding(
        pb.DESCRIPTOR.services_by_name["PromptService"].full_name,
        lambda server: pb_grpc.add_PromptServiceServicer_to_server(servicer, server),
    )
