"""The waiting queue: priority order with aging, kept as sorted lanes for O(log n) lookups.

Effective priority of a waiting chat at time t is  star + (t - waiting_since) / aging_s_per_star.
Comparing two chats at the same t, the t terms cancel, so the order is fixed when a chat
enters the queue: a smaller  waiting_since - star * aging_s_per_star  (its "virtual arrival")
means further ahead. Re-routed chats (grace expiry, no answer, transfer) sort ahead of every
new chat. Because the order never changes with time, positions only move when chats join or
leave, which is exactly when PositionChanged is emitted.
"""

from __future__ import annotations

from bisect import bisect_left, insort

# (0 = re-routed / 1 = new, virtual arrival, sequence number, conversation id)
QueueEntry = tuple[int, float, int, str]

# ("g", group, licence|None), ("t", team, licence|None), ("d", advisor, licence|None): who may
# serve a chat; ("p", group, None): the chat's own group, for its reported position.
LaneKey = tuple[str, str, str | None]

REROUTED = 0
NEW = 1


def queue_entry(
    *, rerouted: bool, waiting_since: float, star: int, aging_s_per_star: float, seq: int, cid: str
) -> QueueEntry:
    return (REROUTED if rerouted else NEW, waiting_since - star * aging_s_per_star, seq, cid)


class WaitingLanes:
    """Sorted lanes of queued chats. Insert and remove are a bisect plus a list shift."""

    def __init__(self) -> None:
        self._lanes: dict[LaneKey, list[QueueEntry]] = {}

    def add(self, entry: QueueEntry, keys: tuple[LaneKey, ...]) -> None:
        for key in keys:
            insort(self._lanes.setdefault(key, []), entry)

    def remove(self, entry: QueueEntry, keys: tuple[LaneKey, ...]) -> None:
        for key in keys:
            lane = self._lanes[key]
            index = bisect_left(lane, entry)
            if index < len(lane) and lane[index] == entry:
                del lane[index]
            if not lane:
                del self._lanes[key]

    def head(self, keys: tuple[LaneKey, ...]) -> QueueEntry | None:
        """The chat that is furthest ahead among the given lanes."""
        best: QueueEntry | None = None
        for key in keys:
            lane = self._lanes.get(key)
            if lane and (best is None or lane[0] < best):
                best = lane[0]
        return best

    def position(self, entry: QueueEntry, key: LaneKey) -> int:
        """1-based position of an entry within a lane."""
        return bisect_left(self._lanes.get(key, []), entry) + 1

    def lane(self, key: LaneKey) -> list[QueueEntry]:
        """The lane in order; callers must not mutate it."""
        return self._lanes.get(key, [])
