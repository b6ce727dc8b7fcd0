"""The hub: the one path every message takes, and the life of a conversation around it.

accept_message() is the single entry for chat text from any source (browser WebSocket, channel
webhook, the bot): authorise → compliance → store (ack-after-commit) → deliver → bot/assist.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from bot import BotState
from chatserver import bus as topics
from chatserver.assist import AssistQueue, suggester_for
from chatserver.auth import Principal
from chatserver.bus import Bus
from chatserver.engines import Engines
from chatserver.logs import mask
from chatserver.protocol import ErrorCode, ProtocolError, check_text, encode
from chatserver.settings import Settings
from chatserver.storage.records import Conversation, Customer, NewMessage, StoredMessage, User
from chatserver.storage.sql import SQLStore, StorageUnavailable, new_id

log = logging.getLogger("chatserver.hub")

BOT = Principal(user_id="bot", role="bot", name="智能助手")
SYSTEM = Principal(user_id="system", role="system", name="系统")


@dataclass(frozen=True)
class BotTurn:
    """What the bot decided for one investor message, before anything is stored."""

    action: str
    handoff_reason: str | None
    changes: dict[str, Any]  # the conversation row: bot state and intent
    message: NewMessage | None  # the bot's answer, None when it has nothing to say


# How many of a sender's recent messages compliance sees, to catch a phrase split across them.
COMPLIANCE_WINDOW = 3
GREETING = "您好，我是智能助手，可以解答开户、交易、两融、基金理财、转账等问题。需要人工服务请点击“转人工”或直接输入“转人工”。"
INVESTOR_VISIBLE_KINDS = frozenset({"text", "bot", "system", "leave_message"})


@dataclass(frozen=True, slots=True)
class Accepted:
    """What the sender is acknowledged with, after commit."""

    message: StoredMessage
    blocked: bool = False


class Hub:
    def __init__(self, settings: Settings, store: SQLStore, bus: Bus, engines: Engines,
                 clock: Callable[[], float] = time.time):
        self.settings = settings
        self.store = store
        self.bus = bus
        self.engines = engines
        self.clock = clock
        if not settings.redis_url:
            # No shared bus means one hub node, so this store is the database's only writer and
            # may keep conversation rows in memory (one read saved per message).
            store.cache_conversations()
        self._windows: dict[tuple[str, str], deque[str]] = {}
        # Conversations whose first advisor reply was already filed beside their unanswered
        # questions: only the bot adds those, and a chat never returns to the bot, so later
        # replies would each pay a serialized write (an fsync on SQLite) to update nothing.
        self._reply_filed: set[str] = set()
        # Set by the app once routing is wired: carries hand-offs, closes and replies to it.
        from chatserver.assignment import Assignment

        self.assignment = Assignment(self)
        self.channel_wakeup = asyncio.Event()
        self.suggester = suggester_for(engines, settings.assist_workers)
        # With a worker, one round trip carries a batch; in this process, one job per loop turn.
        batched = settings.assist_workers > 0
        self.assist = AssistQueue(self._suggest_batch, batch_max=64 if batched else 1,
                                  gather_s=settings.assist_gather_ms / 1000 if batched else 0.0)
        self.metrics_hook: Callable[[str, dict[str, Any]], None] = lambda name, labels: None
        # External channels with a callback URL; replies to their conversations go out by HTTP.
        self.channel_callbacks: set[str] = set()

    # -- authorisation -----------------------------------------------------------------------
    async def conversation_for(self, who: Principal, conversation_id: str, *, write: bool,
                               recent_ok: bool = False) -> Conversation:
        """The conversation if `who` may read it (or write to it); the same error either way otherwise."""
        conv = await self.store.get_conversation(conversation_id, recent_ok=recent_ok)
        if conv is None or not self.may_read(who, conv):
            raise ProtocolError(ErrorCode.CONVERSATION_NOT_FOUND, "no such conversation for you")
        if write and who.role in ("supervisor", "admin"):
            raise ProtocolError(ErrorCode.FORBIDDEN, "supervisors read conversations; they do not post in them")
        return conv

    def may_read(self, who: Principal, conv: Conversation) -> bool:
        if who.role == "investor":
            return conv.investor_id == who.user_id
        if who.role == "advisor":
            return conv.advisor_id == who.user_id or self.assignment.may_claim(who.user_id, conv.id)
        return who.role in ("supervisor", "admin", "bot", "system")

    # -- conversation start ---------------------------------------------------------------------
    async def start_conversation(self, who: Principal, channel: str = "web", group: str | None = None) -> Conversation:
        if who.role != "investor":
            raise ProtocolError(ErrorCode.FORBIDDEN, "only investors start conversations")
        existing = await self.store.open_conversation_for(who.user_id, channel)
        if existing is not None:
            return existing
        now = self.clock()
        conv = Conversation(
            id=new_id(), investor_id=who.user_id, customer_id=who.customer_id, channel=channel,
            state="bot", group_name=group, created_at=now, updated_at=now,
        )
        await self.store.create_conversation(conv)
        await self.store.audit(conv.id, who.user_id, "conversation.start", {"channel": channel}, now)
        await self.post_as(BOT, conv, GREETING, kind="bot")
        self.metrics_hook("conversation_started", {"channel": channel})
        return (await self.store.get_conversation(conv.id)) or conv

    # -- THE message path -------------------------------------------------------------------------
    async def accept_message(self, who: Principal, conversation_id: str, text: str,
                             client_id: str | None, *, kind: str = "text") -> Accepted:
        """Check, store and deliver one chat message; returns after it is committed.

        Raises ProtocolError for anything refused. A message compliance blocks is still
        stored (with its verdict) and never delivered; the sender gets COMPLIANCE_BLOCKED.
        """
        check_text(text, self.settings.max_text_chars)
        # A row another node wrote a moment ago may still be cached here: the same race a
        # database read has with that write, a bus delivery wider (SQLStore.cache_conversations).
        conv = await self.conversation_for(who, conversation_id, write=True, recent_ok=True)
        if conv.state == "closed" and kind != "leave_message":
            raise ProtocolError(ErrorCode.CONVERSATION_CLOSED, "this conversation is closed; start a new one")
        if who.role == "advisor" and conv.advisor_id != who.user_id:
            raise ProtocolError(ErrorCode.CONVERSATION_NOT_FOUND, "no such conversation for you")
        customer = await self.customer_of(conv)
        verdict = self._check(who, conv, text, customer)
        stored_text = verdict.masked_text if who.role == "investor" else text
        blocked = verdict.tier.name == "BLOCK"
        now = self.clock()
        alerts = tuple(_alert_row(who, hit, now) for hit in verdict.hits if hit.tier.name in ("WARN", "BLOCK"))
        message = NewMessage(
            conversation_id=conv.id, sender_id=who.user_id, sender_role=who.role, sender_name=who.name,
            kind=kind, text=stored_text, verdict=verdict.tier.name.lower(), client_id=client_id,
            created_at=now, alerts=alerts, hold=blocked and verdict.hold,
            deliver_to_channel=self._channel_target(conv, kind, blocked),
            meta={"hits": [hit_dict(h) for h in verdict.hits]} if verdict.hits else None,
        )
        # An advisor's first reply in a chat is filed beside its unanswered questions (the
        # learning loop) in the message's own transaction; a chat never returns to the bot.
        files_reply = who.role == "advisor" and not blocked and conv.id not in self._reply_filed
        # A bot-served investor's question and the bot's answer share one commit: the bot is
        # pure and decides in well under a millisecond, so it answers before the question is
        # stored instead of waiting for a second commit after it.
        turn = (self._plan_bot_turn(conv, text, customer)
                if who.role == "investor" and conv.state == "bot" and kind != "leave_message" and not blocked
                else None)
        answer = None
        if turn is not None and turn.message is not None:
            stored, answer = await self.store.append_with_reply(message, turn.message, turn.changes)
        else:
            stored = await self.store.append(message, files_reply=files_reply)
        if files_reply:
            self._reply_filed.add(conv.id)
        self.metrics_hook("message_in", {"role": who.role, "verdict": stored.verdict})
        if stored.duplicate:
            # An idempotent resend: the first attempt already delivered it; just re-ack.
            return Accepted(stored, blocked=stored.verdict == "block")
        if not blocked:
            # Only what the other side saw can combine with a later message into a split phrase;
            # a blocked message must not make the advisor's rephrasing trip the same rule.
            self._remember(who, conv, text)
        if alerts:
            await self._publish_alerts(conv, stored, alerts)
        if blocked:
            await self.publish(topics.user_topic(who.user_id), {
                "type": "blocked", "conversation_id": conv.id, "message_id": stored.id, "seq": stored.seq,
                "held": message.hold, "hits": [hit_dict(h) for h in verdict.hits if h.tier.name == "BLOCK"],
            })
            await self.publish(topics.conversation_topic(conv.id), stored.event())
            return Accepted(stored, blocked=True)
        await self.deliver(conv, stored)
        if message.deliver_to_channel:
            self.channel_wakeup.set()
        if turn is not None:
            await self._finish_bot_turn(conv, stored, text, turn, answer)
        else:
            await self._after_delivery(who, conv, stored, text, customer)
        return Accepted(stored)

    def _check(self, who: Principal, conv: Conversation, text: str, customer: Customer | None) -> Any:
        engine = self.engines.compliance
        assert engine is not None, "engines not loaded"
        previous = tuple(self._windows.get((conv.id, who.user_id), ()))
        # Hub-written system notices are checked like the bot's text: both are the firm speaking.
        role = "bot" if who.role == "system" else who.role
        return engine.check(text, role=role, previous=previous,
                            customer_risk=customer.risk_level if customer else None)

    def _remember(self, who: Principal, conv: Conversation, text: str) -> None:
        window = self._windows.get((conv.id, who.user_id))
        if window is None:
            window = self._windows[(conv.id, who.user_id)] = deque(maxlen=COMPLIANCE_WINDOW)
        window.append(text)

    def _channel_target(self, conv: Conversation, kind: str, blocked: bool) -> str | None:
        if blocked or conv.channel in ("web", "h5") or kind not in INVESTOR_VISIBLE_KINDS:
            return None
        return conv.channel if self.channel_has_callback(conv.channel) else None

    def channel_has_callback(self, channel: str) -> bool:
        return channel in self.channel_callbacks

    async def post_as(self, who: Principal, conv: Conversation, text: str, *, kind: str,
                      meta: dict[str, Any] | None = None,
                      conversation_update: dict[str, Any] | None = None) -> StoredMessage:
        """Bot and system messages take the same path: checked, stored, delivered.

        `conversation_update` is stored in the message's own transaction (see SQLStore.append).
        """
        verdict = self._check(who, conv, text, None)
        now = self.clock()
        channel = self._channel_target(conv, kind, False)
        stored = await self.store.append(NewMessage(
            conversation_id=conv.id, sender_id=who.user_id, sender_role=who.role, sender_name=who.name,
            kind=kind, text=text, verdict=verdict.tier.name.lower(), created_at=now, meta=meta,
            deliver_to_channel=channel,
        ), conversation_values=conversation_update)
        await self.deliver(conv, stored)
        if stored.verdict != "pass":
            log.warning("bot/system message %s in %s has verdict %s", stored.id, conv.id, stored.verdict)
        if channel:
            self.channel_wakeup.set()  # the outbox has a message for a channel gateway
        return stored

    async def deliver(self, conv: Conversation, message: StoredMessage) -> None:
        payload = encode(message.event())
        if message.kind in INVESTOR_VISIBLE_KINDS:
            await self.bus.publish(topics.user_topic(conv.investor_id), payload)
        advisor_id = self.assignment.current_advisor(conv)
        if advisor_id:
            await self.bus.publish(topics.user_topic(advisor_id), payload)
        await self.bus.publish(topics.conversation_topic(conv.id), payload)
        self.metrics_hook("message_out", {"kind": message.kind})

    async def _after_delivery(self, who: Principal, conv: Conversation, stored: StoredMessage,
                              text: str, customer: Customer | None) -> None:
        if who.role == "investor":
            if conv.state == "assigned" and conv.advisor_id:
                self.assist.submit(conv.id, conv, stored, text, customer)  # after the ack
        elif who.role == "advisor":
            await self.assignment.responded(conv.id, who.user_id)

    # -- the bot ----------------------------------------------------------------------------
    def _plan_bot_turn(self, conv: Conversation, text: str, customer: Customer | None) -> BotTurn:
        """The bot's reply to an investor message, checked and ready to store with it."""
        bot = self.engines.bot
        assert bot is not None
        reply = bot.respond(text, bot_state_from(conv.bot_state), customer.risk_level if customer else None)
        meta: dict[str, Any] = {"action": reply.action, "confidence": round(reply.confidence, 3)}
        if reply.entry_id:
            meta["entry_id"] = reply.entry_id
        if reply.suggestions:
            meta["suggestions"] = [{"entry_id": s.entry_id, "question": s.question} for s in reply.suggestions]
        if reply.handoff_reason:
            meta["handoff_reason"] = reply.handoff_reason
        changes: dict[str, Any] = {"bot_state": dataclasses.asdict(reply.state), "intent": reply.intent or conv.intent}
        message = None
        if reply.text:
            answered = replace(conv, **changes)
            verdict = self._check(BOT, answered, reply.text, None)
            message = NewMessage(
                conversation_id=conv.id, sender_id=BOT.user_id, sender_role=BOT.role, sender_name=BOT.name,
                kind="bot", text=reply.text, verdict=verdict.tier.name.lower(), created_at=self.clock(), meta=meta,
                deliver_to_channel=self._channel_target(answered, "bot", False),
            )
        return BotTurn(action=reply.action, handoff_reason=reply.handoff_reason, changes=changes, message=message)

    async def _finish_bot_turn(self, conv: Conversation, stored: StoredMessage, text: str, turn: BotTurn,
                               answer: StoredMessage | None) -> None:
        """After the question (and the answer with it) committed: deliver, learn, hand over."""
        now = self.clock()
        conv = replace(conv, **turn.changes)
        if answer is not None:
            await self.deliver(conv, answer)
            if answer.verdict != "pass":
                log.warning("bot message %s in %s has verdict %s", answer.id, conv.id, answer.verdict)
            if turn.message is not None and turn.message.deliver_to_channel:
                self.channel_wakeup.set()
        elif turn.message is None:
            await self.store.update_conversation(conv.id, now, **turn.changes)
        # The learning loop: a question the bot could only guess at ("did you mean") or had no
        # answer for is what a KB editor needs to see; explicit 转人工 and complaints are not.
        if turn.action == "suggest" or turn.handoff_reason in ("low_confidence", "repeated_miss"):
            await self.store.add_unanswered(conv.id, stored.id, text, now)
        if turn.action == "handoff":
            await self.request_human(conv, reason=turn.handoff_reason or "bot")

    async def _suggest_batch(self, jobs: list[tuple[Conversation, StoredMessage, str, Customer | None]]) -> None:
        """Agent assist for the investor messages waiting (AssistQueue): top KB entries to each advisor."""
        jobs = [job for job in jobs if job[0].advisor_id]
        if not jobs:
            return
        results = await self.suggester.suggest_many(
            [(text, customer.risk_level if customer else None) for _, _, text, customer in jobs])
        for (conv, stored, _, _), items in zip(jobs, results, strict=True):
            await self.publish(topics.user_topic(conv.advisor_id or ""), {
                "type": "suggestions", "conversation_id": conv.id, "for_message": stored.id,
                "items": [_suggestion_dict(s) for s in items],
            })

    # -- hand-off, close, rating ----------------------------------------------------------------
    async def request_human(self, conv: Conversation, reason: str) -> None:
        if conv.state == "assigned":
            return
        if conv.state == "closed":
            raise ProtocolError(ErrorCode.CONVERSATION_CLOSED, "this conversation is closed")
        if conv.state == "queued":
            # Routed already, or a first attempt committed the state and failed before routing
            # saw it: a second submit is a no-op for the first and routes the second.
            await self.assignment.submit(conv, await self.customer_of(conv))
            return
        now = self.clock()
        await self.store.update_conversation(conv.id, now, state="queued")
        # The chat's audit chain says handoff before assign; should this fail, the retry above routes it.
        await self.store.audit(conv.id, None, "conversation.handoff", {"reason": reason}, now)
        await self.assignment.submit(replace(conv, state="queued"), await self.customer_of(conv))

    async def close(self, who: Principal, conversation_id: str) -> Conversation:
        conv = await self.conversation_for(who, conversation_id, write=False)
        if who.role == "advisor" and conv.advisor_id != who.user_id:
            raise ProtocolError(ErrorCode.CONVERSATION_NOT_FOUND, "no such conversation for you")
        if conv.state == "closed":
            # Freeing the advisor's slot again is a no-op, unless a first attempt committed the
            # state and failed before routing heard of it.
            await self.assignment.closed(conv.id)
            return conv
        now = self.clock()
        await self.store.update_conversation(conv.id, now, state="closed", closed_at=now)
        await self.assignment.closed(conv.id)  # before anything else that could fail
        await self.store.audit(conv.id, who.user_id, "conversation.close", None, now)
        closed = replace(conv, state="closed", closed_at=now)
        await self.post_as(SYSTEM, closed, "会话已结束，请为本次服务评分（1-5 星）。", kind="system",
                           meta={"rating_requested": True})
        await self.publish_state(closed, rating_requested=True)
        self._windows.pop((conv.id, conv.investor_id), None)
        self._reply_filed.discard(conv.id)
        if conv.advisor_id:
            self._windows.pop((conv.id, conv.advisor_id), None)
        return closed

    async def rate(self, who: Principal, conversation_id: str, score: int, comment: str | None) -> None:
        conv = await self.conversation_for(who, conversation_id, write=True)
        if who.role != "investor":
            raise ProtocolError(ErrorCode.FORBIDDEN, "only the investor rates a conversation")
        if conv.state != "closed":
            raise ProtocolError(ErrorCode.INVALID_STATE, "a conversation is rated after it is closed")
        now = self.clock()
        if not await self.store.add_rating(conv.id, who.user_id, conv.advisor_id, score, comment, now):
            existing = await self.store.get_rating(conv.id)
            if existing and existing["score"] == score:
                return  # an idempotent resend of the same rating
            raise ProtocolError(ErrorCode.INVALID_STATE, "this conversation was already rated")
        await self.store.audit(conv.id, who.user_id, "conversation.rate", {"score": score}, now)

    async def leave_message(self, who: Principal, conversation_id: str, text: str, contact: str | None,
                            client_id: str | None) -> Accepted:
        """留言: stored like any message, then the chat waits in the queue for the next advisor."""
        body = text if not contact else f"{text}\n联系方式：{contact}"
        accepted = await self.accept_message(who, conversation_id, body, client_id, kind="leave_message")
        conv = await self.conversation_for(who, conversation_id, write=False)
        if conv.state == "bot" and not accepted.message.duplicate:
            # The message itself tells routing what it is about, as a bot turn would have.
            bot = self.engines.bot
            intent = bot.classify_intent(text) if bot is not None else None
            if intent:
                await self.store.update_conversation(conv.id, self.clock(), intent=intent)
                conv = replace(conv, intent=intent)
            await self.request_human(conv, reason="leave_message")
        return accepted

    # -- reading ---------------------------------------------------------------------------------
    async def transcript(self, who: Principal, conv: Conversation, after_seq: int = 0, limit: int = 1000) -> list[StoredMessage]:
        messages = await self.store.messages_after(conv.id, after_seq, limit)
        if who.role != "investor":
            return messages
        approved = (await self.store.held_message_ids(conv.id, states=("approved",))
                    if any(m.verdict == "block" for m in messages) else set())
        return [m for m in messages if investor_may_see(m, approved)]

    async def customer_of(self, conv: Conversation) -> Customer | None:
        if not conv.customer_id:
            return None
        return await self.store.get_customer(conv.customer_id)

    async def user(self, user_id: str) -> User | None:
        return await self.store.get_user(user_id)

    # -- supervisors -------------------------------------------------------------------------------
    async def decide_hold(self, who: Principal, message_id: str, approve: bool) -> dict[str, Any]:
        """Four-eyes: a held message is delivered only once a supervisor approves it."""
        message = await self.store.get_message(message_id)
        if message is None:
            raise ProtocolError(ErrorCode.CONVERSATION_NOT_FOUND, "no such held message")
        now = self.clock()
        if not await self.store.decide_hold(message_id, "approved" if approve else "rejected", who.user_id, now):
            raise ProtocolError(ErrorCode.INVALID_STATE, "this message was already decided")
        await self.store.audit(message.conversation_id, who.user_id, "hold.approve" if approve else "hold.reject",
                               {"message_id": message_id}, now)
        conv = await self.store.get_conversation(message.conversation_id)
        if approve and conv is not None:
            await self.deliver(conv, message)
        await self.publish(topics.user_topic(message.sender_id), {
            "type": "hold_decided", "conversation_id": message.conversation_id, "message_id": message_id,
            "approved": approve,
        })
        return {"message_id": message_id, "approved": approve}

    async def board(self) -> dict[str, Any]:
        """The live operations board: per advisor and per group, as the supervisor desk shows it."""
        now = self.clock()
        metrics = self.assignment.router.metrics(now)
        day_start = now - (now % 86400)
        satisfaction = await self.store.satisfaction_by_advisor(day_start)
        alerts_today: dict[str, int] = {}
        for a in await self.store.list_alerts(since=day_start, limit=100_000):
            alerts_today[a["sender_id"]] = alerts_today.get(a["sender_id"], 0) + 1
        advisors = []
        for user in await self.store.list_users("advisor"):
            m = metrics.advisors.get(user.id)
            advisors.append({
                "id": user.id, "name": user.display_name, "status": m.status.value if m else "offline",
                "in_grace": m.in_grace if m else False, "open_chats": m.open_chats if m else 0,
                "capacity": m.capacity if m else (user.capacity or self.settings.default_capacity),
                "first_response_avg_s": m.first_response_avg_s if m else None,
                "handled_today": m.handled_today if m else 0, "satisfaction": satisfaction.get(user.id),
                "alerts_today": alerts_today.get(user.id, 0),
            })
        groups = [{"group": g.group, "queue_length": g.queue_length, "longest_wait_s": round(g.longest_wait_s, 1),
                   "pool_size": g.pool_size, "online_advisors": g.online_advisors}
                  for g in metrics.groups.values()]
        return {"time": now, "advisors": advisors, "groups": groups}

    # -- events ------------------------------------------------------------------------------
    async def publish_state(self, conv: Conversation, **extra: Any) -> None:
        event = {"type": "conversation", "conversation_id": conv.id, "state": conv.state,
                 "channel": conv.channel, "advisor_id": conv.advisor_id, **extra}
        await self.publish(topics.user_topic(conv.investor_id), event)
        if conv.advisor_id:
            await self.publish(topics.user_topic(conv.advisor_id), event)
        await self.publish(topics.conversation_topic(conv.id), event)

    async def _publish_alerts(self, conv: Conversation, stored: StoredMessage, alerts: tuple[dict[str, Any], ...]) -> None:
        for a in alerts:
            await self.publish(topics.SUPERVISORS, {
                "type": "alert", **a, "conversation_id": conv.id, "message_id": stored.id,
                "text": stored.text, "advisor_id": conv.advisor_id,
            })
            self.metrics_hook("alert", {"tier": a["tier"]})

    async def publish(self, topic: str, event: dict[str, Any]) -> None:
        await self.bus.publish(topic, encode(event))


