"""Converters between the shared domain types and the ``aigc.common.v1`` protos."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.timestamp_pb2 import Timestamp

from aigc.common.v1 import common_pb2
from aigc_common.errors import InvalidArgument
from aigc_common.types import ChatMessage, FinishReason, Role, SamplingParams, Usage

_ROLE_TO_PB = {
    Role.SYSTEM: common_pb2.ROLE_SYSTEM,
    Role.USER: common_pb2.ROLE_USER,
    Role.ASSISTANT: common_pb2.ROLE_ASSISTANT,
}
_ROLE_FROM_PB = {v: k for k, v in _ROLE_TO_PB.items()}
_FINISH_TO_PB = {
    FinishReason.STOP: common_pb2.FINISH_REASON_STOP,
    FinishReason.LENGTH: common_pb2.FINISH_REASON_LENGTH,
    FinishReason.CONTENT_FILTER: common_pb2.FINISH_REASON_CONTENT_FILTER,
    FinishReason.CANCELLED: common_pb2.FINISH_REASON_CANCELLED,
    FinishReason.ERROR: common_pb2.FINISH_REASON_ERROR,
}
_FINISH_FROM_PB = {v: k for k, v in _FINISH_TO_PB.items()}


def messages_from_pb(
    messages: Iterable[common_pb2.ChatMessage], field: str = "messages"
) -> tuple[ChatMessage, ...]:
    out = []
    for i, m in enumerate(messages):
        if m.role not in _ROLE_FROM_PB:
            raise InvalidArgument("role must be set (system, user or assistant)", field=f"{field}[{i}].role")
        out.append(ChatMessage(_ROLE_FROM_PB[m.role], m.content))
    return tuple(out)


def messages_to_pb(messages: Iterable[ChatMessage]) -> list[common_pb2.ChatMessage]:
    return [common_pb2.ChatMessage(role=_ROLE_TO_PB[m.role], content=m.content) for m in messages]


def sampling_from_pb(s: common_pb2.SamplingParams) -> SamplingParams:
    return SamplingParams(
        max_tokens=s.max_tokens,
        temperature=s.temperature if s.HasField("temperature") else None,
        top_p=s.top_p if s.HasField("top_p") else None,
        top_k=s.top_k,
        seed=s.seed if s.HasField("seed") else None,
        stop=tuple(s.stop),
    )


def sampling_to_pb(s: SamplingParams) -> common_pb2.SamplingParams:
    pb = common_pb2.SamplingParams(max_tokens=s.max_tokens, top_k=s.top_k, stop=list(s.stop))
    if s.temperature is not None:
        pb.temperature = s.temperature
    if s.top_p is not None:
        pb.top_p = s.top_p
    if s.seed is not None:
        pb.seed = s.seed
    return pb


def usage_to_pb(u: Usage) -> common_pb2.Usage:
    return common_pb2.Usage(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        cached_tokens=u.cached_tokens,
        total_tokens=u.total_tokens,
    )


def usage_from_pb(u: common_pb2.Usage) -> Usage:
    return Usage(u.prompt_tokens, u.completion_tokens, u.cached_tokens)


def finish_to_pb(f: FinishReason) -> common_pb2.FinishReason.ValueType:
    return _FINISH_TO_PB[f]


def finish_from_pb(f: common_pb2.FinishReason.ValueType) -> FinishReason:
    return _FINISH_FROM_PB.get(f, FinishReason.ERROR)


def timestamp_to_pb(seconds: float) -> Timestamp:
    """A wall-clock time in seconds (``time.time()``) as a protobuf Timestamp, to the nanosecond."""
    ts = Timestamp()
    ts.FromNanoseconds(round(seconds * 1e9))
    return ts
