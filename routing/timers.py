"""Deadlines the router must act on (fallback, pool expiry, grace expiry, no answer).

A heap of (deadline, token); the router keeps the token it expects and ignores any other,
so cancelling a timer is just forgetting its token.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

# (deadline, token, kind, subject id)
TimerEntry = tuple[float, int, str, str]


class TimerHeap:
    def __init__(self, is_live: Callable[[TimerEntry], bool]) -> None:
        self._entries: list[TimerEntry] = []
        self._tokens = itertools.count(1)
        self._is_live = is_live

    def schedule(self, deadline: float, kind: str, subject: str) -> int:
        token = next(self._tokens)
        heapq.heappush(self._entries, (deadline, token, kind, subject))
        return token

    def next_deadline(self) -> float | None:
        entries = self._entries
        while entries and not self._is_live(entries[0]):
            heapq.heappop(entries)
        return entries[0][0] if entries else None

    def pop_due(self, now: float) -> TimerEntry | None:
        """The earliest live timer due at `now`, removed; None when nothing is due."""
        deadline = self.next_deadline()
        if deadline is None or deadline > now:
            return None
        return heapq.heappop(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
