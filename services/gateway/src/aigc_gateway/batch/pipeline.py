"""A batch item through the same pipeline as an interactive request, without streaming: the
worker's ``process``. Budget was reserved for the whole job at submission, so items run prepaid."""

from __future__ import annotations

from collections.abc import Mapping

from aigc.common.v1 import common_pb2
from aigc.events.v1 import events_pb2
from aigc_common.convert import usage_to_pb
from aigc_common.errors import FailedPrecondition
from aigc_common.types import FinishReason, SamplingParams
from aigc_gateway.core import Delta, Finished, Gateway, GatewayRequest, SafetyDecision, Started
from aigc_gateway.tenants import Tenant


class BatchPipeline:
    """Runs one ``GenerationRequested`` through :class:`Gateway` and returns its result."""

    def __init__(self, gateway: Gateway, tenants: Mapping[str, Tenant]) -> None:
        self._gateway = gateway
        self._tenants = tenants

    async def __call__(self, item: events_pb2.GenerationRequested) -> events_pb2.GenerationResult:
        tenant = self._tenants.get(item.tenant_id)
        if tenant is None:
            raise FailedPrecondition(
                f"tenant {item.tenant_id!r} is not configured any more", field="tenant_id"
            )
        request = GatewayRequest(
            template_id=item.template_id,
            label=item.label,
            version=item.version,
            variables=dict(item.variables),
            model=item.model,
            sampling=SamplingParams(max_tokens=item.max_tokens),
            request_id=f"{item.job_id}/{item.item_id}",
            prepaid=True,
        )
        text: list[str] = []
        bundle_id = ""
        blocked = False
        finished: Finished | None = None
        async for event in self._gateway.generate(tenant, request):
            if isinstance(event, Started):
                bundle_id = event.bundle_id
            elif isinstance(event, Delta) and not event.reasoning:
                text.append(event.text)
            elif isinstance(event, SafetyDecision) and event.action == "block":
                blocked = True
            elif isinstance(event, Finished):
                finished = event
        status = "succeeded"
        if blocked or (finished is not None and finished.finish_reason == FinishReason.CONTENT_FILTER):
            status = "blocked"
        usage = finished.usage if finished else None
        return events_pb2.GenerationResult(
            job_id=item.job_id,
            item_id=item.item_id,
            tenant_id=item.tenant_id,
            status=status,
            # A blocked item's partial text is never handed out.
            text="" if status == "blocked" else "".join(text),
            usage=usage_to_pb(usage) if usage else None,
            cost=common_pb2.Cost(currency=finished.currency, amount_nanos=finished.cost_nanos)
            if finished
            else None,
            bundle_id=bundle_id,
            attempts=max(item.attempt, 1),
        )
