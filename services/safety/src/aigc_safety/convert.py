"""Safety protos <-> domain objects; pure functions."""

from __future__ import annotations

from aigc.safety.v1 import safety_pb2 as pb
from aigc_common.errors import InvalidArgument
from aigc_safety.types import (
    Action,
    OutputDelta,
    OutputEnd,
    OutputEvent,
    OutputOpen,
    PiiEntity,
    RuleHit,
    RuleInfo,
    Verdict,
)

_ACTION_TO_PB = {
    Action.ALLOW: pb.ACTION_ALLOW,
    Action.REDACT: pb.ACTION_REDACT,
    Action.BLOCK: pb.ACTION_BLOCK,
    Action.REVIEW: pb.ACTION_REVIEW,
}


def action_to_pb(action: Action) -> pb.Action.ValueType:
    return _ACTION_TO_PB[action]


_ACTION_FROM_PB = {v: k for k, v in _ACTION_TO_PB.items()}


def verdict_from_pb(v: pb.Verdict) -> Verdict:
    # An action this build does not know is treated as the safest one.
    return Verdict(
        action=_ACTION_FROM_PB.get(v.action, Action.BLOCK),
        policy_version=v.policy_version,
        hits=tuple(
            RuleHit(h.rule_id, h.category, h.severity, tuple((s.start, s.end) for s in h.spans), h.score)
            for h in v.hits
        ),
        redacted_text=v.redacted_text,
        message=v.message,
        entities=tuple(entity_from_pb(e) for e in v.entities),
    )


def _span_to_pb(span: tuple[int, int]) -> pb.Span:
    return pb.Span(start=span[0], end=span[1])


def hit_to_pb(hit: RuleHit) -> pb.RuleHit:
    return pb.RuleHit(
        rule_id=hit.rule_id,
        category=hit.category,
        severity=hit.severity,
        spans=[_span_to_pb(s) for s in hit.spans],
        score=hit.score,
    )


def verdict_to_pb(verdict: Verdict) -> pb.Verdict:
    return pb.Verdict(
        action=action_to_pb(verdict.action),
        policy_version=verdict.policy_version,
        hits=[hit_to_pb(h) for h in verdict.hits],
        redacted_text=verdict.redacted_text,
        message=verdict.message,
        entities=[entity_to_pb(e) for e in verdict.entities],
    )


def entity_to_pb(entity: PiiEntity) -> pb.PiiEntity:
    return pb.PiiEntity(type=entity.type, span=_span_to_pb(entity.span), placeholder=entity.placeholder)


def entity_from_pb(entity: pb.PiiEntity) -> PiiEntity:
    return PiiEntity(entity.type, (entity.span.start, entity.span.end), entity.placeholder)


def rule_info_to_pb(rule: RuleInfo) -> pb.RuleInfo:
    return pb.RuleInfo(
        rule_id=rule.rule_id,
        category=rule.category,
        action=action_to_pb(rule.action),
        language=rule.language,
        description=rule.description,
    )


def output_event_from_pb(req: pb.CheckOutputRequest) -> OutputEvent:
    kind = req.WhichOneof("event")
    if kind == "open":
        return OutputOpen(
            tenant_id=req.open.tenant_id,
            policy=req.open.policy,
            request_id=req.open.request_id,
            reasoning=req.open.reasoning,
            bundle_id=req.open.bundle_id,
        )
    if kind == "delta":
        return OutputDelta(req.delta)
    if kind == "end":
        return OutputEnd()
    raise InvalidArgument("set one of open, delta or end", field="event")


def output_result_to_pb(result: str | Verdict) -> pb.CheckOutputResponse:
    if isinstance(result, Verdict):
        return pb.CheckOutputResponse(violation=verdict_to_pb(result))
    return pb.CheckOutputResponse(released=result)
