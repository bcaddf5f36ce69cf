"""Gateway protos <-> domain objects; pure functions."""

from __future__ import annotations

from aigc.common.v1 import common_pb2
from aigc.events.v1 import events_pb2
from aigc.gateway.v1 import gateway_pb2 as pb
from aigc_common.convert import finish_to_pb, sampling_from_pb, usage_to_pb
from aigc_common.errors import InvalidArgument
from aigc_gateway.batch.service import BatchRequest, JobView, Submitted
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


_STATES = {
    "queued": pb.BATCH_STATE_QUEUED,
    "running": pb.BATCH_STATE_RUNNING,
    "completed": pb.BATCH_STATE_COMPLETED,
    "cancelled": pb.BATCH_STATE_CANCELLED,
    "expired": pb.BATCH_STATE_EXPIRED,
}


def batch_request_from_pb(r: pb.SubmitBatchRequest) -> BatchRequest:
    items: dict[str, dict[str, str]] = {}
    for item in r.items:
        if item.item_id in items:
            raise InvalidArgument(f"item id {item.item_id!r} appears twice", field="items.item_id")
        items[item.item_id] = dict(item.variables)
    return BatchRequest(
        template_id=r.template_id,
        items=items,
        label=r.label,
        model=r.model,
        deadline=r.deadline.ToNanoseconds() / 1e9 if r.HasField("deadline") else 0.0,
        client_token=r.client_token,
        all_or_nothing=r.all_or_nothing,
        max_tokens=r.max_tokens,
        priority=_priority(r.priority),
    )


_PRIORITIES = {
    pb.BATCH_PRIORITY_UNSPECIFIED: "normal",
    pb.BATCH_PRIORITY_LOW: "low",
    pb.BATCH_PRIORITY_NORMAL: "normal",
    pb.BATCH_PRIORITY_HIGH: "high",
}


def _priority(value: int) -> str:
    try:
        return _PRIORITIES[value]  # type: ignore[index]
    except KeyError:
        raise InvalidArgument(f"unknown priority {value}", field="priority") from None


def submitted_to_pb(s: Submitted) -> pb.SubmitBatchResponse:
    return pb.SubmitBatchResponse(
        job_id=s.job.job_id,
        item_count=s.job.total,
        estimated_cost=common_pb2.Cost(currency=s.job.currency, amount_nanos=s.job.estimated_nanos),
        rejected=[pb.ItemError(item_id=e.item_id, field=e.field, message=e.message) for e in s.rejected],
    )


def job_view_to_pb(v: JobView) -> pb.GetBatchResponse:
    counts = v.counts
    return pb.GetBatchResponse(
        job_id=v.job.job_id,
        state=_STATES[v.state],
        total_items=v.job.total,
        succeeded_items=counts.get("succeeded", 0),
        failed_items=counts.get("failed", 0),
        blocked_items=counts.get("blocked", 0),
        expired_items=counts.get("expired", 0),
        cancelled_items=counts.get("cancelled", 0),
        pending_items=max(0, v.job.total - v.status.done),
        cost=common_pb2.Cost(currency=v.job.currency, amount_nanos=v.status.cost_nanos),
        estimated_cost=common_pb2.Cost(currency=v.job.currency, amount_nanos=v.job.estimated_nanos),
        eta_seconds=v.eta_seconds,
    )


def item_result_to_pb(r: events_pb2.GenerationResult, cursor: int) -> pb.BatchItemResult:
    return pb.BatchItemResult(
        item_id=r.item_id,
        status=r.status,
        text=r.text,
        error=r.error,
        usage=r.usage,
        cost=r.cost,
        cursor=cursor,
    )
