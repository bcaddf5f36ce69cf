"""Protos <-> the client's typed values; pure functions shared by the sync and asyncio clients."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from aigc.common.v1 import common_pb2
from aigc.gateway.v1 import gateway_pb2 as pb

from .batch import BatchItem, BatchItemResult, BatchJob, BatchState, BatchSubmission, ItemRejection
from .events import Cost, Delta, Event, Finished, FinishReason, SafetyEvent, Started, Usage

BatchItems = Mapping[str, Mapping[str, str]] | Iterable[BatchItem]
"""Items to submit: ``BatchItem`` values, or a mapping of item id to variables."""


def generate_request(
    *,
    template: str,
    variables: Mapping[str, str] | None,
    label: str,
    version: int,
    prompt: str,
    model: str,
    max_tokens: int,
    temperature: float | None,
    top_p: float | None,
    top_k: int,
    seed: int | None,
    stop: Sequence[str],
    skip_cache: bool,
    request_id: str,
) -> pb.GenerateRequest:
    """The wire request for ``generate``; only sampling values the caller set are sent, so the
    template's own values hold for the rest."""
    if isinstance(stop, str):
        # A bare string is a sequence of characters: every letter would become a stop sequence.
        raise TypeError("stop must be a list of strings, not a string")
    request = pb.GenerateRequest(
        template_id=template,
        label=label,
        version=version,
        variables=dict(variables or {}),
        prompt=prompt,
        model=model,
        skip_cache=skip_cache,
        request_id=request_id,
    )
    sampling = common_pb2.SamplingParams(max_tokens=max_tokens, top_k=top_k, stop=list(stop))
    if temperature is not None:
        sampling.temperature = temperature
    if top_p is not None:
        sampling.top_p = top_p
    if seed is not None:
        sampling.seed = seed
    if sampling.ByteSize():
        request.sampling.CopyFrom(sampling)
    return request


def usage_from_pb(usage: common_pb2.Usage) -> Usage:
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens,
        total_tokens=usage.total_tokens,
    )


def cost_from_pb(cost: common_pb2.Cost) -> Cost:
    # scaleb keeps the nanos exact: no float ever touches money.
    return Cost(currency=cost.currency, amount=Decimal(cost.amount_nanos).scaleb(-9))


def finish_reason_from_pb(value: int) -> FinishReason:
    try:
        name = common_pb2.FinishReason.Name(value)  # type: ignore[arg-type]
    except ValueError:
        # A reason added to the API after this client was built.
        return FinishReason.UNSPECIFIED
    return FinishReason(name.removeprefix("FINISH_REASON_").lower())


def event_from_pb(response: pb.GenerateResponse) -> Event | None:
    """The typed event of one stream message; ``None`` for a kind this client does not know yet,
    so an older client keeps working when the API grows a new event."""
    kind = response.WhichOneof("event")
    if kind == "started":
        s = response.started
        return Started(
            request_id=s.request_id,
            bundle_id=s.bundle_id,
            model=s.model,
            cache_hit=s.cache_hit,
            template_version=s.template_version,
        )
    if kind == "delta":
        return Delta(text=response.delta.text, reasoning=response.delta.reasoning)
    if kind == "safety":
        e = response.safety
        return SafetyEvent(
            stage=e.stage,
            action=e.action,
            policy_version=e.policy_version,
            rule_ids=tuple(e.rule_ids),
            message=e.message,
        )
    if kind == "finished":
        f = response.finished
        return Finished(
            finish_reason=finish_reason_from_pb(f.finish_reason),
            usage=usage_from_pb(f.usage),
            cost=cost_from_pb(f.cost),
            ttft_seconds=f.time_to_first_token_seconds,
            duration_seconds=f.duration_seconds,
        )
    return None


def batch_items_to_pb(items: BatchItems) -> list[pb.BatchItem]:
    if isinstance(items, Mapping):
        return [pb.BatchItem(item_id=k, variables=dict(v)) for k, v in items.items()]
    return [pb.BatchItem(item_id=i.item_id, variables=dict(i.variables)) for i in items]


_PRIORITIES = {
    "low": pb.BATCH_PRIORITY_LOW,
    "normal": pb.BATCH_PRIORITY_NORMAL,
    "high": pb.BATCH_PRIORITY_HIGH,
}


def submit_batch_request(
    *,
    template: str,
    items: BatchItems,
    label: str,
    model: str,
    deadline: datetime | None,
    client_token: str,
    all_or_nothing: bool = False,
    max_tokens: int = 0,
    priority: str = "normal",
) -> pb.SubmitBatchRequest:
    if priority not in _PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(_PRIORITIES)}, got {priority!r}")
    request = pb.SubmitBatchRequest(
        template_id=template,
        label=label,
        items=batch_items_to_pb(items),
        model=model,
        client_token=client_token,
        all_or_nothing=all_or_nothing,
        max_tokens=max_tokens,
        priority=_PRIORITIES[priority],
    )
    if deadline is not None:
        if deadline.tzinfo is None:
            # A naive datetime would be read as UTC by protobuf, hours off for a caller in UTC+8.
            raise ValueError("deadline must be timezone-aware, e.g. datetime.now(UTC) + timedelta(hours=2)")
        request.deadline.FromDatetime(deadline)
    return request


def batch_state_from_pb(value: int) -> BatchState:
    try:
        name = pb.BatchState.Name(value)  # type: ignore[arg-type]
    except ValueError:
        return BatchState.UNSPECIFIED
    return BatchState(name.removeprefix("BATCH_STATE_").lower())


def batch_submission_from_pb(reply: pb.SubmitBatchResponse, client_token: str) -> BatchSubmission:
    return BatchSubmission(
        job_id=reply.job_id,
        item_count=reply.item_count,
        estimated_cost=cost_from_pb(reply.estimated_cost),
        client_token=client_token,
        rejected=tuple(ItemRejection(e.item_id, e.field, e.message) for e in reply.rejected),
    )


def batch_job_from_pb(reply: pb.GetBatchResponse) -> BatchJob:
    return BatchJob(
        job_id=reply.job_id,
        state=batch_state_from_pb(reply.state),
        total_items=reply.total_items,
        succeeded_items=reply.succeeded_items,
        failed_items=reply.failed_items,
        cost=cost_from_pb(reply.cost),
        pending_items=reply.pending_items,
        blocked_items=reply.blocked_items,
        expired_items=reply.expired_items,
        cancelled_items=reply.cancelled_items,
        eta_seconds=reply.eta_seconds,
        estimated_cost=cost_from_pb(reply.estimated_cost),
    )


def batch_item_result_from_pb(reply: pb.BatchItemResult) -> BatchItemResult:
    return BatchItemResult(
        item_id=reply.item_id,
        status=reply.status,
        text=reply.text,
        error=reply.error,
        usage=usage_from_pb(reply.usage),
        cost=cost_from_pb(reply.cost),
        cursor=reply.cursor,
    )


def feedback_request(
    *, request_id: str, rating: int, correction: str, comment: str
) -> pb.SendFeedbackRequest:
    return pb.SendFeedbackRequest(
        request_id=request_id, rating=rating, correction=correction, comment=comment
    )
