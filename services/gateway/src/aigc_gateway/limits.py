"""Budgets that hold and per-minute rate limits, over a small counter store.

Budgets: before generating, the worst-case cost (prompt bound plus ``max_tokens`` at the model's
price) is *reserved* with one atomic check-and-add against the period's limit; after, the hold is
*settled* to the exact cost (the difference is given back) or *released* on failure or cancel.
Because every reservation is checked and added in one atomic step, concurrent streams can never
together spend more than the budget: the last ones are refused instead.

Rate limits: fixed one-minute windows per tenant for requests and tokens, answered with
RESOURCE_EXHAUSTED and the seconds until the window ends as ``retry-after``.
"""

from __future__ import annotations

import asyncio
import calendar
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aigc_common.errors import ResourceExhausted
from aigc_gateway.tenants import BudgetSpec, Tenant


class CounterStore(Protocol):
    """Integer counters with expiry, shared by gateway replicas (Redis) or in one process."""

    async def add_within(self, key: str, amount: int, limit: int, ttl_seconds: int) -> int | None:
        """Atomically adds ``amount`` if the result stays <= ``limit``; returns the new value, or
        None (and changes nothing) when it would not."""
        ...

    async def add(self, key: str, amount: int, ttl_seconds: int) -> int:
        """Adds ``amount`` (may be negative); returns the new value."""
        ...

    async def get(self, key: str) -> int: ...

    async def close(self) -> None: ...


class MemoryCounters:
    """Counters in this process: the single-machine default. The event loop is single-threaded and
    no method awaits between reading and writing, so each call is atomic."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._values: dict[str, tuple[int, float]] = {}
        self._clock = clock

    def _current(self, key: str) -> int:
        value = self._values.get(key)
        if value is None:
            return 0
        if value[1] and value[1] <= self._clock():
            del self._values[key]
            return 0
        return value[0]

    def _set(self, key: str, value: int, ttl_seconds: int) -> None:
        old = self._values.get(key)
        expires = old[1] if old and old[1] else (self._clock() + ttl_seconds if ttl_seconds else 0.0)
        self._values[key] = (value, expires)

    async def add_within(self, key: str, amount: int, limit: int, ttl_seconds: int) -> int | None:
        value = self._current(key) + amount
        if value > limit:
            return None
        self._set(key, value, ttl_seconds)
        return value

    async def add(self, key: str, amount: int, ttl_seconds: int) -> int:
        value = self._current(key) + amount
        self._set(key, value, ttl_seconds)
        return value

    async def get(self, key: str) -> int:
        return self._current(key)

    async def close(self) -> None:
        return None


def _period(spec: BudgetSpec, now: float) -> tuple[str, float]:
    """The period's key and the seconds until it ends (0 for a budget that never renews)."""
    t = time.gmtime(now)
    if spec.period == "day":
        end = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0)) + 86400
        return time.strftime("%Y-%m-%d", t), end - now
    if spec.period == "month":
        year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
        end = calendar.timegm((year, month, 1, 0, 0, 0))
        return time.strftime("%Y-%m", t), end - now
    return "total", 0.0


@dataclass
class BudgetHold:
    """A reservation against a tenant's budget; settle or release it exactly once."""

    tenant_id: str
    key: str
    amount_nanos: int
    done: bool = False


class Budgets:
    """Reserve, settle and release against each tenant's budget."""

    def __init__(
        self, counters: CounterStore, *, key_prefix: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._counters = counters
        self._prefix = key_prefix
        self._clock = clock

    def _key(self, tenant: Tenant, spec: BudgetSpec) -> tuple[str, float]:
        period, remaining = _period(spec, self._clock())
        return f"{self._prefix}budget:{tenant.id}:{spec.currency}:{period}", remaining

    async def reserve(self, tenant: Tenant, amount_nanos: int) -> BudgetHold | None:
        """Holds ``amount_nanos``; None when the tenant has no budget. RESOURCE_EXHAUSTED when the
        hold does not fit in what is left of the period."""
        spec = tenant.spec.budget
        if spec is None:
            return None
        key, until_renewal = self._key(tenant, spec)
        # Keys outlive their period by a day, then expire: old periods do not pile up in Redis.
        ttl = int(until_renewal) + 86400 if until_renewal else 0
        value = await self._counters.add_within(key, amount_nanos, spec.amount_nanos, ttl)
        if value is None:
            raise ResourceExhausted(
                f"tenant {tenant.id!r} has not enough {spec.period} budget left for this request "
                f"(worst case {amount_nanos / 1e9:.6f} {spec.currency})",
                field="budget",
                retry_after=until_renewal,
            )
        return BudgetHold(tenant.id, key, amount_nanos)

    async def settle(self, hold: BudgetHold | None, actual_nanos: int) -> None:
        """Charges exactly ``actual_nanos``: gives back the rest of the hold (or takes the excess)."""
        if hold is None or hold.done:
            return
        hold.done = True
        if actual_nanos != hold.amount_nanos:
            await self._counters.add(hold.key, actual_nanos - hold.amount_nanos, 0)

    async def release(self, hold: BudgetHold | None) -> None:
        """Gives the whole hold back (the request failed before using the model)."""
        await self.settle(hold, 0)

    async def spent(self, tenant: Tenant) -> int:
        """Nanos spent or held in the current period (0 without a budget)."""
        spec = tenant.spec.budget
        if spec is None:
            return 0
        return await self._counters.get(self._key(tenant, spec)[0])


class RateLimiter:
    """Requests and tokens per minute per tenant, in fixed windows."""

    def __init__(
        self, counters: CounterStore, *, key_prefix: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._counters = counters
        self._prefix = key_prefix
        self._clock = clock

    def _window(self, tenant: Tenant, kind: str) -> tuple[str, float]:
        now = self._clock()
        minute = int(now // 60)
        return f"{self._prefix}rate:{tenant.id}:{kind}:{minute}", 60 - (now % 60)

    async def admit(self, tenant: Tenant) -> None:
        """Counts one request; RESOURCE_EXHAUSTED when the request or token limit is reached."""
        limits = tenant.spec.rate_limits
        if limits.requests_per_minute:
            key, retry = self._window(tenant, "req")
            if await self._counters.add_within(key, 1, limits.requests_per_minute, 120) is None:
                raise ResourceExhausted(
                    f"tenant {tenant.id!r} is over {limits.requests_per_minute} requests per minute",
                    field="rate_limits.requests_per_minute",
                    retry_after=retry,
                )
        if limits.tokens_per_minute:
            key, retry = self._window(tenant, "tok")
            if await self._counters.get(key) >= limits.tokens_per_minute:
                raise ResourceExhausted(
                    f"tenant {tenant.id!r} is over {limits.tokens_per_minute} tokens per minute",
                    field="rate_limits.tokens_per_minute",
                    retry_after=retry,
                )

    async def record_tokens(self, tenant: Tenant, tokens: int) -> None:
        """Adds a finished request's tokens to the current window."""
        if tenant.spec.rate_limits.tokens_per_minute and tokens:
            key, _ = self._window(tenant, "tok")
            await self._counters.add(key, tokens, 120)


async def release_quietly(budgets: Budgets, hold: BudgetHold | None) -> None:
    """Release that survives the caller being cancelled (a hold must not leak on cancel)."""
    if hold is None or hold.done:
        return
    await asyncio.shield(budgets.release(hold))
