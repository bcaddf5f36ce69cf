"""What the cache core needs: a key-value store with semantic sets, and an embedder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class SemanticRead:
    """What a replica reads to bring its in-process index of a semantic set up to date.

    ``epoch`` names the current generation of the set (``None``: the set does not exist). It
    changes whenever the log is rewritten (eviction) or the set is deleted and created again.
    When the replica's epoch differs, ``complete`` is true and ``records`` hold every entry;
    otherwise they hold only the entries logged after the offset the replica sent. ``length``
    is the log length the replica has now seen: its next offset.
    """

    epoch: str | None
    length: int
    records: dict[str, bytes]
    complete: bool


class CacheStore(Protocol):
    """A byte store with per-key expiry and prefix deletion, plus semantic sets.

    A semantic set (named by a key prefix) holds one record per entry id and an append-only log
    of stored ids, so replicas can follow it incrementally. Deleting keys by prefix deletes the
    semantic sets under that prefix too.
    """

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_seconds: int) -> None: ...

    async def delete_prefix(self, prefix: str) -> int:
        """Deletes every key starting with ``prefix``; returns how many."""
        ...

    async def semantic_add(
        self, key: str, entry_id: str, record: bytes, ttl_seconds: int, max_entries: int
    ) -> None:
        """Stores (or replaces) a record and logs its id; beyond ``max_entries`` the oldest go.

        The set as a whole lives at least ``ttl_seconds`` after this call, so a set nobody
        writes any more disappears on its own.
        """
        ...

    async def semantic_read(self, key: str, epoch: str | None, offset: int) -> SemanticRead:
        """Everything (epoch differs) or the records logged after ``offset`` (epoch matches)."""
        ...

    async def semantic_remove(self, key: str, entry_ids: Sequence[str]) -> None:
        """Drops records (expired or answerless); the log keeps their ids until compaction."""
        ...

    async def close(self) -> None: ...


class Embedder(Protocol):
    """Turns texts into unit-length vectors whose dot product is their cosine similarity."""

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        ...

    @property
    def name(self) -> str:
        """Identifies the vector space; vectors of different names are never compared."""
        ...

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """L2-normalised vectors, shape ``(len(texts), dimension)``, in input order.

        Blocking and CPU-bound: async callers run it in a worker thread.
        """
        ...
