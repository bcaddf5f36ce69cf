"""Pure parts of the client: urls, error parsing, retry decisions, conversions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import grpc
import pytest

from aigc.common.v1 import common_pb2
from aigc_client import AigcError, Cost, FinishReason, InvalidArgument, ResourceExhausted, Unavailable
from aigc_client.channel import Target, parse_url
from aigc_client.convert import cost_from_pb, finish_reason_from_pb, generate_request, submit_batch_request
from aigc_client.errors import error_for_status
from aigc_client.retry import RetryPolicy


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("grpcs://gw.example.com", Target("gw.example.com:443", tls=True)),
        ("https://gw.example.com:8443/", Target("gw.example.com:8443", tls=True)),
        ("grpc://10.0.0.5:50051", Target("10.0.0.5:50051", tls=False)),
        ("127.0.0.1:50051", Target("127.0.0.1:50051", tls=False)),
        ("grpc://[::1]:50051", Target("[::1]:50051", tls=False)),
        ("unix:/run/aigc.sock", Target("unix:/run/aigc.sock", tls=False)),
    ],
)
def test_url_chooses_address_and_tls(url: str, target: Target) -> None:
    assert parse_url(url) == target


@pytest.mark.parametrize("url", ["ftp://h:1", "grpc://h", "h", "grpcs://h:1/v1/generate", "grpc://:50051"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_url(url)


def test_certificates_with_a_plaintext_url_are_refused() -> None:
    from aigc_client import Client

    with pytest.raises(ValueError, match="plaintext"):
        Client("127.0.0.1:1", "k", root_certificates=b"pem")


@pytest.mark.parametrize(
    ("details", "field", "message"),
    [
        ("template_id: unknown template 'x'", "template_id", "unknown template 'x'"),
        ("variables.品名: missing required variable", "variables.品名", "missing required variable"),
        ("messages[2].content: too long", "messages[2].content", "too long"),
        ("inference failed: UNAVAILABLE", None, "inference failed: UNAVAILABLE"),
        ("prompt is over the context window", None, "prompt is over the context window"),
    ],
)
def test_field_is_parsed_from_the_servers_message(details: str, field: str | None, message: str) -> None:
    error = error_for_status(grpc.StatusCode.INVALID_ARGUMENT, details)
    assert isinstance(error, InvalidArgument)
    assert (error.field, error.message, error.details) == (field, message, details)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ((("retry-after", "1.500"),), 1.5),
        ((("retry-after", b"2"),), 2.0),
        ((("retry-after", "soon"),), None),
        ((), None),
    ],
)
def test_retry_after_is_parsed_from_trailing_metadata(
    metadata: tuple[tuple[str, str | bytes], ...], expected: float | None
) -> None:
    error = error_for_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limit", metadata)
    assert isinstance(error, ResourceExhausted) and error.retry_after == expected


def test_codes_without_a_class_keep_their_code() -> None:
    error = error_for_status(grpc.StatusCode.ABORTED, "conflict")
    assert type(error) is AigcError and error.code is grpc.StatusCode.ABORTED


def test_retry_policy_decisions() -> None:
    unavailable = Unavailable("down")
    limited = ResourceExhausted("limit", trailing_metadata=(("retry-after", "0.5"),))
    policy = RetryPolicy(retries=2, backoff_initial=0.1, backoff_max=0.3)

    assert 0.05 <= (policy.delay(unavailable, 0, None) or 0) <= 0.1
    assert 0.1 <= (policy.delay(unavailable, 1, None) or 0) <= 0.2
    assert policy.delay(unavailable, 2, None) is None  # retries used up
    assert policy.delay(unavailable, 0, remaining=0.01) is None  # would outlive the deadline
    assert policy.delay(limited, 0, None) is None  # not opted in
    assert policy.delay(InvalidArgument("bad"), 0, None) is None

    opted = RetryPolicy(retry_resource_exhausted=True, max_retry_after=1.0)
    assert 0.5 <= (opted.delay(limited, 0, None) or 0) <= 0.55
    too_long = ResourceExhausted("budget", trailing_metadata=(("retry-after", "60"),))
    assert opted.delay(too_long, 0, None) is None


def test_cost_is_exact_decimal() -> None:
    assert cost_from_pb(common_pb2.Cost(currency="CNY", amount_nanos=1_000_000_001)) == Cost(
        "CNY", Decimal("1.000000001")
    )


def test_unknown_finish_reason_is_unspecified() -> None:
    assert finish_reason_from_pb(common_pb2.FINISH_REASON_LENGTH) is FinishReason.LENGTH
    assert finish_reason_from_pb(99) is FinishReason.UNSPECIFIED


def _request(**overrides: object) -> object:
    values: dict[str, object] = {
        "template": "t",
        "variables": None,
        "label": "",
        "version": 0,
        "prompt": "",
        "model": "",
        "max_tokens": 0,
        "temperature": None,
        "top_p": None,
        "top_k": 0,
        "seed": None,
        "stop": (),
        "skip_cache": False,
        "request_id": "",
    }
    values.update(overrides)
    return generate_request(**values)  # type: ignore[arg-type]


def test_sampling_is_sent_only_when_set() -> None:
    assert not _request().HasField("sampling")  # type: ignore[attr-defined]
    seeded = _request(seed=0)
    assert seeded.sampling.HasField("seed")  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        _request(stop="\n")


def test_batch_deadline_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone"):
        submit_batch_request(
            template="t", items={}, label="", model="", deadline=datetime(2030, 1, 1), client_token="x"
        )
    at = datetime.now(UTC) + timedelta(hours=1)
    request = submit_batch_request(template="t", items={}, label="", model="", deadline=at, client_token="x")
    assert request.deadline.seconds == int(at.timestamp())
