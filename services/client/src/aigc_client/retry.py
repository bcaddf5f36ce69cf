"""When a failed call may be tried again, how long to wait, and the deadline all attempts share."""

from __future__ import annotations

import enum
import logging
import random
import time
from dataclasses import dataclass
from typing import Final

from .errors import AigcError, DeadlineExceeded, ResourceExhausted, Unavailable

log = logging.getLogger("aigc_client")


class UseClientDefault(enum.Enum):
    """Marker for a per-call ``timeout`` that was not given: the client's own timeout applies.
    (``None`` cannot be the marker: it means "no deadline".)"""

    TOKEN = 0


USE_CLIENT_DEFAULT: Final = UseClientDefault.TOKEN

Timeout = float | None | UseClientDefault


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries of errors that cannot have done anything on the server.

    The client only consults this where a retry is safe: unary calls, and streams before their
    first message arrived.
    """

    retries: int = 2
    """Retries after the first attempt; 0 turns retrying off."""
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    retry_resource_exhausted: bool = False
    """Also retry RESOURCE_EXHAUSTED, waiting the server's ``retry-after``. Off by default: a
    rate-limited caller usually wants to know at once and shed load rather than queue."""
    max_retry_after: float = 10.0
    """Longest ``retry-after`` worth waiting for; a longer one is raised at once."""

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("retries must be >= 0")
        if not 0 < self.backoff_initial <= self.backoff_max:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        if self.max_retry_after < 0:
            raise ValueError("max_retry_after must be >= 0")

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter: half fixed so a retry never fires at once, half
        random so clients that failed together do not retry together."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def delay(self, error: AigcError, attempt: int, remaining: float | None) -> float | None:
        """Seconds to wait before retrying after ``error`` on attempt ``attempt`` (0-based), or
        ``None`` when the error must be raised: not retryable, retries used up, or the wait would
        not fit in the time left before the deadline."""
        if attempt >= self.retries:
            return None
        if isinstance(error, Unavailable):
            wait = self.backoff(attempt)
        elif isinstance(error, ResourceExhausted) and self.retry_resource_exhausted:
            if error.retry_after is None:
                wait = self.backoff(attempt)
            elif error.retry_after > self.max_retry_after:
                return None
            else:
                # Never earlier than the server asked; a little later, spread across clients.
                wait = error.retry_after * (1 + random.uniform(0, 0.1))
        else:
            return None
        if remaining is not None and wait >= remaining:
            return None
        return wait


class Deadline:
    """One deadline shared by every attempt of a call, so retries never stretch the caller's timeout."""

    def __init__(self, timeout: float | None) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be > 0 seconds, or None for no deadline")
        self._end = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left (may be <= 0), or ``None`` without a deadline."""
        return None if self._end is None else self._end - time.monotonic()

    def attempt_timeout(self) -> float | None:
        """The gRPC timeout for the next attempt; raises when no time is left for one."""
        left = self.remaining()
        if left is not None and left <= 0:
            raise DeadlineExceeded("the call's timeout passed before the next attempt could start")
        return left


def log_retry(method: str, error: AigcError, attempt: int, retries: int, delay: float) -> None:
    # The status code only: details, metadata (the API key) and request text stay out of logs.
    log.info(
        "retrying %s after %s (retry %d of %d in %.2fs)", method, error.code.name, attempt + 1, retries, delay
    )
