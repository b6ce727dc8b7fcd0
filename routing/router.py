"""The routing state machine: events in (advisor presence, chats, claims, timers), decisions out.

Pure: no I/O, no clock; every call takes `now` (seconds) and returns what the hub must do.
"""

from __future__ import annotations

import datetime
import enum
import itertools
from dataclasses import dataclass, field

from routing.availability import AvailabilityIndex, HeapEntry, PoolKey
from routing.config import RoutingConfig
from routing.model import (
    MAX_STAR,
    MIN_STAR,
    AdvisorMetrics,
    AdvisorSpec,
    AdvisorStatus,
    Assigned,
    ChatRequest,
    Decision,
    GroupMetrics,
    Offered,
    PoolWithdrawn,
    PositionChanged,
    Queued,
    RoutingError,
    RoutingMetrics,
    Unassigned,
)
from routing.queue import LaneKey, QueueEntry, WaitingLanes, queue_entry
from routing.timers import TimerEntry, TimerHeap

_FALLBACK = "fallback"
_POOL = "pool"
_NO_ANSWER = "no_answer"
_GRACE = "grace"


class _ChatState(enum.Enum):
    QUEUED = "queued"
    POOL = "pool"
    ASSIGNED = "assigned"


@dataclass(slots=True)
class _Chat:
    request: ChatRequest
    group: str
    # The chat's own group first, then each fallback group it has been widened to.
    groups: list[str]
    licence: str | None
    waiting_since: float
    fallback_base: float
    vip: bool
    state: _ChatState = _ChatState.QUEUED
    advisor_id: str | None = None
    assigned_at: float = 0.0
    responded: bool = True
    rerouted: bool = False
    entry: QueueEntry | None = None
    lane_keys: tuple[LaneKey, ...] = ()
    reported_position: int = 0
    fallback_token: int = 0
    pool_token: int = 0
    no_answer_token: int = 0


@dataclass(slots=True)
class _Advisor:
    spec: AdvisorSpec
    capacity: int
    status: AdvisorStatus = AdvisorStatus.OFFLINE
    in_grace: bool = False
    grace_token: int = 0
    open: set[str] = field(default_factory=set)
    last_assigned_at: float = float("-inf")
    version: int = 0
    # The advisor's current heap entry, or None while it may not take a chat. The index
    # holds exactly this tuple object while it is valid, so validity is an identity check.
    entry: HeapEntry | None = None
    pool_keys: tuple[PoolKey, ...] = ()
    lane_keys: tuple[LaneKey, ...] = ()
    first_response_total_s: float = 0.0
    first_response_count: int = 0
    handled_today: int = 0

    @property
    def present(self) -> bool:
        """Online and connected: may receive new chats when there is room."""
        return self.status is AdvisorStatus.ONLINE and not self.in_grace

    @property
    def available(self) -> bool:
        return self.present and len(self.open) < self.capacity

    def holds(self, licence: str | None) -> bool:
        return licence is None or licence in self.spec.licences


