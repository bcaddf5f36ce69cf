"""The blocking client against a real grpc.aio server playing a scripted gateway."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from decimal import Decimal
from typing import Any

import pytest

from aigc.common.v1 import common_pb2
from aigc.gateway.v1 import gateway_pb2 as pb
from aigc_client import (
    BatchItem,
    BatchItemResult,
    BatchState,
    Client,
    Cost,
    DeadlineExceeded,
    Delta,
    Finished,
    FinishReason,
    InvalidArgument,
    ResourceExhausted,
    SafetyEvent,
    Started,
    Unavailable,
    Unimplemented,
    Usage,
)
from aigc_common import errors

API_KEY = "ak-test-0123456789"


@pytest.fixture
def client(gateway: Any) -> Iterator[Client]:
    with Client(gateway.address, API_KEY, timeout=10, backoff_initial=0.01, backoff_max=0.05) as c:
        yield c


def test_stream_arrives_in_order_as_typed_events(client: Client, gateway: Any, wire: Any, key: str) -> None:
    gateway.servicer.script(
        key,
        [
            wire.started(),
            wire.delta("let me think", reasoning=True),
            wire.delta("你好"),
            wire.safety(),
            wire.delta(", world"),
            wire.finished(),
        ],
    )

    events = list(
        client.generate(
            template=key,
            variables={"product": "茶"},
            label="canary",
            max_tokens=64,
            temperature=0.0,
            stop=["\n\n"],
        )
    )

    assert events == [
        Started(request_id="req-1", bundle_id="b-7", model="smollm2", cache_hit=False, template_version=3),
        Delta("let me think", reasoning=True),
        Delta("你好"),
        SafetyEvent("output", "redact", "p-2", ("pii.mobile_cn",), "a phone number was removed"),
        Delta(", world"),
        Finished(
            finish_reason=FinishReason.STOP,
            usage=Usage(prompt_tokens=12, completion_tokens=5, cached_tokens=0, total_tokens=17),
            cost=Cost("CNY", Decimal("0.001234567")),
            ttft_seconds=0.25,
            duration_seconds=1.5,
        ),
    ]
    (call,) = gateway.servicer.calls(key)
    assert call.metadata["x-api-key"] == API_KEY
    request = call.request
    assert (request.template_id, request.label, dict(request.variables)) == (key, "canary", {"product": "茶"})
    assert request.sampling.max_tokens == 64 and list(request.sampling.stop) == ["\n\n"]
    # Greedy decoding must reach the server as an explicit 0, unset values must stay unset.
    assert request.sampling.HasField("temperature") and request.sampling.temperature == 0.0
    assert not request.sampling.HasField("top_p") and not request.sampling.HasField("seed")


def test_complete_collects_answer_reasoning_and_usage(
    client: Client, gateway: Any, wire: Any, key: str
) -> None:
    gateway.servicer.script(
        key, [wire.started(), wire.delta("why", reasoning=True), *wire.answer("A", "B")[1:]]
    )

    result = client.complete(template=key)

    assert (result.text, result.reasoning) == ("AB", "why")
    assert result.request_id == "req-1"
    assert result.usage.total_tokens == 17 and result.cost == Cost("CNY", Decimal("0.001234567"))
    assert result.finish_reason is FinishReason.STOP and not result.blocked
    assert isinstance(result.events[0], Started) and isinstance(result.events[-1], Finished)


def test_safety_block_is_a_result_not_an_error(client: Client, gateway: Any, wire: Any, key: str) -> None:
    gateway.servicer.script(
        key, [wire.started(), wire.safety(), wire.finished(common_pb2.FINISH_REASON_CONTENT_FILTER)]
    )

    result = client.complete(template=key)

    assert result.blocked and result.text == ""
    assert [e.rule_ids for e in result.safety_events] == [("pii.mobile_cn",)]


def test_unavailable_before_first_message_is_retried(
    client: Client, gateway: Any, wire: Any, key: str
) -> None:
    gateway.servicer.script(key, [errors.Unavailable("engine is restarting")], wire.answer("ok"))

    result = client.complete(template=key)

    assert result.text == "ok"
    calls = gateway.servicer.calls(key)
    assert len(calls) == 2 and all(c.metadata["x-api-key"] == API_KEY for c in calls)


def test_unavailable_after_first_delta_is_raised_not_retried(
    client: Client, gateway: Any, wire: Any, key: str
) -> None:
    gateway.servicer.script(key, [wire.started(), wire.delta("Hel"), errors.Unavailable("engine lost")])
    seen: list[Any] = []

    with pytest.raises(Unavailable) as caught:
        for event in client.generate(template=key):
            seen.append(event)

    assert [type(e) for e in seen] == [Started, Delta]
    assert caught.value.message == "engine lost"
    # A retry would have charged twice and sent "Hel" again.
    assert len(gateway.servicer.calls(key)) == 1


def test_retries_are_bounded(gateway: Any, key: str) -> None:
    gateway.servicer.script(key, [errors.Unavailable("engine down")])
    with (
        Client(gateway.address, API_KEY, retries=3, backoff_initial=0.01, backoff_max=0.02) as c,
        pytest.raises(Unavailable),
    ):
        c.complete(template=key)
    assert len(gateway.servicer.calls(key)) == 4


def test_resource_exhausted_carries_retry_after_and_is_not_retried_by_default(
    client: Client, gateway: Any, key: str
) -> None:
    gateway.servicer.script(key, [errors.ResourceExhausted("tenant rate limit", retry_after=1.5)])

    with pytest.raises(ResourceExhausted) as caught:
        client.complete(template=key)

    assert caught.value.retry_after == 1.5
    assert len(gateway.servicer.calls(key)) == 1


def test_resource_exhausted_retry_waits_the_servers_retry_after_when_opted_in(
    gateway: Any, wire: Any, key: str
) -> None:
    gateway.servicer.script(key, [errors.ResourceExhausted("rate limit", retry_after=0.3)], wire.answer("ok"))
    with Client(gateway.address, API_KEY, retry_resource_exhausted=True) as c:
        start = time.monotonic()
        assert c.complete(template=key).text == "ok"
        assert time.monotonic() - start >= 0.3
    assert len(gateway.servicer.calls(key)) == 2


def test_retry_after_beyond_the_cap_is_raised_at_once(gateway: Any, key: str) -> None:
    gateway.servicer.script(key, [errors.ResourceExhausted("budget exhausted", retry_after=3600)])
    with (
        Client(gateway.address, API_KEY, retry_resource_exhausted=True, max_retry_after=5) as c,
        pytest.raises(ResourceExhausted) as caught,
    ):
        c.complete(template=key)
    assert caught.value.retry_after == 3600
    assert len(gateway.servicer.calls(key)) == 1


def test_invalid_argument_names_the_field(client: Client, gateway: Any, key: str) -> None:
    gateway.servicer.script(
        key, [errors.InvalidArgument("missing required variable", field="variables.product")]
    )

    with pytest.raises(InvalidArgument) as caught:
        client.complete(template=key)

    assert caught.value.field == "variables.product"
    assert caught.value.message == "missing required variable"
    assert caught.value.code.name == "INVALID_ARGUMENT"
    assert len(gateway.servicer.calls(key)) == 1


def test_breaking_out_of_the_loop_cancels_the_server_stream(
    client: Client, gateway: Any, wire: Any, key: str
) -> None:
    gateway.servicer.script(
        key, [wire.started(), wire.delta("first"), wire.sleep(30), *wire.answer("late")[1:]]
    )

    for event in client.generate(template=key):
        if isinstance(event, Delta):
            break

    (call,) = gateway.servicer.calls(key)
    assert call.cancelled.wait(5), "the server did not see the cancellation"


def test_close_cancels_the_server_stream(client: Client, gateway: Any, wire: Any, key: str) -> None:
    gateway.servicer.script(key, [wire.started(), wire.sleep(30), wire.finished()])

    stream = client.generate(template=key)
    assert isinstance(next(stream), Started)
    stream.close()

    (call,) = gateway.servicer.calls(key)
    assert call.cancelled.wait(5), "the server did not see the cancellation"


def test_one_client_serves_many_plain_threads(client: Client, gateway: Any, wire: Any, key: str) -> None:
    gateway.servicer.script(
        key, [wire.started(), wire.delta("a"), wire.sleep(0.05), wire.delta("b"), wire.finished()]
    )

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: client.complete(template=key), range(12)))

    assert [r.text for r in results] == ["ab"] * 12
    assert len(gateway.servicer.calls(key)) == 12


def test_timeout_becomes_the_deadline(client: Client, gateway: Any, wire: Any, key: str) -> None:
    gateway.servicer.script(key, [wire.sleep(10), *wire.answer("too late")])

    start = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        client.complete(template=key, timeout=0.3)

    assert time.monotonic() - start < 3
    (call,) = gateway.servicer.calls(key)
    assert call.ended.wait(5)


def test_unreachable_gateway_is_unavailable(key: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port now.
    with Client(f"grpc://127.0.0.1:{port}", API_KEY, retries=1, backoff_initial=0.01, timeout=5) as c:
        with pytest.raises(Unavailable):
            c.complete(template=key)
        with pytest.raises(Unavailable):
            c.get_batch("job-1")


def test_tls_with_given_root_certificate(
    gateway: Any, tls_pair: tuple[bytes, bytes], wire: Any, key: str
) -> None:
    gateway.servicer.script(key, wire.answer("over tls"))
    _, cert = tls_pair

    with Client(f"grpcs://127.0.0.1:{gateway.tls_port}", API_KEY, root_certificates=cert) as c:
        assert c.complete(template=key).text == "over tls"
    # The system roots do not trust a self-signed certificate: the handshake fails, no call lands.
    with (
        Client(f"https://127.0.0.1:{gateway.tls_port}", API_KEY, retries=0, timeout=5) as c,
        pytest.raises(Unavailable),
    ):
        c.complete(template=key)
    assert len(gateway.servicer.calls(key)) == 1


def test_batch_wrappers_are_typed(client: Client, gateway: Any, key: str) -> None:
    gateway.servicer.script(
        key,
        [errors.Unavailable("broker restarting")],
        [
            pb.SubmitBatchResponse(
                job_id=f"{key}-job",
                item_count=2,
                estimated_cost=common_pb2.Cost(currency="CNY", amount_nanos=5),
            )
        ],
    )
    job = f"{key}-job"
    state = pb.GetBatchResponse(job_id=job, state=pb.BATCH_STATE_RUNNING, total_items=2, succeeded_items=1)
    gateway.servicer.script(job, [state])

    submitted = client.submit_batch(key, [BatchItem("a", {"q": "1"}), BatchItem("b", {"q": "2"})])

    assert submitted.job_id == job and submitted.item_count == 2
    assert submitted.estimated_cost == Cost("CNY", Decimal("5E-9"))
    first, second = gateway.servicer.calls(key)
    # The retry after UNAVAILABLE is safe only because both attempts carry the same idempotency key.
    assert first.request.client_token == second.request.client_token == submitted.client_token != ""
    assert [(i.item_id, dict(i.variables)) for i in second.request.items] == [
        ("a", {"q": "1"}),
        ("b", {"q": "2"}),
    ]

    batch = client.get_batch(job)
    assert (batch.state, batch.total_items, batch.succeeded_items) == (BatchState.RUNNING, 2, 1)


def test_batch_results_stream_and_other_rpcs(client: Client, gateway: Any, key: str) -> None:
    gateway.servicer.script(
        key,
        [
            pb.BatchItemResult(
                item_id="a", status="succeeded", text="A", usage=common_pb2.Usage(total_tokens=3)
            ),
            pb.BatchItemResult(item_id="b", status="failed", error="engine error"),
        ],
    )
    results = list(client.stream_batch_results(key))
    assert results == [
        BatchItemResult("a", "succeeded", "A", "", Usage(total_tokens=3), Cost()),
        BatchItemResult("b", "failed", "", "engine error", Usage(), Cost()),
    ]

    cancel_key = f"{key}-cancel"
    gateway.servicer.script(cancel_key, [pb.CancelBatchResponse(state=pb.BATCH_STATE_CANCELLED)])
    assert client.cancel_batch(cancel_key) is BatchState.CANCELLED

    gateway.servicer.script("req-9", [pb.SendFeedbackResponse()])
    client.send_feedback("req-9", rating=5, comment="good")
    assert gateway.servicer.calls("req-9")[0].request.rating == 5


def test_unimplemented_rpcs_raise_unimplemented(client: Client, gateway: Any, key: str) -> None:
    with pytest.raises(Unimplemented):
        client.get_batch(key)
    with pytest.raises(Unimplemented):
        list(client.stream_batch_results(key))
    with pytest.raises(Unimplemented):
        client.send_feedback(key, rating=1)
    with pytest.raises(Unimplemented):
        client.submit_batch(key, {"a": {"q": "1"}})
    assert len(gateway.servicer.calls(key)) == 4


def test_nothing_the_caller_sends_or_receives_is_logged(
    gateway: Any, wire: Any, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret_key = "ak-SECRET-KEY-42"
    gateway.servicer.script(
        key,
        [errors.Unavailable("engine is restarting")],
        [wire.started(), wire.delta("SECRET-ANSWER"), wire.finished()],
    )
    caplog.set_level(logging.DEBUG)

    with (
        Client(gateway.address, secret_key, backoff_initial=0.01) as c,
        closing(c.generate(template=key, prompt="SECRET-PROMPT", variables={"v": "SECRET-VAR"})) as stream,
    ):
        text = "".join(e.text for e in stream if isinstance(e, Delta))

    assert text == "SECRET-ANSWER"
    assert "retrying Generate after UNAVAILABLE" in caplog.text
    for secret in (secret_key, "SECRET-PROMPT", "SECRET-VAR", "SECRET-ANSWER"):
        assert secret not in caplog.text
    assert secret_key not in repr(c)
