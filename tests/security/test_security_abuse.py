"""Abuse limits through a live hub: floods, connection caps, sizes, lockout, ban lists, heartbeats.

A flood is driven from separate processes bound to another loopback address, so the victim's
ping round-trip measures the hub, not the flooder sharing its event loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import sys
import time

import aiohttp
import orjson
import pytest
import websockets

from chatserver.client import HubClient, HubError
from chatserver.guard import LOGIN_FAILURES_BEFORE_LOCK, LOGIN_LOCK_S
from chatserver.protocol import CloseCode

FLOODER = r"""
import asyncio, json, sys, time
import websockets
url, token, seconds, host = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
async def main():
    stats = {"sockets": 0, "frames": 0, "closes": {}, "refused": 0}
    end = time.monotonic() + seconds
    frame = json.dumps({"type": "ping"})
    while time.monotonic() < end:
        try:
            ws = await websockets.connect(url, ping_interval=None, local_addr=(host, 0))
        except Exception:
            stats["refused"] += 1
            await asyncio.sleep(0.05)
            continue
        stats["sockets"] += 1
        try:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            while time.monotonic() < end:
                for _ in range(50):
                    await ws.send(frame)
                stats["frames"] += 50
                while True:  # drain whatever arrived; never wait for it
                    try:
                        await asyncio.wait_for(ws.recv(), 0.0001)
                    except asyncio.TimeoutError:
                        break
        except websockets.ConnectionClosed:
            pass
        code = str(ws.close_code)
        stats["closes"][code] = stats["closes"].get(code, 0) + 1
        await ws.close()
    print(json.dumps(stats))
