"""Gateway protos <-> domain objects; pure functions."""

from __future__ import annotations

from aigc.common.v1 import common_pb2
from aigc.gateway.v1 import gateway_pb2 as pb
from aigc_common.convert import finish_to_pb, sampling_from_pb, usage_to_pb
from aigc_gateway.core import Delta, Finished, GatewayEvent, GatewayRequest, SafetyDecision, Started


def request_from_pb(r: pb.GenerateRequest, timeout_seconds: float | None = None) -> GatewayRequest:
    return GatewayRequest(
        timeout_seconds=timeout_seconds,
        template_id=r.template_id,
        label=r.label,
        version=r.version,
        variables=dict(r.variables),
        prompt=r.prompt,
        model=r.model,
        sampling=sampling_from_pb(r.sampling),
        skip_cache=r.skip_cache,
        request_id=r.request_id,
    )


def event_to_pb(e: GatewayEvent) -> pb.GenerateResponse:
    if isinstance(e, Delta):
        return pb.GenerateResponse(delta=pb.GenerateDelta(text=e.text, reasoning=e.reasoning))
    if isinstance(e, Started):
        return pb.GenerateResponse(
            started=pb.GenerateStarted(
                request_id=e.request_id,
                bundle_id=e.bundle_id,
                model=e.model,
                cache_hit=e.cache_hit,
                template_version=e.template_version,
            )
        )
    if isinstance(e, SafetyDecision):
        return pb.GenerateResponse(
            safety=pb.SafetyEvent(
                stage=e.stage,
                action=e.action,
                policy_version=e.policy_version,
                rule_ids=list(e.rule_ids),
                message=e.message,
            )
        )
    return _finished_to_pb(e)


def _finished_to_pb(e: Finished) -> pb.GenerateResponse:
    return pb.GenerateResponse(
        finished=pb.GenerateFinished(
            finish_reason=finish_to_pb(e.finish_reason),
            usage=usage_to_pb(e.usage),
            cost=common_pb2.Cost(currency=e.currency, amount_nanos=e.cost_nanos),
            time_to_first_token_seconds=e.time_to_first_token_seconds,
            duration_seconds=e.duration_seconds,
        )
    )
