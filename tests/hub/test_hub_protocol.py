"""The wire protocol through real WebSockets: every frame type, every error code, close codes."""

from __future__ import annotations

import asyncio
import time

import jwt
import orjson
import pytest
import websockets

from chatserver.auth import Principal, TokenSigner
from chatserver.client import HubClient, HubError
from chatserver.protocol import CloseCode
from chatserver.settings import DEMO_SECRET
from chatserver.storage.records import NewMessage


def ws_url(hub) -> str:
    return hub.base_url.replace("http://", "ws://") + "/ws"


async def raw_socket(hub):
    return await websockets.connect(ws_url(hub), ping_interval=None)


async def expect_close(ws, code: int, timeout: float = 5.0) -> dict:
    """Read until the server closes; return the last error event it sent."""
    last = {}
    try:
        while True:
            last = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
    except websockets.ConnectionClosed:
        pass
    assert ws.close_code == code, (ws.close_code, ws.close_reason)
    return last


# -- authentication --------------------------------------------------------------------------
async def test_frame_before_auth_closes_4001(hub):
    ws = await raw_socket(hub)
    await ws.send(orjson.dumps({"type": "ping", "cid": "x"}).decode())
    error = await expect_close(ws, CloseCode.AUTH_FAILED)
    assert error["code"] == "auth_required"


async def test_forged_token_closes_4001(hub):
    ws = await raw_socket(hub)
    forged = TokenSigner("someone-elses-secret-0123456789abcdef", 3600).issue(Principal("u1", "supervisor", "x"), time.time())
    await ws.send(orjson.dumps({"type": "auth", "token": forged}).decode())
    error = await expect_close(ws, CloseCode.AUTH_FAILED)
    assert error["code"] == "auth_failed"


async def test_expired_token_closes_4001(hub):
    ws = await raw_socket(hub)
    expired = TokenSigner(DEMO_SECRET, 10).issue(Principal("u1", "investor", "x"), time.time() - 3600)
    await ws.send(orjson.dumps({"type": "auth", "token": expired}).decode())
    error = await expect_close(ws, CloseCode.AUTH_FAILED)
    assert error["code"] == "auth_failed" and "expired" in error["message"]


async def test_token_with_unknown_role_is_refused(hub):
    ws = await raw_socket(hub)
    token = jwt.encode({"iss": "chatserver", "sub": "u", "role": "root", "iat": int(time.time()),
                        "exp": int(time.time()) + 60}, DEMO_SECRET, algorithm="HS256")
    await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
    assert (await expect_close(ws, CloseCode.AUTH_FAILED))["code"] == "auth_failed"


async def test_binary_first_frame_closes_4001(hub):
    ws = await raw_socket(hub)
    await ws.send(b"\x00\x01")
    assert (await expect_close(ws, CloseCode.AUTH_FAILED))["code"] == "auth_required"


async def test_no_auth_in_time_closes_4001(hub_factory):
    hub = await hub_factory(auth_timeout_s=0.3)
    ws = await raw_socket(hub)
    assert (await expect_close(ws, CloseCode.AUTH_FAILED))["code"] == "auth_required"


async def test_second_auth_frame_is_an_error(hub):
    client = await hub.connect()
    with pytest.raises(HubError) as err:
        await client.request({"type": "auth", "token": client.token})
    assert err.value.code == "already_authenticated"


# -- malformed frames: each answered with its code, connection stays usable -----------------------
@pytest.mark.parametrize("raw, code", [
    ("{not json", "bad_json"),
    ("[1, 2]", "bad_frame"),
    ('{"no_type": 1}', "bad_frame"),
    ('{"type": 5}', "bad_frame"),
    ('{"type": "explode", "cid": "k"}', "unknown_type"),
    ('{"type": "send", "cid": "k", "text": "hi"}', "missing_field"),
    ('{"type": "send", "cid": "k", "conversation_id": 7, "text": "hi"}', "invalid_field"),
    ('{"type": "send", "cid": "k", "conversation_id": "x", "text": "   "}', "empty_text"),
    ('{"type": "resume", "cid": "k", "conversation_id": "x", "after_seq": true}', "invalid_field"),
    ('{"type": "resume", "cid": "k", "conversation_id": "x", "after_seq": -1}', "invalid_field"),
    ('{"type": "resume", "cid": "k", "conversation_id": "x", "after_seq": 99999999999999999999}', "invalid_field"),
    ('{"type": "rate", "cid": "k", "conversation_id": "x", "score": 9}', "invalid_field"),
    ('{"type": "presence", "cid": "k", "status": "asleep"}', "invalid_field"),
    ('{"type": "start", "cid": "k", "channel": "fax"}', "invalid_field"),
    ('{"type": "ping", "cid": 12}', "invalid_field"),
    ('{"type": "transfer", "cid": "k", "conversation_id": "x"}', "missing_field"),
])
async def test_bad_frames_get_documented_codes(hub, raw, code):
    client = await hub.connect()
    await client.send_raw(raw)
    error = await client.next_event("error")
    assert error["code"] == code, error
    assert (await client.request({"type": "ping"}))["type"] == "ack"  # still alive


