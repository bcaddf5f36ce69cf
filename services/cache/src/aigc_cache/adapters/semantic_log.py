"""What every store does the same way with a semantic set's log: compaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def must_compact(records: int, log_length: int, max_entries: int) -> bool:
    """Too many entries, or a log grown long with replaced and removed ids."""
    return records > max_entries or log_length > 2 * max_entries + 16


def plan_compaction(
    log: Sequence[str], live: Collection[str], max_entries: int
) -> tuple[list[str], list[str]]:
    """Splits the live ids into (kept, oldest first; evicted).

    An id's age is its newest place in the log (a replaced entry is young again); live ids
    missing from the log count as the oldest. Over the limit, the set shrinks to 90% of it, so
    the next compaction (which makes every replica rebuild its index) is many stores away.
    """
    seen: set[str] = set()
    newest_first: list[str] = []
    for entry_id in reversed(log):
        if entry_id in live and entry_id not in seen:
            seen.add(entry_id)
            newest_first.append(entry_id)
    order = sorted(i for i in live if i not in seen) + newest_first[::-1]
    keep = len(order) if len(order) <= max_entries else max(1, max_entries - max_entries // 10)
    cut = len(order) - keep
    return order[cut:], order[:cut]
