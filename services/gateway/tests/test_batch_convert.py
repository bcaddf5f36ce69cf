"""SubmitBatchRequest to the batch service's request: priorities, and an unknown one refused."""

from __future__ import annotations

import pytest

from aigc.gateway.v1 import gateway_pb2 as pb
from aigc_common.errors import InvalidArgument
from aigc_gateway.convert import batch_request_from_pb


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (pb.BATCH_PRIORITY_UNSPECIFIED, "normal"),
        (pb.BATCH_PRIORITY_LOW, "low"),
        (pb.BATCH_PRIORITY_NORMAL, "normal"),
        (pb.BATCH_PRIORITY_HIGH, "high"),
    ],
)
def test_priorities_map_to_their_names(value: int, expected: str) -> None:
    request = pb.SubmitBatchRequest(template_id="t", priority=value)  # type: ignore[arg-type]
    assert batch_request_from_pb(request).priority == expected


def test_an_unknown_priority_is_invalid_naming_the_field() -> None:
    # Protobuf keeps enum values it does not know; a newer client's value must not pass as normal.
    request = pb.SubmitBatchRequest(template_id="t")
    request.priority = 7  # type: ignore[assignment]
    with pytest.raises(InvalidArgument) as err:
        batch_request_from_pb(request)
    assert err.value.field == "priority"
