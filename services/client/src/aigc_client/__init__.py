"""Python client of the AIGC Engine gateway, for business teams.

``Client`` blocks and may be shared between threads; ``AsyncClient`` is its asyncio twin. Both
stream generations as typed events, collect them with ``complete``, wrap the batch and feedback
RPCs, raise one typed error per gRPC status, and retry only where a retry cannot charge twice.
Nothing the caller sends or receives (prompt, variables, answer, API key) is logged.
"""

from .async_client import AsyncClient
from .batch import BatchItem, BatchItemResult, BatchJob, BatchState, BatchSubmission, ItemRejection
from .errors import (
    AigcError,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from .events import Cost, Delta, Event, Finished, FinishReason, Result, SafetyEvent, Started, Usage
from .retry import USE_CLIENT_DEFAULT
from .sync_client import Client

__all__ = [
    "USE_CLIENT_DEFAULT",
    "AigcError",
    "AsyncClient",
    "BatchItem",
    "BatchItemResult",
    "BatchJob",
    "BatchState",
    "BatchSubmission",
    "Cancelled",
    "Client",
    "Cost",
    "DeadlineExceeded",
    "Delta",
    "Event",
    "FailedPrecondition",
    "FinishReason",
    "Finished",
    "Internal",
    "InvalidArgument",
    "ItemRejection",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Result",
    "SafetyEvent",
    "Started",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Usage",
]
