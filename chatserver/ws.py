"""The WebSocket endpoint (/ws): authenticate, turn frames into hub calls, push events back.

Only moves frames in and out; every decision is the hub's. Each connection has a bounded send
queue so one slow client cannot stall the others (it is closed with 4009 and resumes later).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from chatserver import bus as topics
from chatserver.auth import Principal
from chatserver.protocol import (
    CloseCode,
    ErrorCode,
    Frame,
    ProtocolError,
    cid_of,
    encode,
    parse_frame,
)
from chatserver.storage.sql import StorageUnavailable
from chatserver.tasks import stop_task

if TYPE_CHECKING:
    from chatserver.app import Services

log = logging.getLogger("chatserver.ws")


class ClientConnection:
    """One authenticated socket: its principal, its subscriptions and its outgoing queue."""

    def __init__(self, ws: web.WebSocketResponse, principal: Principal, queue_max: int):
        self.ws = ws
        self.principal = principal
        self._queue: asyncio.Queue[str | tuple[int, bytes]] = asyncio.Queue(maxsize=queue_max)
        # Started by start(): frames queued before it (auth_ok first) go out in order once the
        # hub's state matches what auth_ok tells the client.
        self._sender: asyncio.Task[None] | None = None
        self.subscriptions: list[str] = []
        self.closing = False

    def push(self, payload: str) -> None:
        if self.closing:
            return
        try:
            self._queue.put_nowait(payload)
        except asyncio.QueueFull:
            log.warning("slow consumer %s: send queue full, closing", self.principal.user_id)
            self.closing = True
            asyncio.get_running_loop().create_task(
                self.ws.close(code=CloseCode.SLOW_CONSUMER, message=b"slow consumer: reconnect and resume"))

    def close_after_flush(self, code: int, reason: bytes) -> None:
        """Close once everything already queued (e.g. the errors explaining why) has been sent."""
        if not self.closing:
            self.closing = True
            try:
                self._queue.put_nowait((code, reason))
            except asyncio.QueueFull:
                asyncio.get_running_loop().create_task(self.ws.close(code=code, message=reason))

    async def _send_loop(self) -> None:
        while True:
            payload = await self._queue.get()
            if self.ws.closed:
                return
            if isinstance(payload, tuple):
                await self.ws.close(code=payload[0], message=payload[1])
                return
            try:
                await self.ws.send_str(payload)
            except (ConnectionError, RuntimeError):
                return

    def start(self) -> None:
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_loop())

    async def finish(self) -> None:
        if self._sender is None:
            return
        if self.closing and not self._sender.done():
            # A close was queued behind the last events: give them a moment to go out first.
            await asyncio.wait({self._sender}, timeout=2.0)
        self.closing = True
        await stop_task(self._sender)


Handler = Callable[["Services", ClientConnection, Frame], Awaitable[dict[str, Any] | None]]


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    from chatserver.app import SERVICES

    services = request.app[SERVICES]
    settings = services.settings
    # No permessage-deflate: chat frames are small JSON, and a zlib context per connection made
    # resident memory grow with every conversation (docs/benchmarks/soak.md, runs 3 and 4).
    ws = web.WebSocketResponse(heartbeat=settings.heartbeat_s, max_msg_size=settings.max_frame_bytes, compress=False)
    refused = services.guard.refuse_socket(request, services.hub.clock())
    if refused is not None:
        await ws.prepare(request)
        await ws.close(code=refused[0], message=refused[1])
        return ws
    await ws.prepare(request)
    principal = await _authenticate(services, ws)
    if principal is None:
        return ws
    if services.guard.connection_cap_reached(sum(c.principal.user_id == principal.user_id for c in services.connections)):
        await ws.send_str(encode(ProtocolError(ErrorCode.RATE_LIMITED, "too many open connections for this account").to_event(None)))
        await ws.close(code=CloseCode.TOO_MANY_CONNECTIONS, message=b"too many connections")
        return ws
    conn = ClientConnection(ws, principal, settings.send_queue_max)
    services.connections.add(conn)
    try:
        await _subscribe(services, conn, topics.user_topic(principal.user_id))
        if principal.can_read_all:
            await _subscribe(services, conn, topics.SUPERVISORS)
        conn.push(encode({"type": "auth_ok", "user": _principal_dict(principal),
                          "server_time": services.hub.clock()}))
        if principal.role == "advisor":
            # Online before auth_ok leaves: a client acting on auth_ok (or a colleague transferring
            # to this advisor) must find them online. Events this causes queue behind auth_ok.
            user = await services.store.get_user(principal.user_id)
            if user is not None:
                await services.hub.assignment.advisor_connected(user)
        conn.start()
        await _serve(services, conn, request.remote)
    finally:
        services.connections.discard(conn)
        for topic in conn.subscriptions:
            await services.bus.unsubscribe(topic, conn.push)
        await conn.finish()
        if principal.role == "advisor":
            await services.hub.assignment.advisor_disconnected(principal.user_id)
    return ws


async def _authenticate(services: Services, ws: web.WebSocketResponse) -> Principal | None:
    """The first frame must be a valid auth frame within auth_timeout_s, or the socket closes 4001."""
    try:
        msg = await ws.receive(timeout=services.settings.auth_timeout_s)
    except TimeoutError:
        await _refuse(ws, ErrorCode.AUTH_REQUIRED, "authenticate within the time allowed", None)
        return None
    if msg.type != WSMsgType.TEXT:
        await _refuse(ws, ErrorCode.AUTH_REQUIRED, "the first frame must be a text auth frame", None)
        return None
    try:
        frame = parse_frame(msg.data, max_text_chars=services.settings.max_text_chars)
        if frame.type != "auth":
            raise ProtocolError(ErrorCode.AUTH_REQUIRED, "the first frame must be {\"type\": \"auth\"}")
        principal = services.signer.verify(frame["token"], services.hub.clock())
        await services.guard.check_user(principal)
        return principal
    except ProtocolError as exc:
        log.info("websocket auth refused: %s", exc.code)
        await _refuse(ws, exc.code, exc.message, None)
        return None


async def _refuse(ws: web.WebSocketResponse, code: ErrorCode, message: str, cid: str | None) -> None:
    await ws.send_str(encode(ProtocolError(code, message).to_event(cid)))
    close = CloseCode.FORBIDDEN if code == ErrorCode.FORBIDDEN else CloseCode.AUTH_FAILED
    await ws.close(code=close, message=code.encode())


class Lanes:
    """The frames of one socket: in order within a conversation, concurrent across them.

    A frame naming a conversation runs after the previous frame for that conversation; a frame
    naming none (ping, start, presence, …) runs after every earlier frame, and every later frame
    runs after it, so a ping's ack means all earlier frames were answered. An advisor serving
    ten chats therefore waits for one commit per chat, not for the commits of all ten one after
    another. At most `limit` frames are in flight per socket; past that the socket is not read
    until one finishes.
    """

    def __init__(self, limit: int) -> None:
        self._tails: dict[str | None, asyncio.Task[None]] = {}
        self._limit = limit
        self._in_flight = 0
        self._room = asyncio.Event()  # set while fewer than `limit` frames are in flight
        self._room.set()

    async def run(self, key: str | None, work: Callable[[], Awaitable[None]]) -> None:
        while self._in_flight >= self._limit:
            self._room.clear()
            await self._room.wait()
        self._in_flight += 1
        if key is None:
            earlier = set(self._tails.values())
        else:
            earlier = {t for t in (self._tails.get(key), self._tails.get(None)) if t is not None}
        task = asyncio.create_task(self._in_turn(earlier, work))
        self._tails[key] = task
        task.add_done_callback(lambda done: self._finished(key, done))

    @staticmethod
    async def _in_turn(earlier: set[asyncio.Task[None]], work: Callable[[], Awaitable[None]]) -> None:
        if earlier:
            await asyncio.wait(earlier)
        await work()

    def _finished(self, key: str | None, task: asyncio.Task[None]) -> None:
        self._in_flight -= 1
        self._room.set()
        if self._tails.get(key) is task:
            del self._tails[key]

    async def drain(self) -> None:
        """Wait for every frame already read: what was accepted is committed and acked."""
        while self._tails:
            await asyncio.wait(set(self._tails.values()))


async def _serve(services: Services, conn: ClientConnection, remote: str | None = None) -> None:
    ws = conn.ws
    limiter = services.guard.frame_limiter(remote)
    lanes = Lanes(services.settings.frames_in_flight)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                if not limiter.allow(services.hub.clock()):
                    refused = ProtocolError(ErrorCode.RATE_LIMITED, "too many frames; slow down")
                    conn.push(encode(refused.to_event(cid_of(msg.data))))
                    if limiter.should_close():
                        conn.close_after_flush(CloseCode.RATE_LIMITED, b"rate limited")
                        return
                    continue
                try:
                    frame = parse_frame(msg.data, max_text_chars=services.settings.max_text_chars)
                except ProtocolError as exc:
                    log.info("refused frame from %s: %s %s", conn.principal.user_id, exc.code, exc.message)
                    conn.push(encode(exc.to_event(exc.cid)))
                    continue
                await lanes.run(frame.get("conversation_id"), functools.partial(_handle_frame, services, conn, frame))
            elif msg.type == WSMsgType.BINARY:
                conn.push(encode(ProtocolError(ErrorCode.BAD_FRAME, "binary frames are not accepted; send JSON text").to_event(None)))
            elif msg.type == WSMsgType.ERROR:
                log.info("websocket error for %s: %s", conn.principal.user_id, ws.exception())
                return
    finally:
        await lanes.drain()


async def _handle_frame(services: Services, conn: ClientConnection, frame: Frame) -> None:
    cid = frame.cid
    received = time.perf_counter()
    try:
        handler = HANDLERS[frame.type]
        result = await handler(services, conn, frame)
        ack: dict[str, Any] = {"type": "ack", "for": frame.type}
        if cid is not None:
            ack["cid"] = cid
        if result:
            ack.update(result)
        conn.push(encode(ack))
        services.metrics.commit_latency.observe(time.perf_counter() - received)
    except ProtocolError as exc:
        log.info("refused frame from %s: %s %s", conn.principal.user_id, exc.code, exc.message)
        conn.push(encode(exc.to_event(cid if cid is not None else exc.cid)))
    except StorageUnavailable as exc:
        log.warning("storage unavailable: %s", exc)
        conn.push(encode(ProtocolError(ErrorCode.UNAVAILABLE, "storage is unavailable; retry with the same cid",
                                       retryable=True).to_event(cid)))
    except Exception:  # noqa: BLE001 - one bad frame never takes the connection down
        log.exception("frame handler failed for %s", conn.principal.user_id)
        conn.push(encode(ProtocolError(ErrorCode.INTERNAL_ERROR, "internal error; retry with the same cid",
                                       retryable=True).to_event(cid)))


async def _subscribe(services: Services, conn: ClientConnection, topic: str) -> None:
    if topic not in conn.subscriptions:
        conn.subscriptions.append(topic)
        await services.bus.subscribe(topic, conn.push)


def _principal_dict(p: Principal) -> dict[str, Any]:
    return {"id": p.user_id, "role": p.role, "name": p.name, "customer_id": p.customer_id}


# -- frame handlers: each returns the ack's extra fields or raises ProtocolError -----------------
async def _auth_again(services: Services, conn: ClientConnection, frame: Frame) -> dict[str, Any] | None:
    raise ProtocolError(ErrorCode.ALREADY_AUTHENTICATED, "this connection is already authenticated")


async def _start(services: Services, conn: ClientConnection, frame: Frame) -> dict[str, Any] | None:
    conv = await services.hub.start_conversation(conn.principal, frame.get("channel", "web"), frame.get("group"))
    return {"conversation": conv.public(), "advisor_name": services.hub.assignment.name_of(conv.advisor_id)}


async def _send(services: Services, conn: ClientConnection, frame: Frame) -> dict[str, Any] | None:
    accepted = await services.hub.accept_message(conn.principal, frame["conversation_id"], frame["text"], frame.cid)
    m = accepted.message
    if accepted.blocked:
        hits = (m.meta or {}).get("hits", [])
        raise ProtocolError(
            ErrorCode.COMPLIANCE_BLOCKED, "message not delivered: it breaks a compliance rule; rephrase it",
            message_id=m.id, seq=m.seq, conversation_id=m.conversation_id,
            hits=[h for h in hits if h.get("tier") == "block"],
        )
    return {"message_id": m.id, "seq": m.seq, "conversation_id": m.conversation_id, "duplicate": m.duplicate}


async def _resume(services: Services, conn: ClientConnection, frame: Frame) -> dict[str, Any] | None:
    hub = services.hub
    conv = await hub.conversation_for(conn.principal, frame["conversation_id"], write=False)
    after = frame["after_seq"]
    while True:
        batch = await hub.transcript(conn.principal, conv, after, limit=500)
        for m in batch:
            conn.push(encode(m.event()))
        if len(batch) < 500:
            break
        after = batch[-1].seq
    conv = await services.store.get_conversation(conv.id) or conv
    conn.push(encode({"type": "resumed", "conversation_id": conv.id, "last_seq": conv.last_seq,
                      "state": conv.state, "advisor_id": conv.advisor_id,
                      "advisor_name": hub.assignment.name_of(conv.advisor_id)}))
    if conn.principal.can_read_all:
        await _subscribe(services, conn, topics.conversation_topic(conv.id))
    return {"conversation_id": conv.id, "last_seq": conv.last_seq}


async def _handoff(services: Services, conn: ClientConnection, frame: Frame) -> dict[str, Any] | None:
    if conn.principal.role != "investor":
        raise ProtocolError(ErrorCode.FORBIDDEN, "only the investor asks for a human")
    conv = await services.hub.conversation_for(conn.principal, frame["conversation_id"], write=True)
    await services.hub.request_human(conv, reason="explicit")
    return {"conversation_id": conv.id}


async def _typing(services: Services, conn: ClientConnection, frame: Frame) -> dict[str, Any] | None:
    hub = services.hub
    conv = await hub.conversation_for(conn.principal, frame["conversation_id"], write=True)
    target = conv.advisor_id if conn.principal.role == "investor" else conv.investor_id
    if target:
        await services.bus.publish(topics.user_topic(target), encode(
            {"type": "typing", "conversation_id": conv.id, "role": conn.principal.role}))
    return None


async def _close(services: Services, conn: ClientConnection, frame: Frame) -> dict[str, Any] | None:
    conv = await services.hub.close(conn.principal, frame["conversation_id"])
    return {"conversation_id": conv.id}


async def _rate(services: Services, conn: ClientConnection, frame: Frame) -> dict[str, Any] | None:
    await services.hub.rate(conn.principal, frame["conversation_id"], frame["score"], frame.get("comment"))
    return {"conversation_id": frame["conversation_id"]}


async def _leave_message(services: Services, conn: ClientConnection, frame: Frame) -> dict[str, Any] | None:
    if conn.principal.role != "investor":
        raise ProtocolError(ErrorCode.FORBIDDEN, "only investors leave messages")
    accepted = await services.hub.leave_message(conn.principal, frame["conversation_id"], frame["text"],
                                                frame.get("contact"), frame.cid)
    return {"message_id": accepted.message.id, "seq": accepted.message.seq,
            "conversation_id": accepted.message.conversation_id}


async def _presence(services: Services, conn: ClientConnection, frame: Frame) -> dict[str, Any] | None:
    if conn.principal.role != "advisor":
        raise ProtocolError(ErrorCode.FORBIDDEN, "only advisors have a presence status")
    await services.hub.assignment.set_presence(conn.principal.user_id, frame["status"])
    return {"status": frame["status"]}


async def _claim(services: Services, conn: ClientConnection, frame: Frame) -> dict[str, Any] | None:
    await services.hub.assignment.claim(conn.principal, frame["conversation_id"])
    return {"conversation_id": frame["conversation_id"]}


async def _transfer(services: Services, conn: ClientConnection, frame: Frame) -> dict[str, Any] | None:
    to_advisor = frame.get("to_advisor")
    if to_advisor:
        # Advisors know each other by username; the router knows user ids. Accept either.
        target = await services.store.get_user(to_advisor) or await services.store.get_user_by_username(to_advisor)
        if target is None or target.role != "advisor":
            raise ProtocolError(ErrorCode.ROUTING_REJECTED, f"no advisor {to_advisor!r}", routing_code="unknown_advisor")
        to_advisor = target.id
    await services.hub.assignment.transfer(conn.principal, frame["conversation_id"], to_advisor,
                                           frame.get("to_group"), frame.get("note"))
    return {"conversation_id": frame["conversation_id"]}


async def _reassign(services: Services, conn: ClientConnection, frame: Frame) -> dict[str, Any] | None:
    await services.hub.assignment.reassign(conn.principal, frame["conversation_id"], frame["advisor_id"])
    return {"conversation_id": frame["conversation_id"]}


async def _watch(services: Services, conn: ClientConnection, frame: Frame) -> dict[str, Any] | None:
    if not conn.principal.can_read_all:
        raise ProtocolError(ErrorCode.FORBIDDEN, "only supervisors watch conversations")
    conv = await services.hub.conversation_for(conn.principal, frame["conversation_id"], write=False)
    await _subscribe(services, conn, topics.conversation_topic(conv.id))
    return {"conversation_id": conv.id}


async def _ping(services: Services, conn: ClientConnection, frame: Frame) -> dict[str, Any] | None:
    return {"server_time": services.hub.clock()}


HANDLERS: dict[str, Handler] = {
    "auth": _auth_again, "start": _start, "send": _send, "resume": _resume, "handoff": _handoff,
    "typing": _typing, "close": _close, "rate": _rate, "leave_message": _leave_message,
    "presence": _presence, "claim": _claim, "transfer": _transfer, "reassign": _reassign,
    "watch": _watch, "ping": _ping,
}
