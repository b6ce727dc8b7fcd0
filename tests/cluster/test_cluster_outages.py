"""Cluster outages: a killed Redis subscription, Redis stopped, PostgreSQL stopped.

These stop shared services on this machine, which any other test running at the same moment
sees too: they are short, always restart what they stopped (in `finally`, waiting until it
answers), and can be run last or alone: `pytest tests/cluster/test_cluster_outages.py`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Awaitable, Callable

import pytest

from chatserver.client import HubClient

pytestmark = [pytest.mark.cluster, pytest.mark.services, pytest.mark.slow]

CLUSTER_NODES = 2

REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
    "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip


def _pg_ctl(action: str, *extra: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action, *extra],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def _sh(*command: str, check: bool = False) -> str:
    """Run an admin command (blocking on purpose: nothing else should run meanwhile)."""
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=30, check=check)
    return done.stdout


def _answers(command: list[str]) -> bool:
    return subprocess.run(command, capture_output=True, timeout=5).returncode == 0


def _wait_for(command: list[str], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not _answers(command):
        assert time.monotonic() < deadline, f"{command} did not answer in {within}s"
        time.sleep(0.2)


async def _until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    """Poll check until true; returns how long it took."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < within, f"{what}: not within {within}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def _local_pair(cluster, node, username: str, group: str) -> tuple[HubClient, HubClient, str]:
    advisor = await cluster.client(node, username)
    investor = await cluster.client(node)
    conv_id = await cluster.handed_over(investor, group)
    await advisor.next_event(
        lambda e: e["type"] == "assigned" and e["conversation"]["id"] == conv_id, timeout=15
    )
    return advisor, investor, conv_id


async def test_killed_subscription_turns_not_ready_then_ready_again(cluster) -> None:
    node = cluster.nodes[0]
    _, body = await node.get("/readyz")
    listing = _sh("redis-cli", "CLIENT", "LIST", "TYPE", "pubsub", check=True)
    mine = [
        field.split("=", 1)[1]
        for line in listing.splitlines()
        if f"name={cluster.prefix}sub:{body['node']}" in line
        for field in line.split()
        if field.startswith("id=")
    ]
    assert len(mine) == 1, listing
    seen: list[tuple[int, str]] = []

    async def status() -> tuple[int, str]:
        code, answer = await node.get("/readyz")
        seen.append((code, answer["bus"]))
        return code, answer["bus"]

    _sh("redis-cli", "CLIENT", "KILL", "ID", mine[0], check=True)
    await _until(lambda: _is(status(), (503, "stale")), 5, "not ready after the kill")
    await _until(lambda: _is(status(), (200, "redis")), 10, "ready again after resubscribing")
    assert await node.metric("chatserver_bus_stale") == 0
    # And delivery across nodes works on the new subscription.
    advisor = await cluster.client(cluster.nodes[1], "advisor2")
    investor = await cluster.client(node)
    conv_id = await cluster.handed_over(investor, "wealth")
    await advisor.next_event(lambda e: e["type"] == "assigned", timeout=15)
    sent = await investor.say(conv_id, "订阅重连后能收到吗？", cid="stale-1")
    await advisor.next_event(lambda e: e.get("id") == sent["message_id"], timeout=10)
    await advisor.request({"type": "close", "conversation_id": conv_id})


async def _is(pending: Awaitable[tuple[int, str]], expected: tuple[int, str]) -> bool:
    return await pending == expected


