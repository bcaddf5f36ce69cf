"""Typed errors: one class per gRPC status the gateway answers with.

The gateway formats a domain error as ``"<field>: <message>"`` when the error names the request
field at fault (``aigc_common.errors.AigcError``), and puts the seconds to wait for a
RESOURCE_EXHAUSTED in the trailing metadata ``retry-after``. Both are parsed back here so callers
can branch on ``err.field`` and ``err.retry_after`` instead of on message text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, ClassVar, Protocol

import grpc

# A field path as the services write it: `template_id`, `sampling.temperature`, `variables.品名`,
# `messages[2].content`. No spaces, so prose such as "inference failed: UNAVAILABLE" is not a field.
_FIELD_PREFIX = re.compile(
    r"^(?P<field>[A-Za-z_]\w*(?:\.[^\s:.\[\]]+|\[\d+\])*): (?P<message>.+)\Z", re.DOTALL
)

Metadata = tuple[tuple[str, str | bytes], ...]


class AigcError(Exception):
    """Base of every error the client raises for a failed call.

    ``code`` is the gRPC status, ``details`` the server's message as sent, ``field`` the request
    field at fault when the message names one (else ``None``) and ``message`` the details without
    that prefix. Messages come from the server and never echo prompt text.
    """

    default_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        details: str,
        *,
        code: grpc.StatusCode | None = None,
        trailing_metadata: Metadata = (),
    ) -> None:
        super().__init__(details)
        self.code: grpc.StatusCode = code or self.default_code
        self.details = details
        self.trailing_metadata = trailing_metadata
        match = _FIELD_PREFIX.match(details)
        self.field: str | None = match["field"] if match else None
        self.message: str = match["message"] if match else details

    def __str__(self) -> str:
        return f"{self.code.name}: {self.details}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments do not survive the default exception pickling; rebuilding from
        # the details and restoring the attributes keeps errors usable across process pools.
        return (type(self), (self.details,), self.__dict__)


class Cancelled(AigcError):
    """The call was cancelled (by the server, or the client closed the stream)."""

    default_code = grpc.StatusCode.CANCELLED


class InvalidArgument(AigcError):
    """The request is malformed: unknown template, missing variable, bad sampling value.
    ``field`` names the request field when the server said which one."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(AigcError):
    """The call's timeout passed before it finished."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(AigcError):
    """A named thing (batch job, template version) does not exist."""

    default_code = grpc.StatusCode.NOT_FOUND


class PermissionDenied(AigcError):
    """The API key's tenant may not use the named template, model or knowledge base."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(AigcError):
    """A rate limit, budget or queue is full. ``retry_after`` is the server's advice in seconds
    (from the ``retry-after`` trailing metadata), ``None`` when it gave none."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(
        self,
        details: str,
        *,
        code: grpc.StatusCode | None = None,
        trailing_metadata: Metadata = (),
    ) -> None:
        super().__init__(details, code=code, trailing_metadata=trailing_metadata)
        self.retry_after: float | None = _retry_after(trailing_metadata)


class FailedPrecondition(AigcError):
    """The system is not in a state to do this (e.g. the batch job is already cancelled)."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class Unimplemented(AigcError):
    """The RPC is declared in the API but not available in the gateway this client talks to."""

    default_code = grpc.StatusCode.UNIMPLEMENTED


class Internal(AigcError):
    """The server failed unexpectedly; its log has the cause."""

    default_code = grpc.StatusCode.INTERNAL


class Unavailable(AigcError):
    """The gateway or a dependency is down or unreachable. Safe to retry before the first message
    of a stream; the client does so itself within its retry budget."""

    default_code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(AigcError):
    """The API key is missing or unknown."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: dict[grpc.StatusCode, type[AigcError]] = {
    cls.default_code: cls
    for cls in (
        Cancelled,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Unimplemented,
        Internal,
        Unavailable,
        Unauthenticated,
    )
}


class _Status(Protocol):
    """What both ``grpc.RpcError`` flavours (sync call objects and ``grpc.aio.AioRpcError``) offer."""

    def code(self) -> grpc.StatusCode: ...

    def details(self) -> str | None: ...

    def trailing_metadata(self) -> Iterable[tuple[str, str | bytes]] | None: ...


def error_for_status(code: grpc.StatusCode, details: str, trailing_metadata: Metadata = ()) -> AigcError:
    """The typed error for a status; codes without a class of their own (ABORTED, DATA_LOSS, ...)
    give the base :class:`AigcError` with that code."""
    cls = _BY_CODE.get(code, AigcError)
    return cls(details, code=code, trailing_metadata=trailing_metadata)


def error_from_rpc(exc: grpc.RpcError) -> AigcError:
    """The typed error for a failed call, from either the sync or the asyncio API."""
    # A bare RpcError (raised by some grpc internals) has no status methods: treat it as UNKNOWN.
    status: _Status | None = exc if callable(getattr(exc, "code", None)) else None
    if status is None:
        return error_for_status(grpc.StatusCode.UNKNOWN, str(exc) or "UNKNOWN")
    code = status.code()
    details = status.details() or code.name
    trailing = tuple((str(k), v) for k, v in (status.trailing_metadata() or ()))
    return error_for_status(code, details, trailing)


def _retry_after(metadata: Metadata) -> float | None:
    for key, value in metadata:
        if key.lower() != "retry-after":
            continue
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        try:
            seconds = float(text.strip())
        except ValueError:
            return None
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None
