"""Carries out routing: feeds the pure Router events and turns its decisions into state and events.

The Router (routing/) decides; this module stores what it decided, tells the investor and
advisor, and wakes the router exactly when its next timer (grace, fallback, no-answer) is due.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import zoneinfo
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from chatserver import bus as topics
from chatserver.auth import Principal
from chatserver.protocol import ErrorCode, ProtocolError
from chatserver.storage.records import Conversation, Customer, User
from chatserver.tasks import stop_task, wait_event
from routing import (
    AdvisorSpec,
    AdvisorStatus,
    Assigned,
    ChatRequest,
    Decision,
    Offered,
    PoolWithdrawn,
    PositionChanged,
    Queued,
    Router,
    RoutingConfig,
    RoutingError,
    Unassigned,
)
from routing.config import DEFAULT_GROUPS, OpeningWindow

if TYPE_CHECKING:
    from chatserver.hub import Hub

log = logging.getLogger("chatserver.assignment")

# Which advisor group serves each bot intent (bot category ids → routing skill groups).
INTENT_GROUPS = {
    "account": "account", "risk_assessment": "account", "password_app": "account", "transfer": "account",
    "trading": "trading", "fees": "trading", "ipo": "trading", "margin": "margin", "wealth": "wealth",
    "complaints": "complaints", "general": "general",
}
OFFLINE_NOTICE = {
    "closed": "当前不在人工服务时间，智能助手仍可为您解答。您也可以留言，顾问上班后会第一时间联系您。",
    "no_advisor": "当前暂无顾问在线，您的会话已排队。您也可以留言，顾问上线后会第一时间联系您。",
}
ROUTING_ERROR_CODES = {"already_taken": ErrorCode.ALREADY_TAKEN}


def routing_config(settings: Any) -> RoutingConfig:
    hours = {group: tuple(OpeningWindow(days, start, end) for days, start, end in windows)
             for group, windows in settings.business_hours_windows.items() if group in DEFAULT_GROUPS}
    return RoutingConfig(
        business_hours=hours,
        default_capacity=settings.default_capacity,
        fallback_after_s=settings.fallback_after_s,
        grab_groups=settings.grab_group_set & DEFAULT_GROUPS,
        pool_fallback_after_s=settings.pool_fallback_after_s,
        grace_period_s=settings.grace_period_s,
        no_answer_timeout_s=settings.no_answer_timeout_s,
    )


def group_for(conv: Conversation) -> str:
    if conv.group_name in DEFAULT_GROUPS:
        return conv.group_name
    return INTENT_GROUPS.get(conv.intent or "general", "general")


def _as_protocol_error(exc: RoutingError) -> ProtocolError:
    code = ROUTING_ERROR_CODES.get(exc.code, ErrorCode.ROUTING_REJECTED)
    return ProtocolError(code, exc.message, routing_code=exc.code)


class Assignment:
    def __init__(self, hub: Hub):
        self.hub = hub
        self.router = Router(routing_config(hub.settings))
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._offers: dict[str, tuple[str, ...]] = {}
        self._connections: dict[str, int] = {}
        self._names: dict[str, str] = {}

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Rebuild routing state from the database (after a restart), then run the timers."""
        now = self.hub.clock()
        for advisor in await self.hub.store.list_users("advisor"):
            self._known(advisor, now)
        for conv in reversed(await self.hub.store.list_conversations(states=["assigned"], limit=100_000)):
            if conv.advisor_id:
                try:
                    self.router.restore_assignment(conv.id, conv.advisor_id, now)
                except RoutingError as exc:
                    log.warning("could not restore %s to %s: %s", conv.id, conv.advisor_id, exc)
        for conv in reversed(await self.hub.store.list_conversations(states=["queued"], limit=100_000)):
            await self.submit(conv, await self.hub.customer_of(conv), requeued=True)
        self._task = asyncio.create_task(self._timer_loop(), name="routing-timers")

    async def stop(self) -> None:
        await stop_task(self._task)

    def _known(self, advisor: User, now: float) -> None:
        self._names[advisor.id] = advisor.display_name
        self.router.upsert_advisor(AdvisorSpec(
            advisor_id=advisor.id, groups=frozenset(advisor.groups) & DEFAULT_GROUPS or frozenset({"general"}),
            capacity=advisor.capacity, licences=frozenset(advisor.licences), team=advisor.team,
            name=advisor.display_name,
        ), now)

    # -- queries -----------------------------------------------------------------------------
    def current_advisor(self, conv: Conversation) -> str | None:
        return self.router.assigned_to(conv.id) or conv.advisor_id

    def may_claim(self, advisor_id: str, conversation_id: str) -> bool:
        return advisor_id in self._offers.get(conversation_id, ())

    def pool_for(self, advisor_id: str) -> list[str]:
        return [cid for cid, who in self._offers.items() if advisor_id in who]

    def name_of(self, advisor_id: str | None) -> str | None:
        return self._names.get(advisor_id) if advisor_id else None

    # -- events from the hub -------------------------------------------------------------------------
    async def advisor_connected(self, user: User) -> None:
        self._connections[user.id] = self._connections.get(user.id, 0) + 1
        async with self._lock:
            now = self.hub.clock()
            self._known(user, now)
            await self._apply(self.router.set_status(user.id, AdvisorStatus.ONLINE, now))

    async def advisor_disconnected(self, user_id: str) -> None:
        left = self._connections.get(user_id, 1) - 1
        if left > 0:
            self._connections[user_id] = left
            return
        self._connections.pop(user_id, None)
        async with self._lock:
            await self._apply(self.router.disconnected(user_id, self.hub.clock()))

    async def set_presence(self, user_id: str, status: str) -> None:
        async with self._lock:
            try:
                decisions = self.router.set_status(user_id, AdvisorStatus(status), self.hub.clock())
            except RoutingError as exc:
                raise _as_protocol_error(exc) from None
            await self._apply(decisions)

    async def submit(self, conv: Conversation, customer: Customer | None, *, requeued: bool = False) -> None:
        dedicated = None
        if customer and customer.dedicated_advisor:
            advisor = await self.hub.store.get_user_by_username(customer.dedicated_advisor)
            dedicated = advisor.id if advisor else None
        request = ChatRequest(
            conversation_id=conv.id, group=group_for(conv), star=customer.star if customer else 1,
            dedicated_advisor=dedicated, team=customer.team if customer else None,
            created_at=conv.updated_at if requeued else None,
            offline_message=False,
        )
        async with self._lock:
            try:
                decisions = self.router.submit(request, self.hub.clock())
            except RoutingError as exc:
                if exc.code != "duplicate_conversation":
                    raise
                # Routed already: a second hand-over of the same chat raced this one (two sockets
                # of one investor), or the cluster leader adopted the queued row first. Either
                # way the chat is where the caller wants it.
                log.info("chat %s is already routed; hand-over not repeated", conv.id)
                return
            await self._apply(decisions)

    async def closed(self, conversation_id: str) -> None:
        """The chat ended: its advisor's slot is free (a no-op for a chat routing does not hold)."""
        async with self._lock:
            self._offers.pop(conversation_id, None)
            try:
                decisions = self.router.close(conversation_id, self.hub.clock())
            except RoutingError:
                decisions = []  # closed while still with the bot: routing never saw it
            await self._apply(decisions)

    async def responded(self, conversation_id: str, advisor_id: str) -> None:
        try:
            self.router.responded(conversation_id, advisor_id, self.hub.clock())
        except RoutingError as exc:
            # The reply is already stored and delivered; routing bookkeeping must not undo that.
            log.warning("responded(%s, %s) not recorded: %s", conversation_id, advisor_id, exc.code)

    async def claim(self, who: Principal, conversation_id: str) -> None:
        if who.role != "advisor":
            raise ProtocolError(ErrorCode.FORBIDDEN, "only advisors claim chats")
        async with self._lock:
            try:
                decisions = self.router.claim(who.user_id, conversation_id, self.hub.clock())
            except RoutingError as exc:
                raise _as_protocol_error(exc) from None
            await self._apply(decisions)

    async def transfer(self, who: Principal, conversation_id: str, to_advisor: str | None,
                       to_group: str | None, note: str | None) -> None:
        conv = await self.hub.conversation_for(who, conversation_id, write=False)
        if who.role == "advisor" and conv.advisor_id != who.user_id:
            raise ProtocolError(ErrorCode.CONVERSATION_NOT_FOUND, "no such conversation for you")
        if who.role == "investor":
            raise ProtocolError(ErrorCode.FORBIDDEN, "investors cannot transfer")
        async with self._lock:
            try:
                decisions = self.router.transfer(conversation_id, self.hub.clock(),
                                                 to_advisor=to_advisor, to_group=to_group)
            except RoutingError as exc:
                raise _as_protocol_error(exc) from None
            if note:
                # The note travels with the chat as an internal message only staff can see.
                from chatserver.hub import SYSTEM

                await self.hub.post_as(SYSTEM, conv, f"转接备注（{who.name}）：{note}", kind="note",
                                       meta={"by": who.user_id})
            await self.hub.store.audit(conversation_id, who.user_id, "conversation.transfer",
                                       {"to_advisor": to_advisor, "to_group": to_group}, self.hub.clock())
            await self._apply(decisions)

    async def reassign(self, who: Principal, conversation_id: str, advisor_id: str) -> None:
        if who.role not in ("supervisor", "admin"):
            raise ProtocolError(ErrorCode.FORBIDDEN, "only supervisors reassign chats")
        await self.hub.conversation_for(who, conversation_id, write=False)
        async with self._lock:
            try:
                decisions = self.router.reassign(conversation_id, advisor_id, self.hub.clock())
            except RoutingError as exc:
                raise _as_protocol_error(exc) from None
            await self.hub.store.audit(conversation_id, who.user_id, "conversation.reassign",
                                       {"advisor_id": advisor_id}, self.hub.clock())
            await self._apply(decisions)

    # -- timers --------------------------------------------------------------------------------
    async def _timer_loop(self) -> None:
        while True:
            deadline = self.router.next_deadline()
            delay = 1.0 if deadline is None else max(0.0, min(1.0, deadline - self.hub.clock()))
            self._wake.clear()
            await wait_event(self._wake, delay)
            try:
                async with self._lock:
                    await self._apply(self.router.tick(self.hub.clock()))
            except Exception:  # noqa: BLE001 - the timer loop must survive one bad decision
                log.exception("routing tick failed")

    # -- carrying out decisions -------------------------------------------------------------------
    async def _apply(self, decisions: list[Decision]) -> None:
        for d in decisions:
            if isinstance(d, Assigned):
                await self._assigned(d)
            elif isinstance(d, Queued | PositionChanged):
                await self._queued(d)
            elif isinstance(d, Offered):
                await self._offered(d)
            elif isinstance(d, PoolWithdrawn):
                await self._withdrawn(d)
            elif isinstance(d, Unassigned):
                await self._unassigned(d)
        self._wake.set()

    async def _assigned(self, d: Assigned) -> None:
        hub = self.hub
        now = hub.clock()
        conv = await hub.store.get_conversation(d.conversation_id)
        if conv is None:
            return
        if not await self._take_row(conv, d.advisor_id, now):
            log.warning("not assigning %s to %s: its row changed meanwhile (another routing leader?)",
                        conv.id, d.advisor_id)
            return
        await hub.store.audit(conv.id, None, "conversation.assign", {"advisor_id": d.advisor_id, "reason": d.reason}, now)
        conv = replace(conv, state="assigned", advisor_id=d.advisor_id)
        name = self.name_of(d.advisor_id) or "顾问"
        from chatserver.hub import SYSTEM

        await hub.post_as(SYSTEM, conv, f"{name} 已为您接入，请问有什么可以帮您？", kind="system",
                          meta={"advisor_id": d.advisor_id, "advisor_name": name})
        await hub.publish_state(conv, advisor_name=name, reason=d.reason)
        customer = await hub.customer_of(conv)
        staff = Principal(user_id=d.advisor_id, role="advisor", name=name)
        transcript = await hub.transcript(staff, conv)
        investor = await hub.user(conv.investor_id)
        await hub.publish(topics.user_topic(d.advisor_id), {
            "type": "assigned", "conversation": conv.public(), "reason": d.reason,
            "customer": customer.public() if customer else None,
            "investor": {"id": conv.investor_id, "name": investor.display_name if investor else ""},
            "transcript": [m.event() for m in transcript],
        })
        last_question = next((m for m in reversed(transcript) if m.sender_role == "investor"), None)
        if last_question is not None:
            hub.assist.submit(conv.id, conv, last_question, last_question.text, customer)

    async def _take_row(self, conv: Conversation, advisor_id: str, now: float) -> bool:
        """Compare-and-set on the conversation row as it was just read. During a failover a stale
        ex-leader and the new leader may both assign the same chat: only the first write lands."""
        if conv.state == "closed":
            return False
        return await self.hub.store.take_conversation(conv, advisor_id, now)

    async def _queued(self, d: Queued | PositionChanged) -> None:
        conv = await self.hub.store.get_conversation(d.conversation_id)
        if conv is None:
            return
        event = {"type": "conversation", "conversation_id": conv.id, "state": "queued",
                 "position": d.position, "eta_s": round(d.eta_s)}
        offline = self.offline_reason(d.group) if isinstance(d, Queued) else None
        if offline:
            # Nights, weekends, or nobody of the group online: the bot keeps serving, and the
            # investor is offered 留言; the chat stays queued for the next advisor who comes on.
            event["offline"] = offline
            from chatserver.hub import SYSTEM

            await self.hub.post_as(SYSTEM, conv, OFFLINE_NOTICE[offline], kind="system", meta={"offline": offline})
        await self.hub.publish(topics.user_topic(conv.investor_id), event)

    def offline_reason(self, group: str) -> str | None:
        """'closed' outside the group's business hours, 'no_advisor' if none of it is online."""
        now = datetime.datetime.fromtimestamp(self.hub.clock(), zoneinfo.ZoneInfo(self.hub.settings.timezone))
        if not self.router.is_open(group, now.time(), now.weekday()):
            return "closed"
        metrics = self.router.metrics(self.hub.clock()).groups.get(group)
        return "no_advisor" if metrics is None or metrics.online_advisors == 0 else None

    async def _offered(self, d: Offered) -> None:
        self._offers[d.conversation_id] = d.advisor_ids
        conv = await self.hub.store.get_conversation(d.conversation_id)
        if conv is None:
            return
        customer = await self.hub.customer_of(conv)
        event = {"type": "pool", "action": "offer", "conversation": conv.public(), "group": d.group,
                 "customer": customer.public() if customer else None}
        for advisor_id in d.advisor_ids:
            await self.hub.publish(topics.user_topic(advisor_id), event)

    async def _withdrawn(self, d: PoolWithdrawn) -> None:
        offered = self._offers.pop(d.conversation_id, ())
        for advisor_id in offered:
            await self.hub.publish(topics.user_topic(advisor_id), {
                "type": "pool", "action": "withdraw", "conversation_id": d.conversation_id, "reason": d.reason,
            })

    async def _unassigned(self, d: Unassigned) -> None:
        now = self.hub.clock()
        await self.hub.store.update_conversation(d.conversation_id, now, state="queued", advisor_id=None)
        await self.hub.store.audit(d.conversation_id, None, "conversation.unassign",
                                   {"advisor_id": d.advisor_id, "reason": d.reason}, now)
        await self.hub.publish(topics.user_topic(d.advisor_id), {
            "type": "unassigned", "conversation_id": d.conversation_id, "reason": d.reason,
        })
