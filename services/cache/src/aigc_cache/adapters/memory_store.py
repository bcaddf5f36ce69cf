"""In-process store: the single-machine default (tests also run the Redis store)."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aigc_cache.adapters.semantic_log import must_compact, plan_compaction
from aigc_cache.ports import SemanticRead


@dataclass
class _SemanticSet:
    epoch: str = field(default_factory=lambda: uuid.uuid4().hex)
    log: list[str] = field(default_factory=list)
    records: dict[str, bytes] = field(default_factory=dict)
    expires: float = 0.0


class MemoryStore:
    """A bounded LRU dictionary with expiry, and semantic sets bounded per set."""

    def __init__(self, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._sets: dict[str, _SemanticSet] = {}
        self._max = max_entries
        self._clock = clock

    async def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= self._clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_seconds: int) -> None:
        self._data[key] = (self._clock() + ttl_seconds, value)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    async def delete_prefix(self, prefix: str) -> int:
        doomed = [k for k in self._data if k.startswith(prefix)]
        for key in doomed:
            del self._data[key]
        sets = [k for k in self._sets if k.startswith(prefix)]
        for key in sets:
            del self._sets[key]
        return len(doomed) + len(sets)

    def _live_set(self, key: str) -> _SemanticSet | None:
        found = self._sets.get(key)
        if found is not None and found.expires <= self._clock():
            # Like a Redis key expiring: a set nobody wrote for its whole TTL is gone.
            del self._sets[key]
            return None
        return found

    async def semantic_add(
        self, key: str, entry_id: str, record: bytes, ttl_seconds: int, max_entries: int
    ) -> None:
        target = self._live_set(key)
        if target is None:
            target = self._sets[key] = _SemanticSet()
        target.records[entry_id] = record
        target.log.append(entry_id)
        target.expires = max(target.expires, self._clock() + ttl_seconds)
        if must_compact(len(target.records), len(target.log), max_entries):
            keep, evict = plan_compaction(target.log, target.records.keys(), max_entries)
            for gone in evict:
                del target.records[gone]
            target.log = keep
            # The log was rewritten: offsets held by readers mean nothing now.
            target.epoch = uuid.uuid4().hex

    async def semantic_read(self, key: str, epoch: str | None, offset: int) -> SemanticRead:
        found = self._live_set(key)
        if found is None:
            return SemanticRead(None, 0, {}, complete=True)
        if epoch is not None and epoch == found.epoch:
            new = found.log[offset:]
            records = {i: found.records[i] for i in new if i in found.records}
            return SemanticRead(found.epoch, len(found.log), records, complete=False)
        return SemanticRead(found.epoch, len(found.log), dict(found.records), complete=True)

    async def semantic_remove(self, key: str, entry_ids: Sequence[str]) -> None:
        found = self._sets.get(key)
        if found is not None:
            for entry_id in entry_ids:
                found.records.pop(entry_id, None)

    async def close(self) -> None:
        self._data.clear()
        self._sets.clear()
