"""External channel gateways: a real aiohttp gateway on loopback, signed webhooks in and out."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from chatserver.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER, retry_delay, sign

SECRET = "wechat-gateway-secret-0123456789"


class Gateway:
    """A stand-in WeChat gateway: records every callback; can be told to fail the first N."""

    def __init__(self, fail_first: int = 0):
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.fail_first = fail_first
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if sign(SECRET, request.headers[TIMESTAMP_HEADER], body) != request.headers[SIGNATURE_HEADER]:
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503)
        self.received.append(orjson.loads(body))
        self.arrived.set()
        return web.json_response({"ok": True})

    async def wait_for(self, predicate, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in self.received:
                if predicate(item):
                    return item
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), 0.2)
            except TimeoutError:
                pass
        raise TimeoutError(f"gateway got {self.received}")


async def start_gateway(gateway: Gateway) -> tuple[TestServer, str]:
    app = web.Application()
    app.router.add_post("/replies", gateway.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, str(server.make_url("/replies"))


async def configure(hub, callback_url: str | None) -> None:
    status, body = await hub.http("PUT", "/api/admin/channels/wechat", {"secret": SECRET, "callback_url": callback_url},
                                  token=await hub.token("admin"))
    assert status == 200, body


async def post_inbound(hub, payload: dict[str, Any], *, secret: str = SECRET, timestamp: float | None = None):
    body = orjson.dumps(payload)
    ts = str(int(timestamp if timestamp is not None else time.time()))
    return await hub.http("POST", "/api/channels/wechat/inbound", raw=body, headers={
        "Content-Type": "application/json", TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(secret, ts, body)})


async def test_inbound_message_joins_the_message_path_and_replies_go_out(hub):
    gateway = Gateway()
    server, url = await start_gateway(gateway)
    try:
        await configure(hub, url)
        status, body = await post_inbound(hub, {"user_id": "wx-openid-1", "message_id": "m-1", "text": "交易时间是几点"})
        assert status == 200 and body["seq"] == 2 and body["duplicate"] is False
        # The bot's answer travels back to the gateway, signed.
        reply = await gateway.wait_for(lambda r: r["message"]["sender_role"] == "bot" and r["message"]["seq"] > 2)
        assert reply["user_id"] == "wx-openid-1" and reply["conversation_id"] == body["conversation_id"]
        assert "9:30" in reply["message"]["text"] or "9：30" in reply["message"]["text"]
        assert gateway.bad_signatures == 0
        # The same channel message id again is idempotent.
        status, again = await post_inbound(hub, {"user_id": "wx-openid-1", "message_id": "m-1", "text": "交易时间是几点"})
        assert status == 200 and again["message_id"] == body["message_id"] and again["duplicate"] is True
        conv = await hub.services.store.get_conversation(body["conversation_id"])
        assert conv.channel == "wechat"
        # A human's reply reaches the channel too, and every delivery is recorded.
        advisor = await hub.connect("advisor1")
        await post_inbound(hub, {"user_id": "wx-openid-1", "message_id": "m-2", "text": "转人工"})
        await advisor.next_event("assigned")
        await advisor.say(conv.id, "您好，我是王顾问")
        await gateway.wait_for(lambda r: r["message"]["text"] == "您好，我是王顾问")
        deliveries = await hub.services.store.deliveries_for(conv.id)
        assert deliveries and all(d["status"] in ("delivered", "pending") for d in deliveries)
        assert any(d["status"] == "delivered" for d in deliveries)
    finally:
        await server.close()


async def test_failed_callbacks_are_retried_and_recorded(hub):
    gateway = Gateway(fail_first=1)
    server, url = await start_gateway(gateway)
    try:
        await configure(hub, url)
        status, body = await post_inbound(hub, {"user_id": "wx-2", "message_id": "a", "text": "佣金怎么收"})
        assert status == 200
        # The first callback got 503; its retry (after retry_delay(1) = 1 s) succeeds.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            deliveries = await hub.services.store.deliveries_for(body["conversation_id"])
            if len(deliveries) >= 2 and all(d["status"] == "delivered" for d in deliveries):
                break
            await asyncio.sleep(0.2)
        retried = [d for d in deliveries if d["attempts"] >= 2]
        assert len(retried) == 1 and retried[0]["status"] == "delivered" and "503" in retried[0]["last_error"]
        assert len(gateway.received) == len(deliveries)  # each delivered exactly once
    finally:
        await server.close()


async def test_unreachable_callback_gives_up_after_the_retry_limit(hub_factory):
    hub = await hub_factory(channel_retry_max=2)
    await configure(hub, "http://127.0.0.1:9/unreachable")
    status, body = await post_inbound(hub, {"user_id": "wx-3", "message_id": "a", "text": "佣金怎么收"})
    assert status == 200
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        deliveries = await hub.services.store.deliveries_for(body["conversation_id"])
        if deliveries and all(d["status"] == "failed" for d in deliveries):
            break
        await asyncio.sleep(0.3)
    assert deliveries and all(d["status"] == "failed" and d["attempts"] == 2 for d in deliveries)
    assert "unreachable" in deliveries[0]["last_error"]


@pytest.mark.parametrize("case", ["bad_signature", "stale_timestamp", "not_a_number"])
async def test_unsigned_or_replayed_inbound_is_refused(hub, case):
    await configure(hub, None)
    payload = {"user_id": "x", "message_id": "1", "text": "hi"}
    if case == "bad_signature":
        status, body = await post_inbound(hub, payload, secret="not-the-secret-0000000000000000")
    elif case == "stale_timestamp":
        status, body = await post_inbound(hub, payload, timestamp=time.time() - 3600)
    else:
        raw = orjson.dumps(payload)
        status, body = await hub.http("POST", "/api/channels/wechat/inbound", raw=raw, headers={
            TIMESTAMP_HEADER: "yesterday", SIGNATURE_HEADER: sign(SECRET, "yesterday", raw)})
    assert status == 401 and body["error"]["code"] == "auth_failed"


@pytest.mark.parametrize("payload, code", [
    ({"message_id": "1", "text": "hi"}, "missing_field"),
    ({"user_id": "x", "text": "hi"}, "missing_field"),
    ({"user_id": "x", "message_id": "1"}, "missing_field"),
    ({"user_id": "x", "message_id": "1", "text": 5}, "invalid_field"),
    ({"user_id": "x", "message_id": "1", "text": "  "}, "empty_text"),
    ({"user_id": ["x"], "message_id": "1", "text": "hi"}, "invalid_field"),
])
async def test_bad_inbound_bodies_get_documented_codes(hub, payload, code):
    await configure(hub, None)
    status, body = await post_inbound(hub, payload)
    assert status in (400, 413) and body["error"]["code"] == code


async def test_inbound_on_unconfigured_channel_is_not_found(hub):
    status, body = await post_inbound(hub, {"user_id": "x", "message_id": "1", "text": "hi"})
    assert status == 404 and body["error"]["code"] == "conversation_not_found"


async def test_channel_config_is_validated(hub):
    token = await hub.token("admin")
    for name, body, code in (("fax", {"secret": SECRET}, "invalid_field"),
                             ("wechat", {"secret": "short"}, "invalid_field"),
                             ("wechat", {"secret": SECRET, "callback_url": "ftp://x"}, "invalid_field")):
        status, answer = await hub.http("PUT", f"/api/admin/channels/{name}", body, token=token)
        assert status == 400 and answer["error"]["code"] == code
    status, _ = await hub.http("PUT", "/api/admin/channels/wechat", {"secret": SECRET}, token=await hub.token("advisor1"))
    assert status == 403


def test_retry_delays_back_off_and_cap():
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert retry_delay(30) == 300
