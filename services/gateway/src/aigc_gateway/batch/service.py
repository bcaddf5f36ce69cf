"""The batch API: submit a job (validate, estimate, reserve, record, publish), follow it, stream its
results from a cursor, cancel it. No gRPC or Kafka here: publishing goes through a port.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

from aigc.events.v1 import events_pb2
from aigc_common.convert import timestamp_to_pb
from aigc_common.errors import InvalidArgument, NotFound, PermissionDenied
from aigc_common.pricing import Price
from aigc_common.types import SamplingParams
from aigc_gateway.batch.joblog import JobLog
from aigc_gateway.batch.pacer import PRIORITY_WEIGHTS, Pacer
from aigc_gateway.core import worst_case_nanos
from aigc_gateway.jobs import JobRecord, JobStatus, JobStore
from aigc_gateway.limits import BudgetHold, Budgets
from aigc_gateway.ports import PromptPort
from aigc_gateway.tenants import Tenant

MAX_ITEMS = 10_000


@dataclass(frozen=True, slots=True)
class BatchRequest:
    template_id: str
    items: Mapping[str, Mapping[str, str]]
    label: str = ""
    model: str = ""
    deadline: float = 0.0
    client_token: str = ""
    all_or_nothing: bool = False
    max_tokens: int = 0
    priority: str = "normal"


@dataclass(frozen=True, slots=True)
class ItemError:
    item_id: str
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class Submitted:
    job: JobRecord
    rejected: tuple[ItemError, ...] = ()


@dataclass(frozen=True, slots=True)
class JobView:
    """A job with its progress, for GetBatch."""

    job: JobRecord
    status: JobStatus
    state: str
    eta_seconds: float
    counts: dict[str, int] = field(default_factory=dict)


class BatchService:
    """Jobs of authenticated tenants."""

    def __init__(
        self,
        *,
        prompt: PromptPort,
        store: JobStore,
        pacer: Pacer,
        job_log: JobLog,
        budgets: Budgets,
        prices: Mapping[str, Price],
        poll_interval_s: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._prompt = prompt
        self._store = store
        self._pacer = pacer
        self._job_log = job_log
        self._budgets = budgets
        self._prices = dict(prices)
        self._poll = poll_interval_s
        self._clock = clock

    async def submit(self, tenant: Tenant, req: BatchRequest) -> Submitted:
        if not req.template_id:
            raise InvalidArgument("must not be empty", field="template_id")
        tenant.check_template(req.template_id)
        if not req.items:
            raise InvalidArgument("a job needs at least one item", field="items")
        if len(req.items) > MAX_ITEMS:
            raise InvalidArgument(f"at most {MAX_ITEMS} items per job", field="items")
        if req.deadline and req.deadline <= self._clock():
            raise InvalidArgument("is in the past", field="deadline")
        if req.priority not in PRIORITY_WEIGHTS:
            raise InvalidArgument(f"must be one of {', '.join(PRIORITY_WEIGHTS)}", field="priority")
        if req.client_token:
            # A resubmission with the same token is the same job: nothing is published twice.
            known = await self._store.find_by_token(tenant.id, req.client_token)
            existing = await self._store.get(known) if known else None
            if existing is not None:
                return Submitted(existing)
        accepted: list[tuple[str, Mapping[str, str]]] = []
        rejected: list[ItemError] = []
        total_nanos = 0
        currency = ""
        model = req.model
        for item_id, variables in req.items.items():
            if not item_id or len(item_id) > 256:
                rejected.append(ItemError(item_id, "item_id", "must be 1 to 256 characters"))
                continue
            try:
                rendered = await self._prompt.render(tenant.id, req.template_id, variables, req.label, 0)
            except InvalidArgument as exc:
                if exc.field and not exc.field.startswith("variables"):
                    raise  # the template, label or version: the same for every item, so the job's error
                rejected.append(ItemError(item_id, exc.field, str(exc)))
                continue
            model = req.model or rendered.model
            sampling = SamplingParams(max_tokens=req.max_tokens).merged_over(rendered.sampling)
            price = self._prices.get(model)
            if price is not None:
                currency = price.currency
                total_nanos += worst_case_nanos(price, rendered, sampling)
            accepted.append((item_id, variables))
        if rejected and (req.all_or_nothing or not accepted):
            first = rejected[0]
            raise InvalidArgument(
                f"{len(rejected)} of {len(req.items)} items are invalid; first: item {first.item_id!r}: {first.message}",
                field=f"items[{first.item_id}].{first.field}",
            )
        tenant.check_model(model)
        hold = await self._budgets.reserve(tenant, total_nanos)
        job = JobRecord(
            job_id="job-" + uuid.uuid4().hex[:20],
            tenant_id=tenant.id,
            template_id=req.template_id,
            label=req.label,
            model=req.model,
            total=len(accepted),
            created_at=self._clock(),
            currency=currency,
            estimated_nanos=total_nanos,
            hold_key=hold.key if hold else "",
            hold_nanos=hold.amount_nanos if hold else 0,
            client_token=req.client_token,
            deadline=req.deadline,
            priority=req.priority,
        )
        # An unset deadline must stay unset: an empty Timestamp would read as 1970, long expired.
        deadline = timestamp_to_pb(req.deadline) if req.deadline else None
        requests = [
            events_pb2.GenerationRequested(
                job_id=job.job_id,
                item_id=item_id,
                tenant_id=tenant.id,
                template_id=req.template_id,
                label=req.label,
                variables=dict(variables),
                model=req.model,
                attempt=0,
                deadline=deadline,
                max_tokens=req.max_tokens,
            )
            for item_id, variables in accepted
        ]
        created = await self._store.create(job)
        if created.job_id != job.job_id:  # the same client token raced us: that job stands
            await self._budgets.release(hold)
            return Submitted(created)
        try:
            # Staged, then logged on Kafka (what a lost store is rebuilt from), then the first
            # window goes out; the pacer releases the rest as the job progresses.
            await self._store.stage(job.job_id, [r.SerializeToString() for r in requests])
            await self._job_log.append(job, requests)
            await self._pacer.release(job)
        except BaseException:
            # Not accepted: nothing more is released, and what went out is skipped by the workers.
            await self._store.cancel(job.job_id)
            await self._store.mark_published(job.job_id, job.total, job.total)
            await self._budgets.release(hold)
            raise
        return Submitted(job, tuple(rejected))

    async def _job(self, tenant: Tenant, job_id: str) -> JobRecord:
        if not job_id:
            raise InvalidArgument("must not be empty", field="job_id")
        job = await self._store.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}", field="job_id")
        if job.tenant_id != tenant.id:
            raise PermissionDenied(f"job {job_id!r} belongs to another tenant", field="job_id")
        return job

    async def get(self, tenant: Tenant, job_id: str) -> JobView:
        job = await self._job(tenant, job_id)
        status = await self._store.status(job_id)
        done = status.done
        if done >= job.total:
            state = "cancelled" if status.cancelled else "completed"
        elif status.cancelled:
            state = "cancelled"
        elif job.deadline and self._clock() > job.deadline:
            state = "expired"
        else:
            state = "running" if done else "queued"
        eta = 0.0
        if 0 < done < job.total and status.first_result_at:
            rate = done / max(self._clock() - job.created_at, 1e-3)
            eta = (job.total - done) / rate
        return JobView(job, status, state, round(eta, 1), dict(status.counts))

    async def cancel(self, tenant: Tenant, job_id: str) -> JobView:
        """Pending items end as cancelled (workers skip them); their share of the hold is released
        when the last result is recorded."""
        await self._job(tenant, job_id)
        await self._store.cancel(job_id)
        return await self.get(tenant, job_id)

    async def results(
        self, tenant: Tenant, job_id: str, cursor: int = 0
    ) -> AsyncIterator[events_pb2.GenerationResult]:
        """Every result from ``cursor`` on, waiting for new ones until the job is complete."""
        job = await self._job(tenant, job_id)
        position = cursor
        while True:
            batch = await self._store.results(job_id, position, 500)
            for result in batch:
                position += 1
                yield result
            if not batch:
                if position >= job.total:
                    return
                await asyncio.sleep(self._poll)


async def settle_if_done(store: JobStore, budgets: Budgets, job_id: str) -> bool:
    """Settles the job's budget hold to its real cost once every item has a result."""
    job = await store.get(job_id)
    if job is None or not job.hold_key:
        return False
    status = await store.status(job_id)
    if status.done < job.total or not await store.claim_settlement(job_id):
        return False
    await budgets.settle(BudgetHold(job.tenant_id, job.hold_key, job.hold_nanos), status.cost_nanos)
    return True
