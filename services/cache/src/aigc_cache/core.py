"""Exact answer cache inside hard partitions (tenant, bundle, model, safety policy version).

The key is a hash of the partition and the normalised messages and sampling parameters,
stored under a readable partition prefix so a partition (or a tenant) can be invalidated.
Only complete, allowed answers are stored; a semantic tier comes with the cache issue.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import asdict, dataclass

from aigc_cache.metrics import CacheMetrics
from aigc_cache.ports import CacheStore
from aigc_common.errors import InvalidArgument
from aigc_common.types import ChatMessage, SamplingParams, Usage


@dataclass(frozen=True, slots=True)
class Partition:
    """The hard boundary of a cache entry: lookups never cross it."""

    tenant_id: str
    bundle_id: str = ""
    model: str = ""
    safety_policy_version: str = ""

    def prefix(self, key_prefix: str) -> str:
        parts = [self.tenant_id, self.bundle_id, self.model, self.safety_policy_version]
        # Partition parts are ids, but escape ':' so one part can never pose as two.
        return key_prefix + "cache:" + ":".join(p.replace(":", "%3A") for p in parts) + ":"


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A stored answer with the usage of its original generation."""

    answer: str
    usage: Usage


def _normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def entry_hash(messages: tuple[ChatMessage, ...], sampling: SamplingParams) -> str:
    material = json.dumps(
        {
            "messages": [[str(m.role), _normalise(m.content)] for m in messages],
            "sampling": asdict(sampling),
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode()).hexdigest()


class CacheCore:
    """Looks up and stores answers in a :class:`CacheStore`."""

    def __init__(
        self,
        store: CacheStore,
        metrics: CacheMetrics,
        *,
        key_prefix: str,
        default_ttl_seconds: int,
        max_answer_chars: int,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._prefix = key_prefix
        self._ttl = default_ttl_seconds
        self._max_chars = max_answer_chars

    def _key(self, partition: Partition, messages: tuple[ChatMessage, ...], sampling: SamplingParams) -> str:
        if not partition.tenant_id:
            raise InvalidArgument("must not be empty", field="partition.tenant_id")
        if not messages:
            raise InvalidArgument("at least one message is required", field="messages")
        return partition.prefix(self._prefix) + entry_hash(messages, sampling)

    async def lookup(
        self, partition: Partition, messages: tuple[ChatMessage, ...], sampling: SamplingParams
    ) -> CachedAnswer | None:
        raw = await self._store.get(self._key(partition, messages, sampling))
        self._metrics.requests.labels("exact", "miss" if raw is None else "hit").inc()
        if raw is None:
            return None
        data = json.loads(raw)
        return CachedAnswer(data["answer"], Usage(data["prompt_tokens"], data["completion_tokens"]))

    async def store(
        self,
        partition: Partition,
        messages: tuple[ChatMessage, ...],
        sampling: SamplingParams,
        answer: CachedAnswer,
        ttl_seconds: int = 0,
    ) -> bool:
        if len(answer.answer) > self._max_chars:
            return False
        value = json.dumps(
            {
                "answer": answer.answer,
                "prompt_tokens": answer.usage.prompt_tokens,
                "completion_tokens": answer.usage.completion_tokens,
            },
            ensure_ascii=False,
        ).encode()
        await self._store.set(self._key(partition, messages, sampling), value, ttl_seconds or self._ttl)
        return True

    async def invalidate(self, partition: Partition) -> int:
        """Drops the partition; empty trailing fields widen it (tenant_id alone drops the tenant)."""
        if not partition.tenant_id:
            raise InvalidArgument("must not be empty", field="partition.tenant_id")
        parts = [partition.tenant_id, partition.bundle_id, partition.model, partition.safety_policy_version]
        while parts and not parts[-1]:
            parts.pop()
        prefix = self._prefix + "cache:" + ":".join(p.replace(":", "%3A") for p in parts) + ":"
        return await self._store.delete_prefix(prefix)

    async def close(self) -> None:
        await self._store.close()
