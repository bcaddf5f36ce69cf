"""Prompt protos <-> domain objects; pure functions."""

from __future__ import annotations

from aigc.prompt.v1 import prompt_pb2 as pb
from aigc_common.convert import (
    messages_from_pb,
    messages_to_pb,
    sampling_from_pb,
    sampling_to_pb,
    timestamp_to_pb,
)
from aigc_prompt.core import RenderedPrompt
from aigc_prompt.labels import LabelMove
from aigc_prompt.templates import TemplateEntry, TemplateVersion


def rendered_to_pb(r: RenderedPrompt) -> pb.RenderResponse:
    return pb.RenderResponse(
        version=r.version,
        bundle_id=r.bundle_id,
        messages=messages_to_pb(r.messages),
        model=r.model,
        sampling=sampling_to_pb(r.sampling),
        safety_policy=r.safety_policy,
        knowledge_base=r.knowledge_base,
        json_schema=r.json_schema,
        strategy=r.strategy,
        samples=r.samples,
        show_reasoning=r.show_reasoning,
        semantic_threshold=r.semantic_threshold,
        cache_sampled=r.cache_sampled,
    )


def rendered_from_pb(template_id: str, r: pb.RenderResponse) -> RenderedPrompt:
    return RenderedPrompt(
        template_id=template_id,
        version=r.version,
        bundle_id=r.bundle_id,
        messages=messages_from_pb(r.messages),
        model=r.model,
        sampling=sampling_from_pb(r.sampling),
        safety_policy=r.safety_policy,
        knowledge_base=r.knowledge_base,
        json_schema=r.json_schema,
        strategy=r.strategy or "none",
        samples=r.samples or 1,
        show_reasoning=r.show_reasoning,
        semantic_threshold=r.semantic_threshold,
        cache_sampled=r.cache_sampled,
    )


def summary_to_pb(entry: TemplateEntry, labels: dict[str, int]) -> pb.TemplateSummary:
    latest = entry.versions[entry.latest].spec
    return pb.TemplateSummary(
        template_id=entry.template_id,
        description=latest.description,
        labels=labels,
        latest_version=entry.latest,
    )


def label_move_to_pb(move: LabelMove) -> pb.LabelMove:
    return pb.LabelMove(
        label=move.label,
        from_version=move.from_version,
        to_version=move.to_version,
        actor=move.actor,
        at=timestamp_to_pb(move.at),
    )


def template_to_pb(
    tv: TemplateVersion, labels: dict[str, int], history: list[LabelMove]
) -> pb.GetTemplateResponse:
    spec = tv.spec
    return pb.GetTemplateResponse(
        label_history=[label_move_to_pb(m) for m in history],
        template_id=spec.id,
        version=spec.version,
        description=spec.description,
        labels=labels,
        strategy=spec.strategy.name,
        variables=[
            pb.VariableSpec(
                name=name,
                type=v.type,
                required=v.required,
                max_length=v.max_length,
                allowed_values=v.allowed_values,
                default_value=v.default or "",
                description=v.description,
            )
            for name, v in spec.variables.items()
        ],
    )