async def test_redis_stopped_nodes_degrade_serve_local_chats_and_recover(cluster) -> None:
    a, b = cluster.nodes
    advisor, investor, conv_id = await _local_pair(cluster, a, "advisor1", "general")
    remote_advisor = await cluster.client(b, "advisor3")
    try:
        _sh("redis-cli", "shutdown", "nosave")
        for node in (a, b):
            await _until(lambda n=node: _is(_bus(n), (200, "degraded")), 10, "degraded")
            assert await node.metric("chatserver_bus_degraded") == 1
            # Within a second of noticing, each node routes its own connections.
            await _until(lambda n=node: _routing_is(n, "local"), 5, "local routing")
        # Chats within one node keep working, routing included (each node routes locally).
        sent = await investor.say(conv_id, "Redis 停了还能聊吗？", cid="redis-1")
        await advisor.next_event(lambda e: e.get("id") == sent["message_id"], timeout=10)
        reply = await advisor.say(conv_id, "可以，同一节点照常。", cid="redis-2")
        await investor.next_event(lambda e: e.get("id") == reply["message_id"], timeout=10)
        newcomer = await cluster.client(a)
        new_id = await cluster.handed_over(newcomer, "general")
        got = await advisor.next_event(
            lambda e: e["type"] == "assigned" and e["conversation"]["id"] == new_id, timeout=15
        )
        assert got["conversation"]["advisor_id"] == advisor.user["id"]
    finally:
        _sh(*REDIS_START)
        _wait_for(["redis-cli", "ping"])
    for node in (a, b):
        await _until(lambda n=node: _is(_bus(n), (200, "redis")), 20, "recovered")
        assert await node.metric("chatserver_bus_degraded") == 0
    leader = await cluster.leader()
    assert sum([(await n.get("/readyz"))[1]["routing"] == "leader" for n in (a, b)]) == 1
    # Messages the remote advisor missed are in the database: resume recovers them.
    await remote_advisor.close()
    remote_advisor = await cluster.client(b, "advisor3")
    newcomer2 = await cluster.client(a)
    cross_id = await cluster.handed_over(newcomer2, "complaints", "我要投诉")
    await remote_advisor.next_event(
        lambda e: e["type"] == "assigned" and e["conversation"]["id"] == cross_id, timeout=20
    )
    sent = await newcomer2.say(cross_id, "恢复以后跨节点呢？", cid="redis-3")
    await remote_advisor.next_event(lambda e: e.get("id") == sent["message_id"], timeout=10)
    assert leader.alive
    for cid, who in ((conv_id, advisor), (new_id, advisor), (cross_id, remote_advisor)):
        await who.request({"type": "close", "conversation_id": cid})


async def _routing_is(node, mode: str) -> bool:
    _, body = await node.get("/readyz")
    return bool(body["routing"] == mode)


async def _bus(node) -> tuple[int, str]:
    code, body = await node.get("/readyz")
    return code, body["bus"]


async def test_postgres_stopped_sends_fail_fast_then_succeed_once(cluster) -> None:
    # The chat lives on a follower, so its hand-over and "assigned" cross Redis to and from the
    # leader (right after the previous test restarted Redis, when the module runs in order).
    leader = await cluster.leader()
    b = next(node for node in cluster.nodes if node is not leader)
    advisor, investor, conv_id = await _local_pair(cluster, b, "advisor2", "wealth")
    try:
        _pg_ctl("stop", "-m", "fast")
        answers = []
        for attempt in range(5):
            started = time.monotonic()
            answer = await investor.send_frame(
                {"type": "send", "conversation_id": conv_id, "text": "数据库停了", "cid": "pg-1"}
            )
            answers.append((answer, time.monotonic() - started))
            await asyncio.sleep(0.2 * attempt)
        for answer, took in answers:
            assert answer["type"] == "error" and answer["code"] == "unavailable", answer
            assert answer["retryable"] is True
            assert took < 2.0, took  # fails fast, never waits on a connect timeout
        assert await b.metric("chatserver_database_circuit_open") == 1
        assert (await b.get("/readyz"))[0] == 503
    finally:
        _pg_ctl("start")
        _wait_for(["pg_isready", "-h", "127.0.0.1"])

    async def delivered() -> bool:
        answer = await investor.send_frame(
            {"type": "send", "conversation_id": conv_id, "text": "数据库停了", "cid": "pg-1"}
        )
        if answer["type"] == "ack":
            acks.append(answer)
            return True
        assert answer["code"] == "unavailable", answer
        await asyncio.sleep(0.3)
        return False

    acks: list[dict[str, object]] = []
    await _until(delivered, 30, "a send succeeds once PostgreSQL is back")
    seen = await advisor.next_event(lambda e: e.get("id") == acks[0]["message_id"], timeout=10)
    assert seen["text"] == "数据库停了"
    again = await investor.say(conv_id, "数据库停了", cid="pg-1")
    assert again["duplicate"] is True and again["message_id"] == acks[0]["message_id"]
    rows = await cluster.sql(
        "SELECT count(*) AS n FROM messages WHERE conversation_id = $1 AND client_id = 'pg-1'",
        conv_id,
    )
    assert rows[0]["n"] == 1
    seqs = await cluster.sql(
        "SELECT seq FROM messages WHERE conversation_id = $1 ORDER BY seq", conv_id
    )
    assert [r["seq"] for r in seqs] == list(range(1, len(seqs) + 1))
    assert await b.metric("chatserver_database_circuit_open") == 0
    await advisor.request({"type": "close", "conversation_id": conv_id})
