"""Domain errors raised by service cores.

Cores raise these and know nothing of gRPC; one server interceptor
(:mod:`aigc_common.interceptors`) maps each to its status code. Messages are safe to
show a caller: they name the offending field and never echo prompt text.
"""

from __future__ import annotations


class AigcError(Exception):
    """Base of every error a caller may see. ``field`` names the request field at fault."""

    def __init__(self, message: str, *, field: str = "") -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class InvalidArgument(AigcError):
    """The request is malformed: unknown template, missing variable, bad sampling value."""


class NotFound(AigcError):
    """A named thing (batch job, document) does not exist."""


class PermissionDenied(AigcError):
    """The caller's tenant may not use the named template, model or knowledge base."""


class Unauthenticated(AigcError):
    """The API key is missing or unknown."""


class ResourceExhausted(AigcError):
    """A rate limit, budget or queue is full. ``retry_after`` is in seconds (0 = unknown)."""

    def __init__(self, message: str, *, field: str = "", retry_after: float = 0.0) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class Unavailable(AigcError):
    """A dependency (engine, broker) is down; safe to retry before the first token."""


class DeadlineExceeded(AigcError):
    """The request's deadline passed before it finished."""


class FailedPrecondition(AigcError):
    """The system is not in a state to do this (e.g. a cancelled batch job)."""


class Unimplemented(AigcError):
    """The RPC is declared in the API but not available in this release."""


class ConfigError(Exception):
    """Configuration is invalid; raised at start-up with what to change."""
