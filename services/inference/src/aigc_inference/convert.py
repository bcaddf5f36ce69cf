"""Inference protos <-> domain objects; pure functions."""

from __future__ import annotations

from aigc.inference.v1 import inference_pb2 as pb
from aigc_common.convert import finish_to_pb, messages_from_pb, sampling_from_pb, usage_to_pb
from aigc_common.types import GenerationDelta, GenerationEvent, GenerationFinished, GenerationRequest
from aigc_inference.engine import ModelInfo


def request_from_pb(req: pb.GenerateRequest) -> GenerationRequest:
    return GenerationRequest(
        messages=messages_from_pb(req.messages),
        sampling=sampling_from_pb(req.sampling),
        model=req.model,
        request_id=req.request_id,
        json_schema=req.json_schema,
        tenant_id=req.tenant_id,
        logprobs=req.logprobs,
    )


def event_to_pb(event: GenerationEvent) -> pb.GenerateResponse:
    if isinstance(event, GenerationDelta):
        return pb.GenerateResponse(
            delta=pb.GenerateDelta(
                text=event.text, token_ids=list(event.token_ids), logprobs=list(event.logprobs)
            )
        )
    if isinstance(event, GenerationFinished):
        return pb.GenerateResponse(
            finished=pb.GenerateFinished(
                finish_reason=finish_to_pb(event.finish_reason),
                usage=usage_to_pb(event.usage),
                error_message=event.error_message,
            )
        )
    return pb.GenerateResponse(
        started=pb.GenerateStarted(
            request_id=event.request_id, model=event.model, prompt_tokens=event.prompt_tokens
        )
    )


def model_to_pb(info: ModelInfo) -> pb.ModelInfo:
    return pb.ModelInfo(
        name=info.name,
        engine=info.engine,
        context_window=info.context_window,
        supports_json_schema=info.supports_json_schema,
        chat_template=info.chat_template,
        tokenizer=info.tokenizer,
    )