class Router:
    """Least-loaded routing with tiers, aging, skill fallback, grab pools and re-routing.

    Every mutating call returns the decisions it produced, in order; the hub carries them
    out. Nothing happens between calls: the hub calls `tick(now)` at `next_deadline()`.
    """

    def __init__(self, config: RoutingConfig | None = None) -> None:
        self._cfg = config if config is not None else RoutingConfig()
        self._advisors: dict[str, _Advisor] = {}
        self._chats: dict[str, _Chat] = {}
        self._index = AvailabilityIndex(self._heap_entry)
        self._lanes = WaitingLanes()
        self._timers = TimerHeap(self._timer_is_live)
        self._seq = itertools.count()
        self._pool: dict[str, set[str]] = {g: set() for g in self._cfg.groups}
        self._online_capacity: dict[str, int] = dict.fromkeys(self._cfg.groups, 0)
        self._online_advisors: dict[str, int] = dict.fromkeys(self._cfg.groups, 0)
        # Group -> lowest queue index whose position may have changed during this call.
        self._moved_from: dict[str, int] = {}

    @property
    def config(self) -> RoutingConfig:
        return self._cfg

    # ----------------------------------------------------------------- advisors

    def upsert_advisor(self, spec: AdvisorSpec, now: float) -> list[Decision]:
        """Add an advisor (starting OFFLINE) or update one, keeping its open chats."""
        unknown = spec.groups - self._cfg.groups
        if unknown:
            raise RoutingError("unknown_group", f"unknown groups {sorted(unknown)}")
        if spec.capacity is not None:
            _check_capacity(spec.capacity)
        for group in spec.groups:
            licence = self._cfg.group_licences.get(group)
            if licence is not None and licence not in spec.licences:
                raise RoutingError(
                    "missing_licence",
                    f"advisor {spec.advisor_id!r} needs licence {licence!r} for group {group!r}",
                )
        capacity = spec.capacity if spec.capacity is not None else self._cfg.default_capacity
        out: list[Decision] = []
        advisor = self._advisors.get(spec.advisor_id)
        if advisor is None:
            advisor = _Advisor(spec=spec, capacity=capacity)
            self._advisors[spec.advisor_id] = advisor
        else:
            self._uncount(advisor)
            self._index.leave(spec.advisor_id, advisor.pool_keys)
            advisor.spec = spec
            advisor.capacity = capacity
        advisor.pool_keys = _advisor_pool_keys(spec)
        advisor.lane_keys = _advisor_lane_keys(spec)
        self._index.join(spec.advisor_id, advisor.pool_keys)
        self._count(advisor)
        self._changed(advisor)
        self._fill(advisor, now, out)
        return self._finish(out)

    def set_status(self, advisor_id: str, status: AdvisorStatus, now: float) -> list[Decision]:
        """ONLINE takes chats; AWAY keeps its chats but takes no new ones; OFFLINE re-routes
        its chats at once. Any status call from a disconnected advisor ends its grace period.
        """
        advisor = self._advisor(advisor_id)
        if not isinstance(status, AdvisorStatus):
            raise RoutingError("invalid_status", f"not an advisor status: {status!r}")
        out: list[Decision] = []
        if status is advisor.status and not advisor.in_grace:
            return out
        self._uncount(advisor)
        advisor.in_grace = False
        advisor.grace_token = 0
        advisor.status = status
        self._count(advisor)
        self._changed(advisor)
        if status is AdvisorStatus.ONLINE:
            self._fill(advisor, now, out)
        elif status is AdvisorStatus.OFFLINE:
            self._reroute_all(advisor, "advisor_offline", now, out)
        return self._finish(out)

    def disconnected(self, advisor_id: str, now: float) -> list[Decision]:
        """Connection lost: keep the advisor's chats for grace_period_s, give it no new ones."""
        advisor = self._advisor(advisor_id)
        if advisor.status is AdvisorStatus.OFFLINE or advisor.in_grace:
            return []
        self._uncount(advisor)
        advisor.in_grace = True
        advisor.grace_token = self._timers.schedule(
            now + self._cfg.grace_period_s, _GRACE, advisor_id
        )
        self._count(advisor)
        self._changed(advisor)
        return []

    def set_capacity(self, advisor_id: str, capacity: int, now: float) -> list[Decision]:
        """Lowering below the open chats keeps them; the advisor just gets no new ones."""
        advisor = self._advisor(advisor_id)
        _check_capacity(capacity)
        out: list[Decision] = []
        self._uncount(advisor)
        advisor.capacity = capacity
        self._count(advisor)
        self._changed(advisor)
        self._fill(advisor, now, out)
        return self._finish(out)

    def reset_day(self, now: float) -> None:
        """Start a new day for the `handled_today` counters."""
        for advisor in self._advisors.values():
            advisor.handled_today = 0

    # -------------------------------------------------------------------- chats

    def submit(self, request: ChatRequest, now: float) -> list[Decision]:
        """A chat needs a human: assign it, offer it to a grab pool, or queue it."""
        chat = self._new_chat(request, now)
        self._chats[request.conversation_id] = chat
        out: list[Decision] = []
        self._place(chat, now, out, allow_pool=True)
        return self._finish(out)

    def _new_chat(self, request: ChatRequest, now: float) -> _Chat:
        """Validate a request and build its (not yet stored) chat record."""
        cid = request.conversation_id
        if cid in self._chats:
            raise RoutingError("duplicate_conversation", f"conversation {cid!r} is already routed")
        if request.group not in self._cfg.groups:
            raise RoutingError("unknown_group", f"unknown group {request.group!r}")
        if (
            isinstance(request.star, bool)
            or not isinstance(request.star, int)
            or not MIN_STAR <= request.star <= MAX_STAR
        ):
            raise RoutingError("invalid_star", f"star must be {MIN_STAR}..{MAX_STAR}")
        waiting_since = now if request.created_at is None else min(request.created_at, now)
        return _Chat(
            request=request,
            group=request.group,
            groups=[request.group],
            licence=self._licence_for(request, request.group),
            waiting_since=waiting_since,
            fallback_base=waiting_since,
            vip=request.star >= self._cfg.vip_min_star,
        )

    def restore_assignment(
        self,
        conversation_id: str,
        advisor_id: str,
        now: float,
        request: ChatRequest | None = None,
    ) -> list[Decision]:
        """After a hub restart: record that a chat is already with an advisor. Emits nothing.

        The chat counts against the advisor's capacity (even above it: this restores what
        is, it does not route). It counts as answered (no no-answer timer). Without a
        `request`, the chat is taken to be a star-1 chat of "general" (or of the advisor's
        first group if there is no "general"). If the advisor is not connected yet, it gets
        `grace_period_s` to come back, as after a disconnect; then the chat is re-routed.
        """
        advisor = self._advisor(advisor_id)
        if request is None:
            groups = self._cfg.groups
            group = "general" if "general" in groups else min(advisor.spec.groups or groups)
            request = ChatRequest(conversation_id, group, created_at=now)
        elif request.conversation_id != conversation_id:
            raise RoutingError("invalid_request", "request is for another conversation")
        chat = self._new_chat(request, now)
        self._chats[conversation_id] = chat
        chat.state = _ChatState.ASSIGNED
        chat.advisor_id = advisor_id
        chat.assigned_at = now
        advisor.open.add(conversation_id)
        if advisor.status is AdvisorStatus.OFFLINE and not advisor.in_grace:
            advisor.in_grace = True
            advisor.grace_token = self._timers.schedule(
                now + self._cfg.grace_period_s, _GRACE, advisor_id
            )
        self._changed(advisor)
        return []

    def close(self, conversation_id: str, now: float) -> list[Decision]:
        """The chat ended. Freed capacity goes to the head of the queue in this same call."""
        chat = self._chat(conversation_id)
        out: list[Decision] = []
        freed = self._detach(chat, "closed", out, count_handled=True)
        del self._chats[conversation_id]
        if freed is not None:
            self._fill(freed, now, out)
        return self._finish(out)

    def claim(self, advisor_id: str, conversation_id: str, now: float) -> list[Decision]:
        """Grab mode: the first eligible claim on a pooled chat wins."""
        advisor = self._advisor(advisor_id)
        chat = self._chat(conversation_id)
        if chat.state is _ChatState.ASSIGNED:
            raise RoutingError("already_taken", f"conversation {conversation_id!r} is taken")
        if chat.state is not _ChatState.POOL:
            raise RoutingError("not_offered", f"conversation {conversation_id!r} is not in a pool")
        if not advisor.present:
            raise RoutingError("advisor_offline", f"advisor {advisor_id!r} is not online")
        if not self._eligible(chat, advisor):
            raise RoutingError("not_eligible", f"advisor {advisor_id!r} may not take this chat")
        if len(advisor.open) >= advisor.capacity:
            raise RoutingError("at_capacity", f"advisor {advisor_id!r} is at capacity")
        out: list[Decision] = []
        self._detach(chat, "claimed", out)
        self._assign(chat, advisor, now, "claim", out)
        return self._finish(out)

    def transfer(
        self,
        conversation_id: str,
        now: float,
        to_advisor: str | None = None,
        to_group: str | None = None,
    ) -> list[Decision]:
        """Hand a chat to a named advisor and/or another group (the hub carries the notes).

        With only `to_group`, the chat is routed in that group, ahead of new chats, and
        avoids the advisor it came from unless nobody else has room.
        """
        chat = self._chat(conversation_id)
        if to_advisor is None and to_group is None:
            raise RoutingError("invalid_transfer", "give to_advisor, to_group or both")
        if to_group is not None and to_group not in self._cfg.groups:
            raise RoutingError("unknown_group", f"unknown group {to_group!r}")
        new_group = to_group if to_group is not None else chat.group
        licence = self._licence_for(chat.request, new_group)
        target: _Advisor | None = None
        if to_advisor is not None:
            target = self._advisor(to_advisor)
            if not target.present:
                raise RoutingError("advisor_offline", f"advisor {to_advisor!r} is not online")
            if chat.advisor_id == to_advisor:
                raise RoutingError("invalid_transfer", f"chat is already with {to_advisor!r}")
            if not target.holds(licence):
                raise RoutingError("not_eligible", f"advisor {to_advisor!r} lacks {licence!r}")
            if len(target.open) >= target.capacity:
                raise RoutingError("at_capacity", f"advisor {to_advisor!r} is at capacity")
        out: list[Decision] = []
        previous = self._detach(chat, "transfer", out)
        if to_group is not None:
            chat.group = to_group
            chat.groups = [to_group]
            chat.licence = licence
            chat.fallback_base = now
        chat.rerouted = True
        if target is not None:
            self._assign(chat, target, now, "transfer", out)
        else:
            self._place(chat, now, out, avoid=previous.spec.advisor_id if previous else None)
        if previous is not None:
            self._fill(previous, now, out)
        return self._finish(out)

    def reassign(self, conversation_id: str, advisor_id: str, now: float) -> list[Decision]:
        """Supervisor override: may put the advisor above capacity (it then gets no new chats
        until it is back under). The advisor must be online or away, and hold the licence.
        """
        chat = self._chat(conversation_id)
        target = self._advisor(advisor_id)
        if target.status is AdvisorStatus.OFFLINE or target.in_grace:
            raise RoutingError("advisor_offline", f"advisor {advisor_id!r} is not connected")
        if not target.holds(chat.licence):
            raise RoutingError("not_eligible", f"advisor {advisor_id!r} lacks {chat.licence!r}")
        out: list[Decision] = []
        if chat.advisor_id == advisor_id:
            return out
        previous = self._detach(chat, "reassign", out)
        self._assign(chat, target, now, "reassign", out)
        if previous is not None:
            self._fill(previous, now, out)
        return self._finish(out)

    def responded(self, conversation_id: str, advisor_id: str, now: float) -> None:
        """The advisor's reply: the first one after an assignment stops the no-answer timer
        and counts towards first-response time; later ones change nothing.
        """
        chat = self._chat(conversation_id)
        if chat.advisor_id != advisor_id:
            raise RoutingError(
                "not_assigned", f"conversation {conversation_id!r} is not with {advisor_id!r}"
            )
        if chat.responded:
            return
        chat.responded = True
        chat.no_answer_token = 0
        advisor = self._advisors[advisor_id]
        advisor.first_response_total_s += max(0.0, now - chat.assigned_at)
        advisor.first_response_count += 1

    # ------------------------------------------------------------------- timers

    def tick(self, now: float) -> list[Decision]:
        """Fire every timer due at `now`, earliest first."""
        out: list[Decision] = []
        while (due := self._timers.pop_due(now)) is not None:
            _, _, kind, subject = due
            if kind == _FALLBACK:
                self._widen(self._chats[subject], now, out)
            elif kind == _POOL:
                chat = self._chats[subject]
                self._detach(chat, "fallback", out)
                self._place(chat, now, out)
            elif kind == _NO_ANSWER:
                self._no_answer(self._chats[subject], now, out)
            elif kind == _GRACE:
                advisor = self._advisors[subject]
                self._uncount(advisor)
                advisor.in_grace = False
                advisor.grace_token = 0
                advisor.status = AdvisorStatus.OFFLINE
                self._count(advisor)
                self._changed(advisor)
                self._reroute_all(advisor, "grace_expired", now, out)
        return self._finish(out)

    def next_deadline(self) -> float | None:
        """When `tick` has something to do next; None when no timer is pending."""
        return self._timers.next_deadline()

    # ------------------------------------------------------------------ queries

    def queue_position(self, conversation_id: str) -> tuple[int, float] | None:
        """(1-based position in the chat's group, ETA in seconds), or None if not queued."""
        chat = self._chats.get(conversation_id)
        if chat is None or chat.entry is None:
            return None
        position = self._lanes.position(chat.entry, ("p", chat.group, None))
        return position, self._eta(chat.group, position)

    def assigned_to(self, conversation_id: str) -> str | None:
        chat = self._chats.get(conversation_id)
        return None if chat is None else chat.advisor_id

    def is_open(self, group: str, local_time: datetime.time, weekday: int) -> bool:
        """Business hours of a group; groups without configured hours are always open."""
        return self._cfg.is_open(group, local_time, weekday)

    def metrics(self, now: float) -> RoutingMetrics:
        advisors = {
            aid: AdvisorMetrics(
                advisor_id=aid,
                status=a.status,
                in_grace=a.in_grace,
                open_chats=len(a.open),
                capacity=a.capacity,
                first_response_avg_s=(
                    a.first_response_total_s / a.first_response_count
                    if a.first_response_count
                    else None
                ),
                handled_today=a.handled_today,
            )
            for aid, a in self._advisors.items()
        }
        groups = {}
        for group in sorted(self._cfg.groups):
            lane = self._lanes.lane(("p", group, None))
            waits = [now - self._chats[entry[3]].waiting_since for entry in lane]
            groups[group] = GroupMetrics(
                group=group,
                queue_length=len(lane),
                longest_wait_s=max(waits, default=0.0),
                pool_size=len(self._pool[group]),
                online_advisors=self._online_advisors[group],
                online_capacity=self._online_capacity[group],
            )
        return RoutingMetrics(advisors=advisors, groups=groups)

    # ---------------------------------------------------------------- internals

    def _advisor(self, advisor_id: str) -> _Advisor:
        advisor = self._advisors.get(advisor_id)
        if advisor is None:
            raise RoutingError("unknown_advisor", f"unknown advisor {advisor_id!r}")
        return advisor

    def _chat(self, conversation_id: str) -> _Chat:
        chat = self._chats.get(conversation_id)
        if chat is None:
            raise RoutingError("unknown_conversation", f"unknown conversation {conversation_id!r}")
        return chat

    def _licence_for(self, request: ChatRequest, group: str) -> str | None:
        if request.required_licence is not None:
            return request.required_licence
        return self._cfg.group_licences.get(group)

    def _heap_entry(self, advisor_id: str) -> HeapEntry | None:
        advisor = self._advisors.get(advisor_id)
        return None if advisor is None else advisor.entry

    def _changed(self, advisor: _Advisor) -> None:
        """Call after every change to an advisor's load, status, grace or capacity."""
        advisor.version += 1
        advisor_id = advisor.spec.advisor_id
        if advisor.available:
            entry = (len(advisor.open), advisor.last_assigned_at, advisor_id, advisor.version)
            advisor.entry = entry
            self._index.refresh(advisor_id, advisor.pool_keys, entry)
        else:
            advisor.entry = None

    def _count(self, advisor: _Advisor, sign: int = 1) -> None:
        if advisor.present:
            for group in advisor.spec.groups:
                self._online_capacity[group] += sign * advisor.capacity
                self._online_advisors[group] += sign

    def _uncount(self, advisor: _Advisor) -> None:
        self._count(advisor, -1)

    def _eligible(self, chat: _Chat, advisor: _Advisor) -> bool:
        if not advisor.holds(chat.licence):
            return False
        if any(group in advisor.spec.groups for group in chat.groups):
            return True
        request = chat.request
        return chat.vip and (
            request.dedicated_advisor == advisor.spec.advisor_id
            or (request.team is not None and request.team == advisor.spec.team)
        )

    def _pick(self, chat: _Chat, avoid: str | None, *, include_groups: bool) -> _Advisor | None:
        """Dedicated advisor, then the client's team, then the least-loaded in the groups."""
        request = chat.request
        if chat.vip:
            dedicated = self._advisors.get(request.dedicated_advisor or "")
            if (
                dedicated is not None
                and dedicated.spec.advisor_id != avoid
                and dedicated.available
                and dedicated.holds(chat.licence)
            ):
                return dedicated
            if request.team is not None:
                found = self._index.best([("t", request.team, chat.licence)], avoid)
                if found is not None:
                    return self._advisors[found]
        if include_groups:
            keys = [("g", group, chat.licence) for group in chat.groups]
            found = self._index.best(keys, avoid)
            if found is not None:
                return self._advisors[found]
        return None

    def _reason(self, chat: _Chat, advisor: _Advisor) -> str:
        request = chat.request
        if chat.vip and request.dedicated_advisor == advisor.spec.advisor_id:
            return "dedicated"
        if chat.vip and request.team is not None and request.team == advisor.spec.team:
            return "team"
        if chat.rerouted:
            return "requeue"
        if chat.group not in advisor.spec.groups:
            return "fallback"
        return "least_loaded"

    def _place(
        self,
        chat: _Chat,
        now: float,
        out: list[Decision],
        *,
        avoid: str | None = None,
        allow_pool: bool = False,
    ) -> None:
        """Route a chat that is not with anyone: assign, offer to the pool, or queue."""
        self._widen_due(chat, now)
        pooled = allow_pool and chat.group in self._cfg.grab_groups
        advisor = self._pick(chat, avoid, include_groups=not pooled)
        if advisor is None and avoid is not None and not pooled:
            # Nobody else has room: going back to the same advisor beats waiting.
            advisor = self._pick(chat, None, include_groups=True)
        if advisor is not None:
            self._assign(chat, advisor, now, self._reason(chat, advisor), out)
        elif pooled:
            self._offer(chat, now, out)
        else:
            self._enqueue(chat, now, out)

    def _assign(
        self, chat: _Chat, advisor: _Advisor, now: float, reason: str, out: list[Decision]
    ) -> None:
        if chat.entry is not None:
            self._dequeue(chat)
        cid = chat.request.conversation_id
        advisor.open.add(cid)
        advisor.last_assigned_at = now
        self._changed(advisor)
        chat.state = _ChatState.ASSIGNED
        chat.advisor_id = advisor.spec.advisor_id
        chat.assigned_at = now
        chat.responded = False
        chat.fallback_token = 0
        chat.no_answer_token = self._timers.schedule(
            now + self._cfg.no_answer_timeout_s, _NO_ANSWER, cid
        )
        out.append(Assigned(cid, advisor.spec.advisor_id, reason))

    def _detach(
        self, chat: _Chat, reason: str, out: list[Decision], *, count_handled: bool = False
    ) -> _Advisor | None:
        """Take a chat off whoever or whatever holds it; returns the advisor it left."""
        cid = chat.request.conversation_id
        if chat.state is _ChatState.QUEUED:
            if chat.entry is not None:
                self._dequeue(chat)
            return None
        if chat.state is _ChatState.POOL:
            self._pool[chat.group].discard(cid)
            chat.pool_token = 0
            out.append(PoolWithdrawn(cid, reason))
            chat.state = _ChatState.QUEUED
            return None
        advisor = self._advisors[chat.advisor_id or ""]
        advisor.open.discard(cid)
        if count_handled:
            advisor.handled_today += 1
        else:
            out.append(Unassigned(cid, advisor.spec.advisor_id, reason))
        self._changed(advisor)
        chat.state = _ChatState.QUEUED
        chat.advisor_id = None
        chat.no_answer_token = 0
        chat.responded = True
        return advisor

    def _offer(self, chat: _Chat, now: float, out: list[Decision]) -> None:
        cid = chat.request.conversation_id
        chat.state = _ChatState.POOL
        self._pool[chat.group].add(cid)
        chat.pool_token = self._timers.schedule(now + self._cfg.pool_fallback_after_s, _POOL, cid)
        offered_to = self._index.available_members(("g", chat.group, chat.licence))
        out.append(Offered(cid, chat.group, tuple(offered_to)))

    def _chat_lanes(self, chat: _Chat) -> tuple[LaneKey, ...]:
        keys: list[LaneKey] = [("p", chat.group, None)]
        keys.extend(("g", group, chat.licence) for group in chat.groups)
        request = chat.request
        if chat.vip:
            if request.dedicated_advisor is not None:
                keys.append(("d", request.dedicated_advisor, chat.licence))
            if request.team is not None:
                keys.append(("t", request.team, chat.licence))
        return tuple(keys)

    def _enqueue(self, chat: _Chat, now: float, out: list[Decision]) -> None:
        cid = chat.request.conversation_id
        entry = queue_entry(
            rerouted=chat.rerouted,
            waiting_since=chat.waiting_since,
            star=chat.request.star,
            aging_s_per_star=self._cfg.aging_s_per_star,
            seq=next(self._seq),
            cid=cid,
        )
        chat.state = _ChatState.QUEUED
        chat.entry = entry
        chat.lane_keys = self._chat_lanes(chat)
        self._lanes.add(entry, chat.lane_keys)
        position = self._lanes.position(entry, ("p", chat.group, None))
        self._moved(chat.group, position)
        chat.reported_position = position
        out.append(Queued(cid, chat.group, position, self._eta(chat.group, position)))
        self._schedule_fallback(chat)

    def _dequeue(self, chat: _Chat) -> None:
        assert chat.entry is not None
        position = self._lanes.position(chat.entry, ("p", chat.group, None))
        self._lanes.remove(chat.entry, chat.lane_keys)
        self._moved(chat.group, position)
        chat.entry = None
        chat.lane_keys = ()
        chat.fallback_token = 0

    def _moved(self, group: str, position: int) -> None:
        index = position - 1
        if index < self._moved_from.get(group, index + 1):
            self._moved_from[group] = index

    def _next_fallback_group(self, chat: _Chat) -> str | None:
        target = self._cfg.group_fallback.get(chat.groups[-1])
        return None if target is None or target in chat.groups else target

    def _fallback_deadline(self, chat: _Chat) -> float:
        return chat.fallback_base + self._cfg.fallback_after_s * len(chat.groups)

    def _schedule_fallback(self, chat: _Chat) -> None:
        if self._next_fallback_group(chat) is not None:
            chat.fallback_token = self._timers.schedule(
                self._fallback_deadline(chat), _FALLBACK, chat.request.conversation_id
            )

    def _widen_due(self, chat: _Chat, now: float) -> None:
        """Before routing, apply every fallback level the chat's waiting time has earned."""
        while (target := self._next_fallback_group(chat)) is not None and (
            self._fallback_deadline(chat) <= now
        ):
            chat.groups.append(target)

    def _widen(self, chat: _Chat, now: float, out: list[Decision]) -> None:
        """Fallback timer: the queued chat may now also go to the wider group."""
        target = self._next_fallback_group(chat)
        if target is None or chat.entry is None:
            return
        added: LaneKey = ("g", target, chat.licence)
        chat.groups.append(target)
        chat.lane_keys = (*chat.lane_keys, added)
        self._lanes.add(chat.entry, (added,))
        found = self._index.best([added])
        if found is not None:
            advisor = self._advisors[found]
            self._assign(chat, advisor, now, self._reason(chat, advisor), out)
        else:
            self._schedule_fallback(chat)

    def _fill(self, advisor: _Advisor, now: float, out: list[Decision]) -> None:
        """Give an advisor with room the best queued chats it may serve, until it is full."""
        while advisor.available:
            entry = self._lanes.head(advisor.lane_keys)
            if entry is None:
                return
            chat = self._chats[entry[3]]
            self._assign(chat, advisor, now, self._reason(chat, advisor), out)

    def _reroute_all(self, advisor: _Advisor, reason: str, now: float, out: list[Decision]) -> None:
        aging = self._cfg.aging_s_per_star
        chats = sorted(
            (self._chats[cid] for cid in advisor.open),
            key=lambda c: (c.waiting_since - c.request.star * aging, c.request.conversation_id),
        )
        for chat in chats:
            self._detach(chat, reason, out)
            chat.rerouted = True
            self._place(chat, now, out, avoid=advisor.spec.advisor_id)

    def _no_answer(self, chat: _Chat, now: float, out: list[Decision]) -> None:
        previous = self._detach(chat, "no_answer", out)
        chat.rerouted = True
        self._place(chat, now, out, avoid=previous.spec.advisor_id if previous else None)
        if previous is not None:
            self._fill(previous, now, out)

    def _eta(self, group: str, position: int) -> float:
        return position * self._cfg.avg_handle_time_s / max(1, self._online_capacity[group])

    def _timer_is_live(self, timer: TimerEntry) -> bool:
        _, token, kind, subject = timer
        if kind == _GRACE:
            advisor = self._advisors.get(subject)
            return advisor is not None and advisor.grace_token == token
        chat = self._chats.get(subject)
        if chat is None:
            return False
        if kind == _FALLBACK:
            return chat.fallback_token == token
        if kind == _POOL:
            return chat.pool_token == token
        return chat.no_answer_token == token

    def _finish(self, out: list[Decision]) -> list[Decision]:
        """Report every queued chat whose position changed during this call."""
        for group, start in self._moved_from.items():
            lane = self._lanes.lane(("p", group, None))
            for index in range(start, len(lane)):
                chat = self._chats[lane[index][3]]
                position = index + 1
                if chat.reported_position != position:
                    chat.reported_position = position
                    out.append(
                        PositionChanged(
                            chat.request.conversation_id, position, self._eta(group, position)
                        )
                    )
        self._moved_from.clear()
        return out


def _check_capacity(capacity: int) -> None:
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise RoutingError(
            "invalid_capacity", f"capacity must be a whole number >= 1: {capacity!r}"
        )


def _advisor_pool_keys(spec: AdvisorSpec) -> tuple[PoolKey, ...]:
    licences: list[str | None] = [None, *sorted(spec.licences)]
    keys: list[PoolKey] = [("g", g, lic) for g in sorted(spec.groups) for lic in licences]
    if spec.team is not None:
        keys.extend(("t", spec.team, lic) for lic in licences)
    return tuple(keys)


def _advisor_lane_keys(spec: AdvisorSpec) -> tuple[LaneKey, ...]:
    licences: list[str | None] = [None, *sorted(spec.licences)]
    keys: list[LaneKey] = list(_advisor_pool_keys(spec))
    keys.extend(("d", spec.advisor_id, lic) for lic in licences)
    return tuple(keys)