async def test_text_too_long(hub_factory):
    hub = await hub_factory(max_text_chars=50)
    client, conv = await hub.investor()
    with pytest.raises(HubError) as err:
        await client.say(conv["id"], "长" * 51)
    assert err.value.code == "text_too_long" and err.value.event["limit"] == 50


async def test_binary_frame_after_auth_is_bad_frame(hub):
    client = await hub.connect()
    await client.send_raw(b"\x00binary")
    assert (await client.next_event("error"))["code"] == "bad_frame"


async def test_frame_over_size_limit_closes_1009(hub_factory):
    hub = await hub_factory(max_frame_bytes=1024)
    client = await hub.connect()
    await client.send_raw(orjson.dumps({"type": "ping", "pad": "x" * 5000}).decode())
    code, _ = await asyncio.wait_for(client.closed, 5)
    assert code == CloseCode.MESSAGE_TOO_BIG


# -- the frames themselves --------------------------------------------------------------------------
async def test_start_send_ack_carries_id_and_seq(hub):
    client, conv = await hub.investor()
    assert conv["state"] == "bot" and conv["last_seq"] == 1  # the greeting
    greeting = await client.next_event("message")
    assert greeting["sender_role"] == "bot" and greeting["seq"] == 1
    ack = await client.say(conv["id"], "交易时间是几点")
    assert ack["for"] == "send" and ack["seq"] == 2 and len(ack["message_id"]) == 32
    assert ack["conversation_id"] == conv["id"] and ack["duplicate"] is False


async def test_start_twice_returns_the_open_conversation(hub):
    client, conv = await hub.investor()
    again = await client.start()
    assert again["id"] == conv["id"]


async def test_resend_with_same_cid_is_idempotent(hub):
    client, conv = await hub.investor()
    first = await client.say(conv["id"], "佣金怎么收", cid="same-cid")
    second = await client.say(conv["id"], "佣金怎么收", cid="same-cid")
    assert second["message_id"] == first["message_id"] and second["seq"] == first["seq"]
    assert second["duplicate"] is True
    stored = await hub.services.store.messages_after(conv["id"], 0)
    assert [m.text for m in stored].count("佣金怎么收") == 1
    # The bot answered the question once (greeting + one answer), not once per attempt.
    assert [m.sender_role for m in stored] == ["bot", "investor", "bot"]


async def test_concurrent_resends_store_once(hub):
    client, conv = await hub.investor()
    frame = {"type": "send", "conversation_id": conv["id"], "text": "并发重发", "cid": "dup"}
    # Three copies in flight at once land in the same commit batch.
    futures = []
    for _ in range(3):
        fut = asyncio.get_running_loop().create_future()
        futures.append(fut)
    raw = orjson.dumps(frame).decode()
    for _ in range(3):
        await client.send_raw(raw)
    acks = []
    for _ in range(3):
        acks.append(await client.next_event(lambda e: e["type"] == "ack" and e.get("cid") == "dup"))
    assert len({a["message_id"] for a in acks}) == 1
    stored = await hub.services.store.messages_after(conv["id"], 0)
    assert [m.text for m in stored].count("并发重发") == 1