def bot_state_from(stored: dict[str, Any] | None) -> BotState:
    """The bot's per-conversation memory as stored in conversations.bot_state (unknown keys ignored)."""
    if not stored:
        return BotState()
    known = {f.name for f in dataclasses.fields(BotState)}
    return BotState(**{k: v for k, v in stored.items() if k in known})


def investor_may_see(m: StoredMessage, approved_holds: set[str]) -> bool:
    """Investors never see internal notes or a blocked message, unless a supervisor approved its hold."""
    if m.kind not in INVESTOR_VISIBLE_KINDS:
        return False
    return m.verdict != "block" or m.id in approved_holds


def hit_dict(hit: Any) -> dict[str, Any]:
    return {"rule_id": hit.rule_id, "category": hit.category, "tier": hit.tier.name.lower(),
            "start": hit.start, "end": hit.end, "matched": _matched(hit), "in_previous": hit.in_previous}


def _matched(hit: Any) -> str:
    # A personal-data hit matched the very number the text masks: never store or show it whole.
    return mask(hit.matched) if hit.category == "personal_data" else str(hit.matched)


def _alert_row(who: Principal, hit: Any, now: float) -> dict[str, Any]:
    return {
        "id": new_id(), "sender_id": who.user_id, "sender_role": who.role, "rule_id": hit.rule_id,
        "category": hit.category, "tier": hit.tier.name.lower(), "span_start": hit.start,
        "span_end": hit.end, "matched": _matched(hit), "state": "open", "created_at": now,
    }


def _suggestion_dict(s: Any) -> dict[str, Any]:
    return {"entry_id": s.entry_id, "question": s.question, "answer": s.answer,
            "confidence": round(s.confidence, 3), "category": s.category}


__all__ = ["Hub", "Accepted", "StorageUnavailable", "investor_may_see", "BOT", "SYSTEM"]
