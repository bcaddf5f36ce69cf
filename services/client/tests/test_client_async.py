"""The asyncio client against a real grpc.aio server playing a scripted gateway."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from decimal import Decimal
from typing import Any

import pytest

from aigc.gateway.v1 import gateway_pb2 as pb
from aigc_client import (
    AsyncClient,
    BatchState,
    Cost,
    DeadlineExceeded,
    Delta,
    Finished,
    FinishReason,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Started,
    Unavailable,
    Unimplemented,
)
from aigc_common import errors

API_KEY = "ak-async-0123456789"


@pytest.fixture
async def client(gateway: Any) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(gateway.address, API_KEY, timeout=10, backoff_initial=0.01, backoff_max=0.05) as c:
        yield c


async def _saw_cancel(call: Any) -> bool:
    # The record's event is set on the server's thread; wait for it without blocking this loop.
    return await asyncio.to_thread(call.cancelled.wait, 5)


async def test_stream_arrives_in_order_with_the_api_key(
    client: AsyncClient, gateway: Any, wire: Any, key: str
) -> None:
    gateway.servicer.script(
        key, [wire.started(), wire.delta("think", reasoning=True), *wire.answer("A", "B")[1:]]
    )

    events = [e async for e in client.generate(template=key, variables={"q": "x"})]

    assert [type(e) for e in events] == [Started, Delta, Delta, Delta, Finished]
    assert [(e.text, e.reasoning) for e in events if isinstance(e, Delta)] == [
        ("think", True),
        ("A", False),
        ("B", False),
    ]
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.finish_reason is FinishReason.STOP and finished.cost == Cost(
        "CNY", Decimal("0.001234567")
    )
    (call,) = gateway.servicer.calls(key)
    assert call.metadata["x-api-key"] == API_KEY and dict(call.request.variables) == {"q": "x"}


async def test_complete(client: AsyncClient, gateway: Any, wire: Any, key: str) -> None:
    gateway.servicer.script(key, wire.answer("你", "好"))
    result = await client.complete(template=key)
    assert result.text == "你好" and result.usage.completion_tokens == 5


async def test_unavailable_before_first_message_is_retried(
    client: AsyncClient, gateway: Any, wire: Any, key: str
) -> None:
    gateway.servicer.script(key, [errors.Unavailable("engine down")], wire.answer("ok"))
    assert (await client.complete(template=key)).text == "ok"
    assert len(gateway.servicer.calls(key)) == 2


async def test_unavailable_after_first_delta_is_raised_not_retried(
    client: AsyncClient, gateway: Any, wire: Any, key: str
) -> None:
    gateway.servicer.script(key, [wire.started(), wire.delta("Hel"), errors.Unavailable("engine lost")])
    seen: list[Any] = []

    with pytest.raises(Unavailable):
        async for event in client.generate(template=key):
            seen.append(event)

    assert [type(e) for e in seen] == [Started, Delta]
    assert len(gateway.servicer.calls(key)) == 1


async def test_typed_errors(client: AsyncClient, gateway: Any, key: str) -> None:
    gateway.servicer.script(
        f"{key}-a", [errors.InvalidArgument("must be in [0, 2]", field="sampling.temperature")]
    )
    gateway.servicer.script(f"{key}-b", [errors.ResourceExhausted("budget", retry_after=2.0)])
    gateway.servicer.script(f"{key}-c", [errors.PermissionDenied("not yours", field="template_id")])

    with pytest.raises(InvalidArgument) as invalid:
        await client.complete(template=f"{key}-a")
    with pytest.raises(ResourceExhausted) as exhausted:
        await client.complete(template=f"{key}-b")
    with pytest.raises(PermissionDenied) as denied:
        await client.complete(template=f"{key}-c")

    assert (invalid.value.field, invalid.value.message) == ("sampling.temperature", "must be in [0, 2]")
    assert exhausted.value.retry_after == 2.0
    assert denied.value.field == "template_id"


async def test_aclose_cancels_the_server_stream(
    client: AsyncClient, gateway: Any, wire: Any, key: str
) -> None:
    gateway.servicer.script(key, [wire.started(), wire.delta("a"), wire.sleep(30), wire.finished()])

    async with aclosing(client.generate(template=key)) as stream:
        async for event in stream:
            if isinstance(event, Delta):
                break

    (call,) = gateway.servicer.calls(key)
    assert await _saw_cancel(call)


async def test_breaking_out_of_the_loop_cancels_the_server_stream(
    client: AsyncClient, gateway: Any, wire: Any, key: str
) -> None:
    gateway.servicer.script(key, [wire.started(), wire.delta("a"), wire.sleep(30), wire.finished()])

    async for event in client.generate(template=key):
        if isinstance(event, Delta):
            break

    # Without aclosing the abandoned generator is closed by the event loop's finaliser once it is
    # garbage-collected (as generate's docstring says). Usually reference counting does that at
    # the break; when a reference cycle holds it (CI saw one), only the collector does, so run it.
    gc.collect()
    (call,) = gateway.servicer.calls(key)
    assert await _saw_cancel(call)


async def test_task_cancellation_cancels_the_server_stream(
    client: AsyncClient, gateway: Any, wire: Any, key: str
) -> None:
    gateway.servicer.script(key, [wire.started(), wire.delta("a"), wire.sleep(30), wire.finished()])
    first_delta = asyncio.Event()

    async def consume() -> None:
        async for event in client.generate(template=key):
            if isinstance(event, Delta):
                first_delta.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_delta.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    (call,) = gateway.servicer.calls(key)
    assert await _saw_cancel(call)


async def test_timeout_becomes_the_deadline(client: AsyncClient, gateway: Any, wire: Any, key: str) -> None:
    gateway.servicer.script(key, [wire.sleep(10), *wire.answer("too late")])

    start = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await client.complete(template=key, timeout=0.3)
    assert time.monotonic() - start < 3


async def test_unary_calls_retry_unavailable_and_map_unimplemented(
    client: AsyncClient, gateway: Any, key: str
) -> None:
    gateway.servicer.script(
        key, [errors.Unavailable("restarting")], [pb.CancelBatchResponse(state=pb.BATCH_STATE_CANCELLED)]
    )

    assert await client.cancel_batch(key) is BatchState.CANCELLED
    assert len(gateway.servicer.calls(key)) == 2

    with pytest.raises(Unimplemented):
        await client.get_batch(f"{key}-missing")
    with pytest.raises(Unimplemented):
        [r async for r in client.stream_batch_results(f"{key}-missing")]
    gateway.servicer.script(f"{key}-t", [pb.SubmitBatchResponse(job_id="j", item_count=1)])
    result = await client.submit_batch(f"{key}-t", {"i1": {"q": "1"}})
    assert result.job_id == "j" and result.client_token


async def test_client_made_outside_the_loop_and_closed(gateway: Any, wire: Any, key: str) -> None:
    gateway.servicer.script(key, wire.answer("ok"))
    client = await asyncio.to_thread(AsyncClient, gateway.address, API_KEY)

    assert (await client.complete(template=key)).text == "ok"
    await client.close()
    with pytest.raises(RuntimeError, match="closed"):
        await client.complete(template=key)
