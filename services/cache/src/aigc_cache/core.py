"""Answer cache inside hard partitions (tenant, bundle, model, safety policy version).

Exact tier: the key is a hash of the partition and the normalised messages and sampling
parameters, stored under a readable partition prefix so a partition (or a tenant) can be
invalidated.

Semantic tier: per partition, a set of vectors of the last user message of stored requests,
each tagged with a digest of everything else the answer depends on (the earlier conversation
and the sampling parameters). A lookup compares its last user message only with entries of the
same digest, so a hit never crosses a partition and never answers a different conversation.
The vector's entry id is the exact key's hash: the answer is stored once, under the exact key,
and a semantic hit reads it from there, which also proves it is still alive.

Every replica keeps an in-process index per partition (a numpy matrix per conversation digest)
and follows the store's log of each set, so replicas agree on what is cached; see
:class:`aigc_cache.ports.SemanticRead`.

Only complete, allowed answers are stored (the caller's job to decide).
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import json
import math
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from aigc_cache.metrics import CacheMetrics
from aigc_cache.ports import CacheStore, Embedder, SemanticRead
from aigc_common.errors import InvalidArgument
from aigc_common.types import ChatMessage, Role, SamplingParams, Usage

F32 = npt.NDArray[np.float32]

# A semantic lookup checks at most this many candidates against the store before it gives up:
# a candidate fails only when its answer vanished (evicted, expired, invalidated).
_CANDIDATES = 3
# Rebuilding from this many records parses enough JSON to be worth a worker thread.
_PARSE_IN_THREAD = 512


def _escape(part: str) -> str:
    # Partition parts are ids, but escape ':' so one part can never pose as two.
    return part.replace(":", "%3A")


@dataclass(frozen=True, slots=True)
class Partition:
    """The hard boundary of a cache entry: lookups never cross it."""

    tenant_id: str
    bundle_id: str = ""
    model: str = ""
    safety_policy_version: str = ""

    def prefix(self, key_prefix: str, namespace: str = "cache") -> str:
        parts = [self.tenant_id, self.bundle_id, self.model, self.safety_policy_version]
        return f"{key_prefix}{namespace}:" + ":".join(_escape(p) for p in parts) + ":"


class CacheTier(enum.StrEnum):
    """Which tier found an answer."""

    EXACT = "exact"
    SEMANTIC = "semantic"


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A stored answer with the usage of its original generation.

    ``tier`` and ``similarity`` say how a lookup found it (cosine similarity of the last user
    messages for a semantic hit, 1 for an exact one); they are not part of the answer's identity
    and are ignored by ``store``.
    """

    answer: str
    usage: Usage
    tier: CacheTier = field(default=CacheTier.EXACT, compare=False)
    similarity: float = field(default=1.0, compare=False)


