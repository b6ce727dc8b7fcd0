"""External channel gateways (WeChat, app, mini program…): signed webhook in, callbacks out.

Inbound messages join the hub's one message path; replies are queued in the database in the
same transaction as the message (an outbox) and POSTed to the channel's callback with retries.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp import web
from sqlalchemy import select

from chatserver.auth import Principal
from chatserver.protocol import CHANNELS, ErrorCode, ProtocolError
from chatserver.storage import schema as t
from chatserver.storage.records import User
from chatserver.storage.sql import StorageUnavailable, new_id
from chatserver.tasks import stop_task, wait_event

if TYPE_CHECKING:
    from chatserver.hub import Hub

log = logging.getLogger("chatserver.channels")

SIGNATURE_HEADER = "X-Chatserver-Signature"
TIMESTAMP_HEADER = "X-Chatserver-Timestamp"
MAX_SKEW_S = 300  # a signed request older or newer than this is refused (replay guard)
MAX_INBOUND_BYTES = 64 * 1024


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def retry_delay(attempts: int) -> float:
    return float(min(300, 2 ** max(0, attempts - 1)))


class ChannelGateway:
    def __init__(self, hub: Hub):
        self.hub = hub
        self._channels: dict[str, dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        await self.refresh()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._task = asyncio.create_task(self._deliver_loop(), name="channel-outbox")

    async def stop(self) -> None:
        await stop_task(self._task)
        if self._session:
            await self._session.close()

    async def refresh(self) -> None:
        channels = {}
        for name in CHANNELS:
            row = await self.hub.store.get_channel(name)
            if row is not None:
                channels[name] = row
        self._channels = channels
        self.hub.channel_callbacks = {n for n, c in channels.items() if c["enabled"] and c["callback_url"]}

    # -- inbound -------------------------------------------------------------------------------
    async def inbound(self, request: web.Request) -> dict[str, Any]:
        name = request.match_info["channel"]
        channel = self._channels.get(name)
        if channel is None or not channel["enabled"]:
            raise ProtocolError(ErrorCode.CONVERSATION_NOT_FOUND, f"channel {name!r} is not configured")
        body = await request.content.read(MAX_INBOUND_BYTES + 1)
        if len(body) > MAX_INBOUND_BYTES:
            raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"body over {MAX_INBOUND_BYTES} bytes")
        self._verify(channel["secret"], request, body)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ProtocolError(ErrorCode.BAD_JSON, "body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ProtocolError(ErrorCode.BAD_FRAME, "body must be a JSON object")
        external_user = _field(data, "user_id", 128)
        message_id = _field(data, "message_id", 64)
        text = data.get("text")
        if not isinstance(text, str):
            raise ProtocolError(ErrorCode.MISSING_FIELD if text is None else ErrorCode.INVALID_FIELD,
                                "'text' must be a string", field="text")
        given_name = data.get("name")
        name_hint = given_name if isinstance(given_name, str) else f"{name}用户"
        now = self.hub.clock()
        user_id = await self.hub.store.channel_user(name, external_user)
        if user_id is None:
            user_id = new_id()
            user_id = await self.hub.store.link_channel_user(name, external_user, User(
                id=user_id, username=f"{name}-{user_id}", display_name=name_hint[:64], role="investor"), now)
        user = await self.hub.store.get_user(user_id)
        principal = Principal(user_id, "investor", user.display_name if user else name_hint, user.customer_id if user else None)
        conv = await self.hub.start_conversation(principal, name)
        accepted = await self.hub.accept_message(principal, conv.id, text, f"{name}:{message_id}")
        return {"conversation_id": conv.id, "message_id": accepted.message.id, "seq": accepted.message.seq,
                "duplicate": accepted.message.duplicate}

    def _verify(self, secret: str, request: web.Request, body: bytes) -> None:
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        try:
            skew = abs(self.hub.clock() - float(timestamp))
        except ValueError:
            raise ProtocolError(ErrorCode.AUTH_FAILED, f"{TIMESTAMP_HEADER} must be Unix seconds") from None
        if skew > MAX_SKEW_S:
            raise ProtocolError(ErrorCode.AUTH_FAILED, "request timestamp too far from server time")
        if not hmac.compare_digest(sign(secret, timestamp, body), signature):
            raise ProtocolError(ErrorCode.AUTH_FAILED, "bad signature")

    # -- outbound ------------------------------------------------------------------------------
    async def _deliver_loop(self) -> None:
        while True:
            await wait_event(self.hub.channel_wakeup, 1.0)
            self.hub.channel_wakeup.clear()
            try:
                await self.deliver_due()
            except StorageUnavailable as exc:
                log.warning("outbox paused: %s", exc)
            except Exception:  # noqa: BLE001 - the outbox must keep running
                log.exception("outbox pass failed")

    async def deliver_due(self) -> int:
        now = self.hub.clock()
        due = await self.hub.store.due_deliveries(now)
        for d in due:
            await self._deliver_one(d)
        return len(due)

    async def _deliver_one(self, d: dict[str, Any]) -> None:
        channel = self._channels.get(d["channel"])
        attempts = d["attempts"] + 1
        error: str | None = None
        if channel is None or not channel["callback_url"]:
            error = "channel has no callback_url"
        else:
            payload = orjson.dumps({
                "channel": d["channel"], "conversation_id": d["conversation_id"],
                "user_id": await self._external_id(d["channel"], d["conversation_id"]),
                "message": {"id": d["message_id"], "seq": d["seq"], "sender_role": d["sender_role"],
                            "sender_name": d["sender_name"], "kind": d["kind"], "text": d["text"],
                            "created_at": d["created_at"]},
            })
            timestamp = str(int(self.hub.clock()))
            try:
                assert self._session is not None
                async with self._session.post(channel["callback_url"], data=payload, headers={
                    "Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                    SIGNATURE_HEADER: sign(channel["secret"], timestamp, payload),
                }) as response:
                    if response.status >= 300:
                        error = f"callback answered HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = f"callback unreachable: {type(exc).__name__}"
        now = self.hub.clock()
        if error is None:
            status = "delivered"
        elif attempts >= self.hub.settings.channel_retry_max:
            status = "failed"
            log.error("giving up delivering %s to %s after %d attempts: %s", d["message_id"], d["channel"], attempts, error)
        else:
            status = "pending"
        await self.hub.store.record_delivery(d["id"], status=status, attempts=attempts,
                                             next_attempt_at=now + retry_delay(attempts), error=error, now=now)

    async def _external_id(self, channel: str, conversation_id: str) -> str | None:
        async with self.hub.store.read() as conn:
            row = (await conn.execute(
                select(t.channel_users.c.external_id)
                .join(t.conversations, t.conversations.c.investor_id == t.channel_users.c.user_id)
                .where(t.conversations.c.id == conversation_id, t.channel_users.c.channel == channel)
            )).first()
            return row.external_id if row else None


def _field(data: dict[str, Any], name: str, max_len: int) -> str:
    value = data.get(name)
    if value is None:
        raise ProtocolError(ErrorCode.MISSING_FIELD, f"{name!r} is required", field=name)
    if not isinstance(value, str | int) or isinstance(value, bool) or not 0 < len(str(value)) <= max_len:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{name!r} must be a string of 1-{max_len} characters", field=name)
    return str(value)