async def test_resume_sends_exactly_the_missed_messages_in_order(hub):
    client, conv = await hub.investor()
    for text in ("第一条", "第二条", "第三条"):
        await client.say(conv["id"], text)
    await asyncio.sleep(0.2)  # let the bot answer
    other = await hub.connect(token=client.token)
    ack = await other.request({"type": "resume", "conversation_id": conv["id"], "after_seq": 2})
    resumed = await other.next_event("resumed")
    got = []
    while other.events and other.events[0]["type"] == "message":
        got.append(other.events.popleft())
    # Events arrive before "resumed"; collect them from what the client buffered before it.
    stored = await hub.services.store.messages_after(conv["id"], 2)
    assert resumed["last_seq"] == ack["last_seq"] == stored[-1].seq
    assert [m.seq for m in stored] == list(range(3, stored[-1].seq + 1))


async def test_resume_replays_in_seq_order_before_resumed(hub):
    client, conv = await hub.investor()
    for text in ("甲", "乙"):
        await client.say(conv["id"], text)
    await asyncio.sleep(0.2)
    fresh = await HubClient.connect(hub.base_url, client.token)
    try:
        await fresh.request({"type": "resume", "conversation_id": conv["id"], "after_seq": 0})
        seqs = []
        while True:
            event = await fresh.next_event(lambda e: e["type"] in ("message", "resumed"))
            if event["type"] == "resumed":
                break
            seqs.append(event["seq"])
        assert seqs == sorted(seqs) and seqs[0] == 1 and seqs[-1] == event["last_seq"]
        assert len(seqs) == len(set(seqs))
    finally:
        await fresh.close()


async def test_ping_answers_server_time(hub):
    client = await hub.connect()
    ack = await client.request({"type": "ping"})
    assert abs(ack["server_time"] - time.time()) < 5


async def test_typing_reaches_the_other_party(hub):
    advisor = await hub.connect("advisor1")
    investor, cid = await hub.human_chat(advisor)
    await investor.request({"type": "typing", "conversation_id": cid})
    event = await advisor.next_event("typing")
    assert event == {"type": "typing", "conversation_id": cid, "role": "investor"}


async def test_conversation_of_someone_else_is_not_found(hub):
    alice, conv = await hub.investor()
    mallory = await hub.connect()
    for frame in (
        {"type": "send", "conversation_id": conv["id"], "text": "偷看"},
        {"type": "resume", "conversation_id": conv["id"], "after_seq": 0},
        {"type": "close", "conversation_id": conv["id"]},
        {"type": "handoff", "conversation_id": conv["id"]},
        {"type": "typing", "conversation_id": conv["id"]},
        {"type": "rate", "conversation_id": conv["id"], "score": 1},
    ):
        with pytest.raises(HubError) as err:
            await mallory.request(frame)
        assert err.value.code == "conversation_not_found", frame
    with pytest.raises(HubError) as err:
        await mallory.request({"type": "send", "conversation_id": "does-not-exist", "text": "x"})
    assert err.value.code == "conversation_not_found"  # missing and not-yours look the same


async def test_closed_conversation_refuses_messages_and_rating_rules(hub):
    client, conv = await hub.investor()
    with pytest.raises(HubError) as err:
        await client.request({"type": "rate", "conversation_id": conv["id"], "score": 4})
    assert err.value.code == "invalid_state"
    await client.request({"type": "close", "conversation_id": conv["id"]})
    with pytest.raises(HubError) as err:
        await client.say(conv["id"], "还在吗")
    assert err.value.code == "conversation_closed"
    await client.request({"type": "rate", "conversation_id": conv["id"], "score": 4})
    await client.request({"type": "rate", "conversation_id": conv["id"], "score": 4})  # same again: fine
    with pytest.raises(HubError) as err:
        await client.request({"type": "rate", "conversation_id": conv["id"], "score": 2})
    assert err.value.code == "invalid_state"
    rating = await hub.services.store.get_rating(conv["id"])
    assert rating["score"] == 4


async def test_role_restricted_frames_are_forbidden(hub):
    investor, conv = await hub.investor()
    for frame in ({"type": "presence", "status": "online"}, {"type": "claim", "conversation_id": conv["id"]},
                  {"type": "reassign", "conversation_id": conv["id"], "advisor_id": "x"},
                  {"type": "watch", "conversation_id": conv["id"]},
                  {"type": "transfer", "conversation_id": conv["id"], "to_group": "general"}):
        with pytest.raises(HubError) as err:
            await investor.request(frame)
        assert err.value.code == "forbidden", frame
    advisor = await hub.connect("advisor1")
    with pytest.raises(HubError) as err:
        await advisor.request({"type": "start"})
    assert err.value.code == "forbidden"
    supervisor = await hub.connect("supervisor1")
    with pytest.raises(HubError) as err:
        await supervisor.request({"type": "send", "conversation_id": conv["id"], "text": "supervisors only read"})
    assert err.value.code == "forbidden"


