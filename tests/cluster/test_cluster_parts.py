"""Cluster building blocks in one process: RedisBus delivery, the store's circuit breaker, and
`serve --workers N` (refused without Redis; on one SQLite file, seqs stay gap-free).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatserver.client import HubClient, get_token
from chatserver.cluster import ROWS_TOPIC, RowNotices
from chatserver.redis_bus import REDIS_COMMANDS_AT_ONCE, RedisBus, redis_client
from chatserver.storage.records import Conversation, User
from chatserver.storage.sql import StorageUnavailable, new_id, open_store

pytestmark = [pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("CHATSERVER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def test_redis_bus_delivers_locally_once_and_to_other_nodes(redis_prefix: str) -> None:
    one, two = RedisBus(REDIS_URL, prefix=redis_prefix), RedisBus(REDIS_URL, prefix=redis_prefix)
    await one.start()
    await two.start()
    try:
        got_one: list[str] = []
        got_two: list[str] = []
        await one.subscribe("user:u1", got_one.append)
        await two.subscribe("user:u1", got_two.append)
        await _until(lambda: one.remote_interest("user:u1"))
        await one.publish("user:u1", '{"n": 1}')
        assert got_one == ['{"n": 1}']  # delivered before publish returned: no Redis round trip
        for _ in range(100):
            if got_two:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # our own copy coming back from Redis must be ignored
        assert got_one == ['{"n": 1}']
        assert got_two == ['{"n": 1}']
        await two.unsubscribe("user:u1", got_two.append)
        await one.publish("user:u1", '{"n": 2}')
        await asyncio.sleep(0.2)
        assert got_two == ['{"n": 1}']
        assert one.state == two.state == "redis"
        assert one.healthy and not one.degraded
    finally:
        await one.close()
        await two.close()


async def _until(condition, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_only_topics_another_node_listens_to_cross_redis(redis_prefix: str) -> None:
    one, two = RedisBus(REDIS_URL, prefix=redis_prefix), RedisBus(REDIS_URL, prefix=redis_prefix)
    await one.start()
    await two.start()
    three: RedisBus | None = None
    try:
        got_one: list[str] = []
        got_two: list[str] = []
        await one.subscribe("conv:c1", got_one.append)
        await one.publish("conv:c1", "a")  # nobody elsewhere: local delivery only
        assert got_one == ["a"] and one.sent_remote == 0
        await two.subscribe("conv:c1", got_two.append)
        await _until(lambda: one.remote_interest("conv:c1"))
        await one.publish("conv:c1", "b")
        await _until(lambda: got_two == ["b"])
        assert one.sent_remote == 1
        # A node that starts later reads the others' topics from their sets.
        three = RedisBus(REDIS_URL, prefix=redis_prefix)
        await three.start()
        assert three.remote_interest("conv:c1") and not three.remote_interest("conv:none")
        await three.publish("conv:c1", "c")
        await _until(lambda: got_one == ["a", "b", "c"] and got_two == ["b", "c"])
        # When the last listener elsewhere leaves, the topic stops crossing Redis.
        await two.unsubscribe("conv:c1", got_two.append)
        await _until(lambda: not one.remote_interest("conv:c1"))
        assert three.remote_interest("conv:c1")  # one still listens
        sent = one.sent_remote
        await one.publish("conv:c1", "d")
        assert one.sent_remote == sent and got_one[-1] == "d"
        # A socket closing while the same user's new socket opens on that node: the other
        # nodes must end up sending that user's events (changes reach Redis in order).
        got_new: list[str] = []
        await two.subscribe("user:u3", got_two.append)
        await _until(lambda: one.remote_interest("user:u3"))
        await asyncio.gather(two.unsubscribe("user:u3", got_two.append), two.subscribe("user:u3", got_new.append))
        await asyncio.sleep(0.2)
        assert one.remote_interest("user:u3")
        await one.publish("user:u3", "x")
        await _until(lambda: got_new == ["x"])
        # A node that closes is forgotten by the others.
        await two.subscribe("user:u2", got_two.append)
        await _until(lambda: one.remote_interest("user:u2"))
        await two.close()
        await _until(lambda: not one.remote_interest("user:u2"))
    finally:
        for bus in (one, two, three):
            if bus is not None:
                await bus.close()


async def test_a_burst_of_topic_changes_queues_instead_of_failing(
    redis_prefix: str,
) -> None:
    """Hundreds of sockets opening or closing at once on one node (market open, a node's
    clients reconnecting after a restart) each change a topic on Redis at the same moment.
    redis-py's default pool refuses the 101st concurrent command ("Too many connections"),
    which the bus took for Redis being down: the node degraded and its routing events were
    lost. The commands now wait their turn."""
    one, two = RedisBus(REDIS_URL, prefix=redis_prefix), RedisBus(REDIS_URL, prefix=redis_prefix)
    admin = redis_client(REDIS_URL)
    await one.start()
    await two.start()
    try:
        clients_before = int((await admin.info("clients"))["connected_clients"])
        got: dict[str, list[str]] = {f"user:b{i}": [] for i in range(400)}
        await asyncio.gather(*(two.subscribe(t, got[t].append) for t in got))
        assert two.state == "redis" and two.reconnects == 0 and not two.degraded
        await _until(lambda: all(one.remote_interest(t) for t in got))
        for topic in ("user:b0", "user:b399"):
            await one.publish(topic, "hello")
            await _until(lambda topic=topic: got[topic] == ["hello"])
        await asyncio.gather(*(two.unsubscribe(t, got[t].append) for t in got))
        assert two.state == "redis" and two.reconnects == 0 and not two.degraded
        await _until(lambda: not any(one.remote_interest(t) for t in got))
        # The burst queued on a bounded pool: Redis's own client limit is not at risk.
        opened = int((await admin.info("clients"))["connected_clients"]) - clients_before
        assert opened <= REDIS_COMMANDS_AT_ONCE
    finally:
        await one.close()
        await two.close()
        await admin.aclose()


async def test_commands_cancelled_while_queued_leave_the_client_whole(redis_prefix: str) -> None:
    """Waiting callers that are cancelled (a socket's handler at shutdown) neither hold a
    turn nor a connection: the client then runs a full burst at once again."""
    client = redis_client(REDIS_URL, blocking=True)
    try:
        waiting = [asyncio.ensure_future(client.blpop([f"{redis_prefix}never"], timeout=2))
                   for _ in range(3 * REDIS_COMMANDS_AT_ONCE)]  # fmt: skip
        await asyncio.sleep(0.3)  # a turn each for the first ones, the rest queued
        assert client.slots.locked()
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        assert not client.slots.locked()
        answers = await asyncio.wait_for(
            asyncio.gather(*(client.ping() for _ in range(2 * REDIS_COMMANDS_AT_ONCE))), 5
        )
        assert all(answers)
    finally:
        await client.aclose()


async def test_a_task_cancelled_mid_command_stops(redis_prefix: str) -> None:
    """A task cancelled while a command is on its way stops. With redis-py's own socket
    timeout the cancel was lost in up to 99 of 100 tries (the task carried on, and a node's
    shutdown waited for its presence loop for ever)."""
    import random

    client = redis_client(REDIS_URL)
    steps = [0]

    async def loop() -> None:
        while True:
            await client.get(f"{redis_prefix}k")
            steps[0] += 1

    try:
        for _ in range(40):
            task = asyncio.ensure_future(loop())
            await asyncio.sleep(random.uniform(0.005, 0.03))
            task.cancel()
            await asyncio.wait({task}, timeout=1)
            assert task.cancelled(), "the cancel was lost: the loop carried on"
        assert steps[0] > 0  # the commands did run between the cancels
    finally:
        await client.aclose()


async def _bot_conversation(store) -> str:
    now = time.time()
    user = User(id=new_id(), username=f"u-{new_id()[-10:]}", display_name="投资者", role="investor")
    await store.create_user(user, now)
    conv = Conversation(id=new_id(), investor_id=user.id, channel="web", state="bot",
                        created_at=now, updated_at=now)  # fmt: skip
    await store.create_conversation(conv)
    return conv.id


async def test_row_notices_keep_each_nodes_cached_rows_current(tmp_path: Path, redis_prefix: str) -> None:
    """Nodes on one database: a row one node writes is dropped from the other's cache by its
    notice, and each node's heartbeat tells the others how many rows it has written."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    buses = [RedisBus(REDIS_URL, prefix=redis_prefix) for _ in range(2)]
    stores = [open_store(url), open_store(url)]
    notices: list[RowNotices] = []
    try:
        for bus, store in zip(buses, stores, strict=True):
            await bus.start()
            await store.start()
            notices.append(RowNotices(store, bus))
            await notices[-1].start()
        await _until(lambda: all(b.remote_interest(ROWS_TOPIC) for b in buses))
        cid = await _bot_conversation(stores[1])
        assert (await stores[0].get_conversation(cid, recent_ok=True)).state == "bot"  # cached
        await stores[1].update_conversation(cid, time.time(), state="queued")
        await _until(lambda: cid not in stores[0]._conversations)
        assert (await stores[0].get_conversation(cid, recent_ok=True)).state == "queued"
        assert notices[1]._written == 1 and notices[0].gaps == 0  # a new row is not announced
        # A node that joins later learns node 1's count from its heartbeat, and counts the
        # write it was not told of as a gap (its cache was empty then; it only costs a clear).
        buses.append(RedisBus(REDIS_URL, prefix=redis_prefix))
        stores.append(open_store(url))
        await buses[2].start()
        await stores[2].start()
        notices.append(RowNotices(stores[2], buses[2]))
        await notices[2].start()
        await _until(lambda: notices[2]._heard.get(buses[1].node_id) == 1, 5)
        assert notices[2].gaps == 1 and notices[0].gaps == 0
    finally:
        for part in (*notices, *stores, *buses):
            await part.stop() if isinstance(part, RowNotices) else await part.close()


async def test_a_row_notice_that_never_came_shows_as_a_gap_and_empties_the_cache(
    tmp_path: Path, redis_prefix: str
) -> None:
    """Another node's notices are numbered: one missing (its outbox overflowed, its sends
    failed) shows at the next notice or heartbeat, the epoch moves on and the rows cached
    meanwhile are read again. The other node is played by payloads in the notices' format."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'gap.db'}"
    bus, store, other = RedisBus(REDIS_URL, prefix=redis_prefix), open_store(url), open_store(url)
    notices = RowNotices(store, bus)
    try:
        await bus.start()
        await store.start()
        await other.start()
        await notices.start()
        cid = await _bot_conversation(other)
        epoch = notices.epoch()
        assert (await store.get_conversation(cid, recent_ok=True)).state == "bot"
        notices._on_notice(f"nodeX|1|{cid}")  # first contact, nothing before it
        notices._on_notice(f"nodeX|2|{cid}")
        notices._on_notice("nodeX|2|")  # heartbeat: two writes, both heard
        assert notices.gaps == 0 and notices.epoch() == epoch
        assert (await store.get_conversation(cid, recent_ok=True)).state == "bot"  # cached again
        # Node X writes the row; its notice (number 3) is lost; its heartbeat says 3.
        await other.update_conversation(cid, time.time(), state="queued")
        assert (await store.get_conversation(cid, recent_ok=True)).state == "bot"  # stale
        notices._on_notice("nodeX|3|")
        assert notices.gaps == 1 and notices.epoch() != epoch
        assert (await store.get_conversation(cid, recent_ok=True)).state == "queued"
        # A later notice that skips a number is a gap too; one from a node first heard of
        # after it had written rows may have been missed as well.
        notices._on_notice(f"nodeX|5|{cid}")
        assert notices.gaps == 2
        notices._on_notice("nodeY|4|")
        assert notices.gaps == 3
        notices._on_notice("nodeY|4|")
        notices._on_notice(f"nodeY|5|{cid}")
        notices._on_notice("garbage")  # not a notice: ignored
        notices._on_notice(f"{bus.node_id}|99|{cid}")  # our own, back from Redis: ignored
        assert notices.gaps == 3
    finally:
        await notices.stop()
        for part in (store, other, bus):
            await part.close()


async def test_after_a_redis_restart_the_bus_uses_live_connections_only(redis_prefix: str) -> None:
    """A Redis restart leaves the command client's idle pooled sockets dead, and with no retries
    each failed the first command it carried once the bus was back: an event batch was lost
    uncounted (so the cluster outage test's advisor never got "assigned"), a ping or a routing
    event failed."""
    async with _listened_to(redis_prefix) as (one, got):
        # Several commands at once (routing, presence, the sender) leave several idle sockets.
        assert await asyncio.gather(*(one.redis.ping() for _ in range(6)))
        reconnects = one.reconnects
        await _close_every_socket_of(one)  # what a Redis restart does to this node
        await _until(lambda: one.reconnects > reconnects and one.state == "redis")
        sent = [f'{{"n": {i}}}' for i in range(12)]
        failed = []
        for payload in sent:  # each event sent while other commands hold connections
            answers = await asyncio.gather(
                one.redis.ping(), _post_then_yield(one, payload), one.redis.ping(),
                return_exceptions=True,
            )  # fmt: skip
            failed += [a for a in answers if isinstance(a, BaseException)]
        assert failed == []
        await _until(lambda: len(got) >= len(sent), within=3.0)
        assert got == sent
        assert one.dropped == 0


async def test_an_event_batch_that_met_a_dead_socket_is_sent_again(redis_prefix: str) -> None:
    async with _listened_to(redis_prefix) as (one, got):
        assert await asyncio.gather(*(one.redis.ping() for _ in range(3)))
        # Only the command sockets die: the subscription lives, so nothing resubscribes.
        await _close_every_socket_of(one, subscription=False)
        await one.publish("user:u1", "after")
        await _until(lambda: got == ["after"], within=3.0)
        assert one.dropped == 0 and one.state == "redis"


@contextlib.asynccontextmanager
async def _listened_to(prefix: str) -> AsyncIterator[tuple[RedisBus, list[str]]]:
    """Bus `one`, and what another node's bus receives on user:u1 once `one` knows it listens."""
    one, two = RedisBus(REDIS_URL, prefix=prefix), RedisBus(REDIS_URL, prefix=prefix)
    await one.start()
    await two.start()
    try:
        got: list[str] = []
        await two.subscribe("user:u1", got.append)
        await _until(lambda: one.remote_interest("user:u1"))
        yield one, got
    finally:
        await one.close()
        await two.close()


async def _post_then_yield(bus: RedisBus, payload: str) -> None:
    await asyncio.sleep(0)  # the pings take their connections first
    bus.post("user:u1", payload)
    await asyncio.sleep(0.01)  # the sender takes the next one


async def _close_every_socket_of(bus: RedisBus, *, subscription: bool = True) -> None:
    """Close, on the server's side, the bus's pooled command sockets and its subscription."""
    pool = bus.redis.connection_pool
    connections = [*pool._available_connections, *pool._in_use_connections]
    if subscription and bus._pubsub is not None and bus._pubsub.connection is not None:
        connections.append(bus._pubsub.connection)
    addresses = {
        "{}:{}".format(*c._writer.get_extra_info("sockname")[:2])
        for c in connections
        if getattr(c, "_writer", None) is not None
    }
    assert len(addresses) >= 2, addresses
    admin = redis_client(REDIS_URL)
    try:
        for address in addresses:
            await admin.client_kill_filter(_id=None, addr=address)
    finally:
        await admin.aclose()


async def test_circuit_breaker_fails_fast_then_probes() -> None:
    # Nothing listens on port 1: every connect is refused at once.
    store = open_store("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    store.breaker.open_for_s = 0.3
    try:
        for _ in range(3):
            with pytest.raises(StorageUnavailable) as failed:
                await store.get_conversation("x")
            assert "circuit open" not in str(failed.value)
        assert store.breaker.is_open
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="circuit open"):
            await store.get_conversation("x")
        assert time.monotonic() - started < 0.05
        await asyncio.sleep(0.35)
        with pytest.raises(StorageUnavailable) as probe:
            await store.get_conversation("x")  # half-open: this one really tries
        assert "circuit open" not in str(probe.value)
        with pytest.raises(StorageUnavailable, match="circuit open"):
            await store.get_conversation("x")  # the failed probe reopened it
        store.breaker.succeeded()
        assert not store.breaker.is_open
    finally:
        await store.engine.dispose()


def test_workers_refused_without_redis(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chatserver", "--data-dir", str(tmp_path), "serve", "--workers", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--workers 2 needs --redis-url" in done.stderr


@pytest.mark.services
@pytest.mark.slow
async def test_two_workers_share_port_and_sqlite_file(tmp_path: Path, redis_prefix: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    parent = _spawn_workers(port, tmp_path, redis_prefix)
    clients: list[HubClient] = []
    try:
        nodes: set[str] = set()
        deadline = time.monotonic() + 90
        while len(nodes) < 2:
            assert time.monotonic() < deadline, (tmp_path / "workers.log").read_text()[-3000:]
            assert parent.poll() is None, (tmp_path / "workers.log").read_text()[-3000:]
            try:
                body = await asyncio.to_thread(_readyz, url)
                nodes.add(body["node"])
            except OSError:
                await asyncio.sleep(0.2)
        # Connections land on both workers; a chat still works end to end.
        advisor = await HubClient.connect(url, (await get_token(url, "advisor1", "demo1234"))[0])
        clients.append(advisor)
        investors = []
        for _ in range(4):
            investor = await HubClient.connect(url, (await get_token(url))[0])
            clients.append(investor)
            investors.append(investor)
        conv_ids = []
        for investor in investors:
            conv = (await investor.request({"type": "start", "group": "general"}))["conversation"]
            conv_ids.append(conv["id"])
        await asyncio.gather(*(
            i.say(c, f"并发消息{k}", cid=f"w{k}")
            for i, c in zip(investors, conv_ids, strict=True) for k in range(5)
        ))  # fmt: skip
        db = sqlite3.connect(tmp_path / "chatserver.sqlite3")
        try:
            for conv_id in conv_ids:
                seqs = [r[0] for r in db.execute(
                    "SELECT seq FROM messages WHERE conversation_id = ? ORDER BY seq", (conv_id,))]  # fmt: skip
                assert seqs == list(range(1, len(seqs) + 1)), seqs
                assert len(seqs) >= 6  # greeting, five messages, bot answers
        finally:
            db.close()
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        parent.terminate()
        assert parent.wait(40) == 0


def _readyz(url: str) -> dict[str, str]:
    import json
    import urllib.request

    with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
        return dict(json.loads(response.read()))


def _spawn_workers(port: int, data_dir: Path, prefix: str) -> subprocess.Popen[bytes]:
    with (data_dir / "workers.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "chatserver", "--port", str(port), "--data-dir", str(data_dir),
             "--redis-url", REDIS_URL, "--redis-prefix", prefix, "--no-log-json",
             "serve", "--workers", "2"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


async def _leading(hub: Any) -> Any:
    """The hub's ClusterAssignment once it leads (it is the only node)."""
    cluster = hub.services.hub.assignment
    deadline = time.monotonic() + 10
    while cluster.core is None:
        assert time.monotonic() < deadline, "the only node did not become the routing leader"
        await asyncio.sleep(0.05)
    return cluster


async def test_forwarded_events_survive_the_leaders_database_outage(hub_factory, redis_prefix: str) -> None:
    """Events a follower forwards with nobody waiting are not lost when the leader's database is
    unavailable: a close needs no database at all (before, the leader read the row first, and
    the advisor's slot stayed taken until the next failover); a hand-over the database refused
    is routed once it answers (the leader adopts queued rows it has not seen every few
    seconds). One node, the leader; the test pushes into its inbox what a follower would, after
    the follower committed the state change."""
    import json

    hub = await hub_factory(redis_url=REDIS_URL, redis_prefix=redis_prefix, default_capacity=1)
    cluster = await _leading(hub)
    store = hub.services.store
    advisor = await hub.connect("advisor1")
    first, first_cid = await hub.human_chat(advisor)
    _, conv = await hub.investor()

    def open_chats() -> int:
        return cluster.core.router.metrics(time.time()).advisors[advisor.user["id"]].open_chats

    def forward(op: str, conversation_id: str) -> Any:
        item = {"op": op, "args": {"conversation_id": conversation_id}, "node": "a-follower"}
        return cluster.redis.lpush(cluster.inbox_key, json.dumps(item))

    # What a follower committed before forwarding: the first chat closed, the second handed over.
    await store.update_conversation(first_cid, time.time(), state="closed", closed_at=time.time())
    await store.update_conversation(conv["id"], time.time(), state="queued")
    assert open_chats() == 1
    store.breaker.open_for_s = 60.0
    for _ in range(store.breaker.failures):
        store.breaker.failed()
    assert store.breaker.is_open
    try:
        await forward("closed", first_cid)
        await forward("submit", conv["id"])
        deadline = time.monotonic() + 5
        while open_chats() != 0:  # the close went through with the database away
            assert time.monotonic() < deadline, "the forwarded close was not carried out"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the hand-over met the closed circuit
        assert not any(e["type"] == "assigned" and e["conversation"]["id"] == conv["id"] for e in advisor.events)
    finally:
        store.breaker.succeeded()  # the database answers again
    assigned = await advisor.next_event(
        lambda e: e["type"] == "assigned" and e["conversation"]["id"] == conv["id"], timeout=15)
    assert assigned["conversation"]["id"] == conv["id"] and open_chats() == 1


async def test_the_leader_adopts_only_chats_queued_long_enough_for_their_submit(
    hub_factory, redis_prefix: str
) -> None:
    """A chat queued a moment ago may have its submit on the way; adopting it then logged a
    false 'the router did not know'. One queued for longer, and never submitted, is adopted."""
    hub = await hub_factory(redis_url=REDIS_URL, redis_prefix=redis_prefix)
    cluster = await _leading(hub)
    store = hub.services.store
    _, conv = await hub.investor()
    router = cluster.core.router
    await store.update_conversation(conv["id"], time.time(), state="queued")  # no submit
    await cluster._adopt_queued(cluster.core)
    assert router.queue_position(conv["id"]) is None and not router.assigned_to(conv["id"])
    await store.update_conversation(conv["id"], time.time() - 10, state="queued")
    await cluster._adopt_queued(cluster.core)
    assert router.queue_position(conv["id"]) is not None or router.assigned_to(conv["id"])
