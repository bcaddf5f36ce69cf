"""Cache protos <-> domain objects; pure functions."""

from __future__ import annotations

from aigc.cache.v1 import cache_pb2 as pb
from aigc_cache.core import CachedAnswer, CacheTier, Partition
from aigc_common.convert import usage_from_pb, usage_to_pb

_TIERS = {CacheTier.EXACT: pb.TIER_EXACT, CacheTier.SEMANTIC: pb.TIER_SEMANTIC}


def partition_from_pb(p: pb.Partition) -> Partition:
    return Partition(p.tenant_id, p.bundle_id, p.model, p.safety_policy_version)


def partition_to_pb(p: Partition) -> pb.Partition:
    return pb.Partition(
        tenant_id=p.tenant_id,
        bundle_id=p.bundle_id,
        model=p.model,
        safety_policy_version=p.safety_policy_version,
    )


def semantic_threshold_from_pb(request: pb.LookupRequest) -> float:
    """The request's threshold; the deprecated ``exact_only`` still means threshold 0."""
    return 0.0 if request.exact_only else float(request.semantic_threshold)


def lookup_response_to_pb(found: CachedAnswer | None) -> pb.LookupResponse:
    if found is None:
        return pb.LookupResponse(hit=False)
    return pb.LookupResponse(
        hit=True,
        tier=_TIERS[found.tier],
        answer=found.answer,
        usage=usage_to_pb(found.usage),
        similarity=found.similarity,
    )


def lookup_response_from_pb(response: pb.LookupResponse) -> CachedAnswer | None:
    """The inverse, for gRPC clients of the cache (the gateway)."""
    if not response.hit:
        return None
    tier = CacheTier.SEMANTIC if response.tier == pb.TIER_SEMANTIC else CacheTier.EXACT
    return CachedAnswer(response.answer, usage_from_pb(response.usage), tier, response.similarity)