def _normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def entry_hash(messages: tuple[ChatMessage, ...], sampling: SamplingParams) -> str:
    material = json.dumps(
        {
            "messages": [[str(m.role), _normalise(m.content)] for m in messages],
            "sampling": _sampling_key(sampling),
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode()).hexdigest()


def _sampling_key(sampling: SamplingParams) -> list[object]:
    # The fields that change the output, in a fixed order (dataclasses.asdict is 10x slower here).
    return [
        sampling.max_tokens,
        sampling.temperature,
        sampling.top_p,
        sampling.top_k,
        sampling.seed,
        list(sampling.stop),
    ]


def context_digest(messages: tuple[ChatMessage, ...], sampling: SamplingParams) -> str:
    """What a semantic hit must share exactly: every message but the last, and the sampling.

    Sampling is part of it because the answer depends on it (a reply cut at 16 tokens must not
    answer a request allowing 512).
    """
    material = json.dumps(
        {
            "context": [[str(m.role), _normalise(m.content)] for m in messages[:-1]],
            "sampling": _sampling_key(sampling),
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def _semantic_text(messages: tuple[ChatMessage, ...]) -> str | None:
    """The caller's input: the last message when it is a non-empty user turn."""
    last = messages[-1]
    if last.role != Role.USER:
        return None
    return _normalise(last.content) or None


class _Group:
    """The vectors of one conversation digest in one partition, with their expiry (unix seconds).

    Rows are never moved: a dropped row keeps its place with expiry -inf until the next rebuild,
    so appending stays cheap (capacity doubles).
    """

    def __init__(self, ids: list[str], vectors: F32, expires: npt.NDArray[np.float64]) -> None:
        self.ids = ids
        self.rows = {entry_id: row for row, entry_id in enumerate(ids)}
        self.vectors = vectors
        self.expires = expires

    def put(self, entry_id: str, vector: F32, expires_at: float) -> None:
        row = self.rows.get(entry_id)
        if row is None:
            row = len(self.ids)
            if row == len(self.expires):
                grown = max(8, 2 * row)
                vectors = np.empty((grown, self.vectors.shape[1]), np.float32)
                vectors[:row] = self.vectors[:row]
                expires = np.empty(grown, np.float64)
                expires[:row] = self.expires[:row]
                self.vectors, self.expires = vectors, expires
            self.ids.append(entry_id)
            self.rows[entry_id] = row
        self.vectors[row] = vector
        self.expires[row] = expires_at

    def drop(self, entry_id: str) -> None:
        row = self.rows.pop(entry_id, None)
        if row is not None:
            self.expires[row] = -math.inf

    def search(self, query: F32, now: float, threshold: float) -> tuple[list[tuple[str, float]], list[str]]:
        """(best live candidates at or above the threshold, best first; ids found expired)."""
        n = len(self.ids)
        expires = self.expires[:n]
        live = expires > now
        expired = [self.ids[i] for i in np.flatnonzero(~live & (expires > -math.inf))]
        scores = self.vectors[:n] @ query
        scores[~live] = -np.inf
        above = np.flatnonzero(scores >= threshold)
        best = above[np.argsort(-scores[above], kind="stable")][:_CANDIDATES]
        return [(self.ids[i], float(scores[i])) for i in best], expired


class _PartitionIndex:
    """This replica's copy of one semantic set: groups by conversation digest."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.epoch: str | None = None
        self.length = 0
        self.groups: dict[str, _Group] = {}
        self.syncing: asyncio.Future[None] | None = None

    def apply(self, read: SemanticRead, parsed: list[tuple[str, str, F32, float]]) -> None:
        if read.complete:
            rows: dict[str, tuple[list[str], list[F32], list[float]]] = {}
            for entry_id, context, vector, expires_at in parsed:
                ids, vectors, expiries = rows.setdefault(context, ([], [], []))
                ids.append(entry_id)
                vectors.append(vector)
                expiries.append(expires_at)
            self.groups = {
                context: _Group(ids, np.stack(vectors), np.asarray(expiries, dtype=np.float64))
                for context, (ids, vectors, expiries) in rows.items()
            }
        else:
            for entry_id, context, vector, expires_at in parsed:
                group = self.groups.get(context)
                if group is None:
                    group = self.groups[context] = _Group(
                        [], np.empty((0, self.dimension), np.float32), np.empty(0, np.float64)
                    )
                group.put(entry_id, vector, expires_at)
        self.epoch = read.epoch
        self.length = read.length


def _encode_record(vector: F32, context: str, expires_at: float) -> bytes:
    # float16 halves what each replica reads on a rebuild; cosine similarity moves by ~1e-3.
    packed = base64.b64encode(vector.astype("<f2").tobytes()).decode()
    return json.dumps({"v": packed, "c": context, "x": expires_at}).encode()


def _parse_records(records: dict[str, bytes], dimension: int) -> list[tuple[str, str, F32, float]]:
    parsed = []
    for entry_id, raw in records.items():
        try:
            data = json.loads(raw)
            vector = np.frombuffer(base64.b64decode(data["v"]), dtype="<f2").astype(np.float32)
            context, expires_at = str(data["c"]), float(data["x"])
        except (ValueError, KeyError, TypeError):
            continue  # a record this version cannot read is skipped, never fatal
        if vector.shape != (dimension,):
            continue
        norm = float(np.linalg.norm(vector))
        if norm > 0:
            parsed.append((entry_id, context, vector / np.float32(norm), expires_at))
    return parsed


class EmbeddingQueue:
    """Embeds texts in a worker thread, coalescing concurrent requests into one batch.

    While one batch runs, new texts queue up and go together in the next, so a busy replica
    batches by itself and an idle one adds no delay. Recent texts are remembered: a store
    right after its own lookup's miss does not embed the same message twice.
    """

    def __init__(self, embedder: Embedder, *, max_batch: int = 32, remembered: int = 1024) -> None:
        self._embedder = embedder
        self._max_batch = max_batch
        self._remembered = remembered
        self._recent: OrderedDict[str, F32] = OrderedDict()
        self._pending: list[tuple[str, asyncio.Future[F32]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def embed(self, text: str) -> F32:
        known = self._recent.get(text)
        if known is not None:
            self._recent.move_to_end(text)
            return known
        future: asyncio.Future[F32] = asyncio.get_running_loop().create_future()
        self._pending.append((text, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            texts = list(dict.fromkeys(text for text, _ in batch))
            try:
                vectors = await asyncio.to_thread(self._embedder.embed, texts)
            except Exception as exc:  # every waiter of this batch gets the failure
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            by_text = {}
            for text, vector in zip(texts, vectors, strict=True):
                vector.setflags(write=False)
                by_text[text] = vector
                self._recent[text] = vector
            while len(self._recent) > self._remembered:
                self._recent.popitem(last=False)
            for text, future in batch:
                if not future.done():
                    future.set_result(by_text[text])


class CacheCore:
    """Looks up and stores answers in a :class:`CacheStore`; semantic tier when given an embedder."""

    def __init__(
        self,
        store: CacheStore,
        metrics: CacheMetrics,
        *,
        key_prefix: str,
        default_ttl_seconds: int,
        max_answer_chars: int,
        embedder: Embedder | None = None,
        semantic_max_entries: int = 10_000,
        semantic_max_indexes: int = 256,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._prefix = key_prefix
        self._ttl = default_ttl_seconds
        self._max_chars = max_answer_chars
        self._embedder = embedder
        self._queue = EmbeddingQueue(embedder) if embedder is not None else None
        self._max_entries = semantic_max_entries
        self._max_indexes = semantic_max_indexes
        # Wall clock, not monotonic: entry expiry is shared with other replicas through the store.
        self._clock = clock
        self._indexes: OrderedDict[str, _PartitionIndex] = OrderedDict()

    @property
    def semantic_enabled(self) -> bool:
        """True when this cache has an embedder, i.e. serves the semantic tier."""
        return self._embedder is not None

    def _key(self, partition: Partition, messages: tuple[ChatMessage, ...], sampling: SamplingParams) -> str:
        if not partition.tenant_id:
            raise InvalidArgument("must not be empty", field="partition.tenant_id")
        if not messages:
            raise InvalidArgument("at least one message is required", field="messages")
        return partition.prefix(self._prefix) + entry_hash(messages, sampling)

    def _semantic_key(self, partition: Partition, embedder: Embedder) -> str:
        # The embedder's name is part of the key: vectors of another model are another set.
        return partition.prefix(self._prefix, "cache-sem") + _escape(embedder.name) + ":"

    async def lookup(
        self,
        partition: Partition,
        messages: tuple[ChatMessage, ...],
        sampling: SamplingParams,
        *,
        semantic_threshold: float = 0.0,
    ) -> CachedAnswer | None:
        """Exact first; then, when ``semantic_threshold`` > 0, the most similar live entry of the
        same partition and conversation whose cosine similarity is at least the threshold.

        Without an embedder (semantic tier disabled) a threshold is ignored: a miss is always safe.
        """
        if not 0.0 <= semantic_threshold <= 1.0:  # also refuses NaN
            raise InvalidArgument("must be between 0 and 1 (0 = exact only)", field="semantic_threshold")
        key = self._key(partition, messages, sampling)
        raw = await self._store.get(key)
        self._metrics.requests.labels("exact", "miss" if raw is None else "hit").inc()
        if raw is not None:
            return _decode_answer(raw, CacheTier.EXACT, 1.0)
        if semantic_threshold <= 0.0 or self._embedder is None:
            return None
        text = _semantic_text(messages)
        if text is None:
            return None
        found = await self._semantic_lookup(partition, messages, sampling, text, semantic_threshold)
        self._metrics.requests.labels("semantic", "miss" if found is None else "hit").inc()
        return found

    async def _semantic_lookup(
        self,
        partition: Partition,
        messages: tuple[ChatMessage, ...],
        sampling: SamplingParams,
        text: str,
        threshold: float,
    ) -> CachedAnswer | None:
        assert self._embedder is not None and self._queue is not None
        set_key = self._semantic_key(partition, self._embedder)
        index = await self._synced_index(set_key)
        group = index.groups.get(context_digest(messages, sampling))
        if group is None or not group.rows:
            return None  # nothing stored for this conversation: no need to embed
        query = await self._queue.embed(text)
        candidates, expired = group.search(query, self._clock(), threshold)
        gone = list(expired)
        found = None
        for entry_id, similarity in candidates:
            raw = await self._store.get(partition.prefix(self._prefix) + entry_id)
            if raw is not None:
                found = _decode_answer(raw, CacheTier.SEMANTIC, min(similarity, 1.0))
                break
            # The answer was evicted or expired under the vector: forget the vector everywhere.
            gone.append(entry_id)
        if gone:
            for entry_id in gone:
                group.drop(entry_id)
            await self._store.semantic_remove(set_key, gone)
        return found

    async def _synced_index(self, set_key: str) -> _PartitionIndex:
        assert self._embedder is not None
        index = self._indexes.get(set_key)
        if index is None:
            index = self._indexes[set_key] = _PartitionIndex(self._embedder.dimension)
            while len(self._indexes) > self._max_indexes:
                self._indexes.popitem(last=False)
        self._indexes.move_to_end(set_key)
        # Concurrent lookups of one partition share one sync instead of queueing for their own.
        if index.syncing is None:
            index.syncing = asyncio.ensure_future(self._sync(set_key, index))
        await asyncio.shield(index.syncing)
        return index

    async def _sync(self, set_key: str, index: _PartitionIndex) -> None:
        try:
            read = await self._store.semantic_read(set_key, index.epoch, index.length)
            if len(read.records) >= _PARSE_IN_THREAD:
                parsed = await asyncio.to_thread(_parse_records, read.records, index.dimension)
            else:
                parsed = _parse_records(read.records, index.dimension)
            index.apply(read, parsed)
        finally:
            index.syncing = None

    async def store(
        self,
        partition: Partition,
        messages: tuple[ChatMessage, ...],
        sampling: SamplingParams,
        answer: CachedAnswer,
        ttl_seconds: int = 0,
    ) -> bool:
        """Stores a complete, allowed answer in both tiers; False when it is too long to cache."""
        if len(answer.answer) > self._max_chars:
            return False
        key = self._key(partition, messages, sampling)
        ttl = ttl_seconds or self._ttl
        value = json.dumps(
            {
                "answer": answer.answer,
                "prompt_tokens": answer.usage.prompt_tokens,
                "completion_tokens": answer.usage.completion_tokens,
            },
            ensure_ascii=False,
        ).encode()
        # The answer goes first: a replica that sees the vector can always read the answer.
        await self._store.set(key, value, ttl)
        text = _semantic_text(messages)
        if self._embedder is not None and self._queue is not None and text is not None:
            vector = await self._queue.embed(text)
            record = _encode_record(vector, context_digest(messages, sampling), self._clock() + ttl)
            await self._store.semantic_add(
                self._semantic_key(partition, self._embedder),
                entry_hash(messages, sampling),
                record,
                ttl,
                self._max_entries,
            )
        return True

    async def invalidate(self, partition: Partition, template_id: str = "") -> int:
        """Drops the partition in both tiers; empty trailing fields widen it (tenant_id alone
        drops the tenant). With ``template_id`` (and the tenant only), drops every bundle of that
        template: bundle ids start with ``<template>@``. Returns how many answers were removed."""
        if not partition.tenant_id:
            raise InvalidArgument("must not be empty", field="partition.tenant_id")
        if template_id:
            if partition.bundle_id or partition.model or partition.safety_policy_version:
                raise InvalidArgument(
                    "give a template or a partition below the tenant, not both", field="template_id"
                )
            tail = f"{_escape(partition.tenant_id)}:{_escape(template_id)}@"
        else:
            parts = [
                partition.tenant_id,
                partition.bundle_id,
                partition.model,
                partition.safety_policy_version,
            ]
            while parts and not parts[-1]:
                parts.pop()
            tail = ":".join(_escape(p) for p in parts) + ":"
        removed = await self._store.delete_prefix(f"{self._prefix}cache:{tail}")
        semantic_prefix = f"{self._prefix}cache-sem:{tail}"
        await self._store.delete_prefix(semantic_prefix)
        # Other replicas notice through the store (the set's epoch is gone); this one forgets now.
        for set_key in [k for k in self._indexes if k.startswith(semantic_prefix)]:
            del self._indexes[set_key]
        return removed

    async def close(self) -> None:
        self._indexes.clear()
        await self._store.close()


def _decode_answer(raw: bytes, tier: CacheTier, similarity: float) -> CachedAnswer:
    data = json.loads(raw)
    return CachedAnswer(
        data["answer"], Usage(data["prompt_tokens"], data["completion_tokens"]), tier, similarity
    )
