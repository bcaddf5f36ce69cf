"""Cache protos <-> domain objects; pure functions."""

from __future__ import annotations

from aigc.cache.v1 import cache_pb2 as pb
from aigc_cache.core import Partition


def partition_from_pb(p: pb.Partition) -> Partition:
    return Partition(p.tenant_id, p.bundle_id, p.model, p.safety_policy_version)


def partition_to_pb(p: Partition) -> pb.Partition:
    return pb.Partition(
        tenant_id=p.tenant_id,
        bundle_id=p.bundle_id,
        model=p.model,
        safety_policy_version=p.safety_policy_version,
    )