async def test_rate_limit_errors_then_closes_4008(hub):
    client = await hub.connect()
    for i in range(120):
        await client.send_raw(orjson.dumps({"type": "ping", "cid": f"flood-{i}"}).decode())
    code, _ = await asyncio.wait_for(client.closed, 10)
    assert code == CloseCode.RATE_LIMITED
    refused = [e for e in client.events if e.get("code") == "rate_limited"]
    # Each refusal answers its own frame: the cid it carried (one answer per frame).
    assert refused and all(e["cid"].startswith("flood-") for e in refused)
    answered = [e["cid"] for e in client.events if str(e.get("cid", "")).startswith("flood-")]
    assert len(answered) == len(set(answered))
    # Another user's connection is unaffected.
    other = await hub.connect()
    assert (await other.request({"type": "ping"}))["type"] == "ack"


async def test_origin_not_allowed_closes_4003(hub_factory):
    hub = await hub_factory(allowed_origins="https://chat.example-broker.cn")
    ws = await websockets.connect(ws_url(hub), ping_interval=None, origin="https://evil.example")
    await expect_close(ws, CloseCode.FORBIDDEN)
    ok = await websockets.connect(ws_url(hub), ping_interval=None, origin="https://chat.example-broker.cn")
    await ok.send(orjson.dumps({"type": "auth", "token": await hub.token()}).decode())
    assert orjson.loads(await ok.recv())["type"] == "auth_ok"
    await ok.close()


async def test_a_client_that_stops_reading_is_closed_4009_and_others_are_not_held_up(hub):
    """A socket whose reader stalls fills its send queue: it is closed (4009) to resume later."""
    investor, conv = await hub.investor()
    # A long transcript on the real store: 300 messages of 3,000 characters (about 9 KB each).
    body = "长" * 3000
    await asyncio.gather(*(hub.services.store.append(NewMessage(
        conversation_id=conv["id"], sender_id=investor.user["id"], sender_role="investor", sender_name="访客",
        kind="text", text=body, client_id=f"long-{i}", created_at=time.time())) for i in range(300)))
    token = investor.token
    url = hub.base_url.replace("http://", "ws://") + "/ws"
    # This client reads nothing after auth_ok: its library queue holds one frame, then the
    # TCP window closes and the hub's sends back up.
    stalled = await websockets.connect(url, max_queue=1, max_size=2**22, ping_interval=None)
    await stalled.send(orjson.dumps({"type": "auth", "token": token}).decode())
    assert orjson.loads(await stalled.recv())["type"] == "auth_ok"
    for i in range(20):  # each resume pushes the whole transcript (~2.7 MB)
        await stalled.send(orjson.dumps({"type": "resume", "cid": f"r{i}", "conversation_id": conv["id"],
                                         "after_seq": 0}).decode())
    other = await hub.connect()
    started = time.monotonic()
    assert (await other.request({"type": "ping"}))["type"] == "ack"
    assert time.monotonic() - started < 2.0
    # The hub gives up on the stalled socket once its queue is full (nothing read meanwhile).
    stalled_user = investor.user["id"]
    deadline = time.monotonic() + 20
    while not any(c.closing for c in hub.services.connections if c.principal.user_id == stalled_user):
        assert time.monotonic() < deadline, "the stalled socket was never dropped"
        await asyncio.sleep(0.05)
    closed_with = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            await asyncio.wait_for(stalled.recv(), 5)
        except websockets.ConnectionClosed as exc:
            closed_with = exc.rcvd.code if exc.rcvd else None
            break
    assert closed_with == CloseCode.SLOW_CONSUMER
    # The dropped socket's handler finishes the frames it had read (then leaves the hub).
    deadline = time.monotonic() + 30
    while any(c.closing for c in hub.services.connections if c.principal.user_id == stalled_user):
        assert time.monotonic() < deadline, "the dropped socket's handler never finished"
        await asyncio.sleep(0.05)
