"""Tenants and API keys, budgets that hold under concurrency, and per-minute rate limits, with the
in-memory counters and (integration) the Redis ones every replica shares."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aigc_common.errors import ConfigError, PermissionDenied, ResourceExhausted, Unauthenticated
from aigc_gateway.adapters.redis_counters import RedisCounters
from aigc_gateway.limits import Budgets, CounterStore, MemoryCounters, RateLimiter
from aigc_gateway.tenants import BudgetSpec, RateLimitSpec, Tenant, TenantDirectory, TenantSpec, new_key


def _directory(tmp_path: Path) -> tuple[TenantDirectory, str, str]:
    key, entry = new_key("acme01")
    old_key, old_entry = new_key("acme00")
    other_key, other_entry = new_key("globex1")
    (tmp_path / "tenants.yaml").write_text(
        f"""
tenants:
  - id: acme
    name: ACME Retail
    api_keys:
      - {{key_id: {entry.key_id}, sha256: {entry.sha256}}}
      - {{key_id: {old_entry.key_id}, sha256: {old_entry.sha256}, disabled: true}}
    allowed_templates: [product_*, chat]
    allowed_models: [smollm2-135m-instruct]
  - id: globex
    api_keys: [{{key_id: {other_entry.key_id}, sha256: {other_entry.sha256}}}]
"""
    )
    return TenantDirectory.from_file(tmp_path / "tenants.yaml"), key, old_key + "|" + other_key


def test_keys_resolve_to_their_tenant_and_are_stored_only_as_hashes(tmp_path: Path) -> None:
    directory, key, others = _directory(tmp_path)
    old_key, other_key = others.split("|")
    assert directory.authenticate(key).id == "acme"
    assert directory.authenticate(other_key).id == "globex"
    assert key not in (tmp_path / "tenants.yaml").read_text()
    for bad in ("", "nonsense", key[:-1] + ("A" if key[-1] != "A" else "B"), old_key):
        with pytest.raises(Unauthenticated) as err:
            directory.authenticate(bad)
        assert err.value.field == "x-api-key"
        assert bad == "" or bad not in str(err.value)


def test_templates_and_models_outside_the_allow_list_are_permission_denied(tmp_path: Path) -> None:
    directory, key, _ = _directory(tmp_path)
    acme = directory.authenticate(key)
    acme.check_template("product_copy")
    acme.check_template("chat")
    with pytest.raises(PermissionDenied) as err:
        acme.check_template("translation")
    assert err.value.field == "template_id"
    with pytest.raises(PermissionDenied):
        acme.check_model("gpt-x")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("tenants: []\n", "field tenants"),
        ("tenants:\n  - id: a\n  - id: a\n", "appears twice"),
        ("tenants:\n  - id: a\n    api_keys: [{key_id: abcd, sha256: nothex}]\n", "sha256"),
        ("tenants:\n  - id: a\n    colour: red\n", "colour"),
        ("tenants: [\n", "line"),
    ],
)
def test_a_broken_tenants_file_names_file_and_field(tmp_path: Path, body: str, expected: str) -> None:
    (tmp_path / "tenants.yaml").write_text(body)
    with pytest.raises(ConfigError) as err:
        TenantDirectory.from_file(tmp_path / "tenants.yaml")
    assert expected in str(err.value) and "tenants.yaml" in str(err.value)


def _tenant(**fields: object) -> Tenant:
    return Tenant(TenantSpec(id="acme", **fields))  # type: ignore[arg-type]


async def _overspend_race(counters: CounterStore, prefix: str) -> None:
    """64 concurrent requests each holding 0.1 against a budget of 1.0, each then using 0.06: the
    holds admitted never exceed the budget, and the spend settles to exactly what was used."""
    tenant = _tenant(budget=BudgetSpec(amount=1.0, currency="CNY", period="day"))
    budgets = Budgets(counters, key_prefix=prefix)
    admitted = 0

    async def one() -> None:
        nonlocal admitted
        try:
            hold = await budgets.reserve(tenant, 100_000_000)
        except ResourceExhausted as exc:
            assert exc.retry_after > 0, "a day budget says when it renews"
            return
        admitted += 1
        await asyncio.sleep(0)
        await budgets.settle(hold, 60_000_000)

    await asyncio.gather(*(one() for _ in range(64)))
    spent = await budgets.spent(tenant)
    assert spent <= 1_000_000_000
    assert spent == admitted * 60_000_000
    # What settling gave back is available again: more small requests fit.
    assert admitted >= 10
    hold = await budgets.reserve(tenant, 1_000_000_000 - spent)
    with pytest.raises(ResourceExhausted):
        await budgets.reserve(tenant, 1)
    await budgets.release(hold)
    assert await budgets.spent(tenant) == spent


async def test_concurrent_streams_never_overspend_a_small_budget_in_memory() -> None:
    await _overspend_race(MemoryCounters(), "t:")


@pytest.mark.integration
async def test_concurrent_streams_never_overspend_a_small_budget_in_redis(
    redis_url: str, unique_name: str
) -> None:
    # Two "replicas" (two clients) racing on the same Redis keys.
    a, b = RedisCounters(redis_url), RedisCounters(redis_url)
    try:
        tenant = _tenant(budget=BudgetSpec(amount=1.0, currency="CNY", period="month"))
        first, second = Budgets(a, key_prefix=unique_name), Budgets(b, key_prefix=unique_name)
        results = await asyncio.gather(
            *((first if i % 2 else second).reserve(tenant, 100_000_000) for i in range(40)),
            return_exceptions=True,
        )
        held = [r for r in results if not isinstance(r, BaseException)]
        assert len(held) == 10 and all(isinstance(r, ResourceExhausted) for r in results if r not in held)
        assert await first.spent(tenant) == 1_000_000_000
        await _overspend_race(a, unique_name + "race:")
    finally:
        await a.close()
        await b.close()


async def test_requests_per_minute_answer_resource_exhausted_with_retry_after() -> None:
    now = [1000.0]
    limiter = RateLimiter(MemoryCounters(), key_prefix="t:", clock=lambda: now[0])
    tenant = _tenant(rate_limits=RateLimitSpec(requests_per_minute=3))
    for _ in range(3):
        await limiter.admit(tenant)
    with pytest.raises(ResourceExhausted) as err:
        await limiter.admit(tenant)
    assert err.value.retry_after == pytest.approx(20.0)  # 1000 s is 40 s into its minute
    assert err.value.field == "rate_limits.requests_per_minute"
    now[0] = 1021.0  # the next minute
    await limiter.admit(tenant)


async def test_tokens_per_minute_count_what_requests_used() -> None:
    now = [60.0]
    limiter = RateLimiter(MemoryCounters(), key_prefix="t:", clock=lambda: now[0])
    tenant = _tenant(rate_limits=RateLimitSpec(tokens_per_minute=100))
    await limiter.admit(tenant)
    await limiter.record_tokens(tenant, 60)
    await limiter.admit(tenant)
    await limiter.record_tokens(tenant, 60)
    with pytest.raises(ResourceExhausted) as err:
        await limiter.admit(tenant)
    assert err.value.field == "rate_limits.tokens_per_minute"
