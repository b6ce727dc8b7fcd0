"""Which advisor with room should take the next chat: least loaded, then longest idle.

One min-heap per pool key (a group or team, with or without a licence); stale entries are
dropped lazily when they surface, and a heap is rebuilt once it is mostly stale.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# (open chats now, last assigned at, advisor id, version)
HeapEntry = tuple[int, float, str, int]

# A pool key: ("g", group, licence|None) or ("t", team, licence|None).
PoolKey = tuple[str, str, str | None]


@dataclass(slots=True)
class _PoolHeap:
    entries: list[HeapEntry] = field(default_factory=list)
    members: set[str] = field(default_factory=set)


class AvailabilityIndex:
    """Least-loaded lookup in O(log n) amortised per change, instead of scanning advisors.

    The router owns advisor state; it tells the index when an advisor's ranking changed by
    calling `refresh`, and the index asks `current_entry` whether an entry is still valid
    (None when the advisor has no room, is not online, or has been removed).
    """

    def __init__(self, current_entry: Callable[[str], HeapEntry | None]) -> None:
        self._current_entry = current_entry
        self._pools: dict[PoolKey, _PoolHeap] = {}

    def join(self, advisor_id: str, keys: Iterable[PoolKey]) -> None:
        for key in keys:
            self._pools.setdefault(key, _PoolHeap()).members.add(advisor_id)

    def leave(self, advisor_id: str, keys: Iterable[PoolKey]) -> None:
        for key in keys:
            pool = self._pools.get(key)
            if pool is not None:
                pool.members.discard(advisor_id)

    def refresh(self, advisor_id: str, keys: Iterable[PoolKey], entry: HeapEntry) -> None:
        """Re-rank an advisor with room after its load, idle time, status or capacity changed.

        `entry` must be the very object `current_entry` returns from now on: older entries of
        the same advisor are recognised as stale because they are not that object.
        """
        for key in keys:
            pool = self._pools[key]
            heapq.heappush(pool.entries, entry)
            # Keep the heap from filling up with superseded entries: rebuild when most of it
            # is stale, which costs O(members) once every O(members) pushes.
            if len(pool.entries) > 4 * len(pool.members) + 16:
                self._rebuild(pool)

    def best(self, keys: Iterable[PoolKey], exclude: str | None = None) -> str | None:
        """The least-loaded, longest-idle advisor with room across the given pools."""
        best_entry: HeapEntry | None = None
        for key in keys:
            pool = self._pools.get(key)
            if pool is None:
                continue
            entry = self._top(pool, exclude)
            if entry is not None and (best_entry is None or entry < best_entry):
                best_entry = entry
        return None if best_entry is None else best_entry[2]

    def available_members(self, key: PoolKey) -> list[str]:
        """Every advisor of a pool who has room now (a scan; used for grab-mode offers)."""
        pool = self._pools.get(key)
        if pool is None:
            return []
        return sorted(a for a in pool.members if self._current_entry(a) is not None)

    def members(self, key: PoolKey) -> set[str]:
        pool = self._pools.get(key)
        return set() if pool is None else pool.members

    def _top(self, pool: _PoolHeap, exclude: str | None) -> HeapEntry | None:
        entries = pool.entries
        set_aside: list[HeapEntry] = []
        found: HeapEntry | None = None
        while entries:
            entry = entries[0]
            if entry[2] not in pool.members or self._current_entry(entry[2]) is not entry:
                heapq.heappop(entries)
            elif entry[2] == exclude:
                # Look beneath the excluded advisor, then put its entries back.
                set_aside.append(heapq.heappop(entries))
            else:
                found = entry
                break
        for entry in set_aside:
            heapq.heappush(entries, entry)
        return found

    def _rebuild(self, pool: _PoolHeap) -> None:
        fresh = [self._current_entry(a) for a in pool.members]
        pool.entries = [e for e in fresh if e is not None]
        heapq.heapify(pool.entries)