asyncio.run(main())
"""


async def ping_rtts(client: HubClient, count: int) -> list[float]:
    rtts = []
    for _ in range(count):
        start = time.perf_counter()
        await client.request({"type": "ping"})
        rtts.append(time.perf_counter() - start)
        await asyncio.sleep(0.06)  # about 15 frames/s: under the per-socket budget of 20/s
    return rtts


async def test_a_flood_is_refused_then_closed_and_never_slows_another_client(hub):
    victim = await hub.connect()
    await ping_rtts(victim, 5)  # warm up
    baseline = await ping_rtts(victim, 30)
    token = await hub.token()
    ws_url = hub.base_url.replace("http://", "ws://") + "/ws"
    flooders = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            FLOODER,
            ws_url,
            token,
            "4",
            "127.0.0.3",
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    await asyncio.sleep(0.5)
    during = await ping_rtts(victim, 50)
    outputs = [json.loads((await p.communicate())[0]) for p in flooders]
    base_median, flood_median = statistics.median(baseline), statistics.median(during)
    flood_p90 = statistics.quantiles(during, n=10)[-1]
    print(
        f"ping rtt baseline median {base_median * 1e3:.2f} ms; during flood median {flood_median * 1e3:.2f} ms,"
        f" p90 {flood_p90 * 1e3:.2f} ms; flooders {outputs}"
    )
    assert all(o["closes"].get(str(int(CloseCode.RATE_LIMITED)), 0) >= 1 for o in outputs), outputs
    assert sum(o["frames"] for o in outputs) > 2000, outputs
    # Small relative to the baseline: the hub spends a flood's cost on refusing it, not on others.
    assert flood_median < 5 * base_median + 0.005, (base_median, flood_median)
    assert flood_p90 < 10 * base_median + 0.05, (base_median, flood_p90)
    assert (await victim.request({"type": "ping"}))["type"] == "ack"


async def test_connection_cap_per_user_closes_4010(hub_factory, sec):
    hub = await hub_factory(max_connections_per_user=3)
    token = await hub.token("investor1")
    clients = [await hub.connect(token=token) for _ in range(3)]
    extra = await websockets.connect(sec.ws_url(hub.base_url), ping_interval=None)
    await extra.send(orjson.dumps({"type": "auth", "token": token}).decode())
    events = await sec.read_until_closed(extra)
    assert (
        extra.close_code == CloseCode.TOO_MANY_CONNECTIONS and events[-1]["code"] == "rate_limited"
    )
    other = await hub.connect("investor2")  # another account is not affected
    assert (await other.request({"type": "ping"}))["type"] == "ack"
    await clients[0].close()
    for _ in range(50):  # the server notices the close asynchronously
        if sum(c.principal.user_id == clients[1].user["id"] for c in hub.services.connections) < 3:
            break
        await asyncio.sleep(0.05)
    again = await hub.connect(token=token)
    assert (await again.request({"type": "ping"}))["type"] == "ack"


async def test_default_connection_cap_is_documented_and_enforced(hub):
    assert hub.services.settings.max_connections_per_user == 10
    token = await hub.token()
    for _ in range(10):
        await hub.connect(token=token)
    with pytest.raises(HubError) as err:
        await HubClient.connect(hub.base_url, token)
    assert err.value.code == "rate_limited"


async def test_oversized_http_bodies_are_refused_before_parsing(hub):
    token = await hub.token("supervisor1")
    status, _ = await hub.http(
        "POST",
        "/api/compliance/check",
        raw=b'{"text": "' + b"x" * (5 * 1024 * 1024) + b'"}',
        token=token,
        headers={"Content-Type": "application/json"},
    )
    assert status == 413
    # Over max_text_chars: refused with the same code as a chat message on the socket.
    status, body = await hub.http("POST", "/api/compliance/check", {"text": "x" * 5000}, token)
    assert (status, body["error"]["code"], body["error"]["field"]) == (413, "text_too_long", "text")
    assert (await hub.http("GET", "/healthz"))[0] == 200


async def test_oversized_websocket_frame_closes_1009_and_others_continue(hub_factory, sec):
    hub = await hub_factory(max_frame_bytes=4096)
    bystander = await hub.connect()
    ws = await sec.raw_auth(hub.base_url, await hub.token())
    await ws.send(
        orjson.dumps({"type": "send", "conversation_id": "x", "text": "长" * 3000}).decode()
    )
    await sec.read_until_closed(ws)
    assert ws.close_code == CloseCode.MESSAGE_TOO_BIG
    assert (await bystander.request({"type": "ping"}))["type"] == "ack"


async def test_login_lockout_after_repeated_failures(hub):
    for _ in range(LOGIN_FAILURES_BEFORE_LOCK):
        status, body = await hub.http(
            "POST", "/api/login", {"username": "advisor2", "password": "guess"}
        )
        assert status == 401 and body["error"]["code"] == "auth_failed"
    # Locked: even the right password is refused, and the answer says to wait, not "wrong".
    status, body = await hub.http(
        "POST", "/api/login", {"username": "advisor2", "password": "demo1234"}
    )
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert (await hub.http("POST", "/api/login", {"username": "advisor3", "password": "demo1234"}))[
        0
    ] == 200
    real_clock = hub.services.hub.clock
    hub.services.hub.clock = lambda: real_clock() + LOGIN_LOCK_S + 1
    try:
        assert (
            await hub.http("POST", "/api/login", {"username": "advisor2", "password": "demo1234"})
        )[0] == 200
    finally:
        hub.services.hub.clock = real_clock


async def test_lockout_counts_unknown_names_too_so_names_cannot_be_probed(hub):
    answers = []
    for name in ("advisor1", "nobody-here"):
        for _ in range(LOGIN_FAILURES_BEFORE_LOCK):
            answers.append(
                await hub.http("POST", "/api/login", {"username": name, "password": "guess"})
            )
        answers.append(
            await hub.http("POST", "/api/login", {"username": name, "password": "guess"})
        )
    statuses = [s for s, _ in answers]
    half = len(statuses) // 2
    assert statuses[:half] == statuses[half:] == [401] * LOGIN_FAILURES_BEFORE_LOCK + [429]
    assert {b["error"]["message"] for s, b in answers if s == 401} == {"wrong username or password"}


async def test_banned_user_is_refused_at_next_auth_and_on_http(hub, sec):
    admin = await hub.token("admin")
    investor_token = await hub.token("investor2")
    open_before = await sec.raw_auth(hub.base_url, investor_token)
    bystander = await sec.raw_auth(hub.base_url, await hub.token("investor1"))
    user_id = (await hub.http("GET", "/api/me", token=investor_token))[1]["user"]["id"]
    status, lists = await hub.http(
        "PUT", "/api/admin/access-lists", {"banned_users": [user_id]}, admin
    )
    assert status == 200 and lists["banned_users"] == [user_id]
    # The socket the banned account already had open is closed at once, with the reason.
    events = await sec.read_until_closed(open_before)
    assert open_before.close_code == CloseCode.FORBIDDEN and events[-1]["code"] == "forbidden"
    await bystander.send(orjson.dumps({"type": "ping", "cid": "still-here"}).decode())
    assert orjson.loads(await asyncio.wait_for(bystander.recv(), 5))["cid"] == "still-here"
    await bystander.close()
    assert await hub.http("GET", "/api/admin/access-lists", token=admin) == (200, lists)
    status, body = await hub.http("GET", "/api/me", token=investor_token)
    assert status == 403 and body["error"]["code"] == "forbidden"
    ws = await websockets.connect(sec.ws_url(hub.base_url), ping_interval=None)
    await ws.send(orjson.dumps({"type": "auth", "token": investor_token}).decode())
    events = await sec.read_until_closed(ws)
    assert ws.close_code == CloseCode.FORBIDDEN and events[-1]["code"] == "forbidden"
    # A fresh login does not get around the ban either.
    fresh = await hub.token("investor2")
    assert (await hub.http("GET", "/api/conversations", token=fresh))[0] == 403
    assert (await hub.http("GET", "/api/me", token=await hub.token("investor1")))[0] == 200
    await hub.http("PUT", "/api/admin/access-lists", {"banned_users": []}, admin)
    assert (await hub.http("GET", "/api/me", token=investor_token))[0] == 200


async def from_address(hub, host: str, method: str, path: str, token: str | None = None) -> int:
    connector = aiohttp.TCPConnector(local_addr=(host, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with session.request(method, hub.base_url + path, headers=headers) as response:
            return response.status


async def ws_close_from(hub, sec, host: str, token: str) -> int | None:
    ws = await websockets.connect(
        sec.ws_url(hub.base_url), ping_interval=None, local_addr=(host, 0)
    )
    try:
        await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
        first = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        if first["type"] == "auth_ok":
            await ws.close()
            return None
    except websockets.ConnectionClosed:
        pass
    await sec.read_until_closed(ws)
    return ws.close_code


async def test_banned_and_allowed_networks(hub, sec):
    admin = await hub.token("admin")
    visitor = await hub.token()
    status, _ = await hub.http(
        "PUT", "/api/admin/access-lists", {"banned_networks": ["127.0.0.3/32"]}, admin
    )
    assert status == 200
    assert await from_address(hub, "127.0.0.3", "GET", "/api/me", visitor) == 403
    assert await from_address(hub, "127.0.0.4", "GET", "/api/me", visitor) == 200
    assert await ws_close_from(hub, sec, "127.0.0.3", visitor) == CloseCode.FORBIDDEN
    assert await ws_close_from(hub, sec, "127.0.0.4", visitor) is None
    # An allow list admits only its networks (here: the admin's own address).
    status, _ = await hub.http(
        "PUT", "/api/admin/access-lists", {"allowed_networks": ["127.0.0.1/32"]}, admin
    )
    assert status == 200
    assert await from_address(hub, "127.0.0.4", "POST", "/api/visitor") == 403
    assert await ws_close_from(hub, sec, "127.0.0.4", visitor) == CloseCode.FORBIDDEN
    assert await from_address(hub, "127.0.0.1", "GET", "/api/me", visitor) == 200
    # A bad network is refused whole: the lists in force stay as they were.
    status, body = await hub.http(
        "PUT", "/api/admin/access-lists", {"banned_networks": ["10.0.0.0/8", "not-a-net"]}, admin
    )
    assert status == 400 and body["error"]["code"] == "invalid_field"
    assert (await hub.http("GET", "/api/admin/access-lists", token=admin))[1][
        "allowed_networks"
    ] == ["127.0.0.1/32"]
    await hub.http("PUT", "/api/admin/access-lists", {}, admin)
    assert await from_address(hub, "127.0.0.4", "GET", "/api/me", visitor) == 200


async def test_origin_defaults_to_same_host(hub, sec):
    host = hub.base_url.removeprefix("http://")
    for origin, allowed in (
        (f"http://{host}", True),
        ("http://evil.example", False),
        (f"http://{host}.evil.example", False),
    ):
        ws = await websockets.connect(sec.ws_url(hub.base_url), ping_interval=None, origin=origin)
        if allowed:
            await ws.send(orjson.dumps({"type": "auth", "token": await hub.token()}).decode())
            assert orjson.loads(await ws.recv())["type"] == "auth_ok"
            await ws.close()
        else:
            await sec.read_until_closed(ws)
            assert ws.close_code == CloseCode.FORBIDDEN, origin


def _masked_text_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    header = bytes([0x81])
    size = len(payload)
    header += bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_a_peer_that_stops_answering_pings_is_dropped(hub_factory):
    hub = await hub_factory(heartbeat_s=0.4)
    token = await hub.token()
    # A hand-written client that never answers pings (no library would let us switch pongs off).
    host, port = hub.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
    writer.write(_masked_text_frame(orjson.dumps({"type": "auth", "token": token})))
    await writer.drain()
    # A well-behaved client on the same hub answers pings and must stay.
    polite = await websockets.connect(
        hub.base_url.replace("http://", "ws://") + "/ws", ping_interval=None
    )
    await polite.send(orjson.dumps({"type": "auth", "token": await hub.token()}).decode())
    assert orjson.loads(await polite.recv())["type"] == "auth_ok"

    def connected() -> int:
        return len(hub.services.connections)

    for _ in range(40):
        if connected() == 2:
            break
        await asyncio.sleep(0.05)
    assert connected() == 2
    start = time.monotonic()
    for _ in range(100):
        if connected() < 2:
            break
        await asyncio.sleep(0.05)
    dropped_after = time.monotonic() - start
    assert connected() == 1, "the silent peer was not dropped"
    assert dropped_after < 5 * 0.4 + 1
    remaining = next(iter(hub.services.connections))
    assert (
        remaining.principal.user_id
        != (await hub.http("GET", "/api/me", token=token))[1]["user"]["id"]
    )
    # The server also closed the TCP stream of the silent peer.
    rest = await asyncio.wait_for(reader.read(), 5)
    assert rest is not None and reader.at_eof()
    await asyncio.sleep(1.0)  # several heartbeats later the polite peer is still served
    await polite.send(orjson.dumps({"type": "ping", "cid": "p"}).decode())
    assert orjson.loads(await polite.recv())["type"] == "ack"
    writer.close()
    await polite.close()


async def test_access_lists_survive_a_restart(hub_factory, tmp_path):
    """The lists in force are their newest audit event: a hub opened on the same data keeps them."""
    data_dir = str(tmp_path / "shared")
    first = await hub_factory(data_dir=data_dir)
    admin = await first.token("admin")
    investor_id = (await first.http("GET", "/api/me", token=await first.token("investor2")))[1]["user"]["id"]
    lists = {"banned_users": [investor_id], "banned_networks": ["203.0.113.0/24"], "allowed_networks": []}
    assert (await first.http("PUT", "/api/admin/access-lists", lists, admin))[0] == 200
    second = await hub_factory(data_dir=data_dir)
    status, restored = await second.http("GET", "/api/admin/access-lists", token=await second.token("admin"))
    assert status == 200 and restored["banned_users"] == [investor_id]
    assert restored["banned_networks"] == ["203.0.113.0/24"]
    status, body = await second.http("GET", "/api/me", token=await second.token("investor2"))
    assert status == 403 and body["error"]["code"] == "forbidden"
