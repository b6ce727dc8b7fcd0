"""Cluster: kill -9 a node mid-conversation (a follower, then the routing leader).

Clients reconnect to a surviving node and resume with every acknowledged message; routing
fails over to a new leader that rebuilds its state from the database and presence keys.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from chatserver.client import HubClient

pytestmark = [pytest.mark.cluster, pytest.mark.services, pytest.mark.slow]

CLUSTER_NODES = 3


async def _resume(client: HubClient, conversation_id: str) -> tuple[list[dict[str, Any]], int]:
    """Every message after seq 0 the client may see, and last_seq from `resumed`."""
    await client.request({"type": "resume", "conversation_id": conversation_id, "after_seq": 0})
    messages = []
    while True:
        event = await client.next_event(
            lambda e: (
                e.get("conversation_id") == conversation_id and e["type"] in ("message", "resumed")
            ),
            timeout=10,
        )
        if event["type"] == "resumed":
            return messages, int(event["last_seq"])
        messages.append(event)


async def _talk(investor: HubClient, advisor: HubClient, conv_id: str, n: int) -> list[str]:
    """n investor messages, each seen by the advisor and answered; returns every acked id."""
    acked = []
    for i in range(n):
        sent = await investor.say(conv_id, f"第{i}个问题：融资融券的利率是多少？", cid=f"q{i}")
        await advisor.next_event(lambda e, m=sent["message_id"]: e.get("id") == m, timeout=10)
        reply = await advisor.say(conv_id, f"第{i}个回答：请以营业部公布为准。")
        await investor.next_event(lambda e, m=reply["message_id"]: e.get("id") == m, timeout=10)
        acked += [sent["message_id"], reply["message_id"]]
    return acked


async def test_kill_a_follower_clients_resume_on_another_node(cluster) -> None:
    leader = await cluster.leader()
    victim, survivor = [n for n in cluster.nodes if n is not leader]
    advisor = await cluster.client(leader, "advisor1")
    investor = await cluster.client(victim)
    conv_id = await cluster.handed_over(investor, "general")
    await advisor.next_event(lambda e: e["type"] == "assigned", timeout=15)
    acked = await _talk(investor, advisor, conv_id, 3)

    victim.kill()
    moved = await HubClient.connect(survivor.url, investor.token)
    cluster.clients.append(moved)
    messages, last_seq = await _resume(moved, conv_id)
    ids = [m["id"] for m in messages]
    assert set(acked) <= set(ids)
    assert [m["seq"] for m in messages] == sorted(m["seq"] for m in messages)
    assert last_seq == messages[-1]["seq"]

    # A retry of an acknowledged send (same cid) on the new node is not stored twice.
    again = await moved.say(conv_id, "第0个问题：融资融券的利率是多少？", cid="q0")
    assert again["duplicate"] is True and again["message_id"] == acked[0]
    # cids are per sender, across connections: a new connection must not reuse the old ones.
    fresh = await moved.say(conv_id, "换了个节点还能聊吗？", cid="moved-1")
    got = await advisor.next_event(lambda e: e.get("id") == fresh["message_id"], timeout=10)
    assert got["seq"] == last_seq + 1
    await advisor.request({"type": "close", "conversation_id": conv_id})


async def test_kill_the_leader_routing_fails_over(cluster) -> None:
    leader = await cluster.leader()
    survivor = next(n for n in cluster.nodes if n is not leader and n.alive)
    advisor = await cluster.client(survivor, "advisor2")
    investor = await cluster.client(leader)
    conv_id = await cluster.handed_over(investor, "wealth")
    await advisor.next_event(
        lambda e: e["type"] == "assigned" and e["conversation"]["id"] == conv_id, timeout=15
    )
    acked = await _talk(investor, advisor, conv_id, 2)
    # A chat waiting for a group nobody serves yet: the new leader must find it in the database.
    waiting = await cluster.client(survivor)
    waiting_id = await cluster.handed_over(waiting, "complaints", "我要投诉")

    killed_at = time.monotonic()
    leader.kill()
    new_leader = await cluster.leader(within=20)
    failover_s = time.monotonic() - killed_at
    print(f"routing failover after kill -9 of the leader: {failover_s:.1f} s")
    assert new_leader is survivor
    assert failover_s < 12, failover_s  # lease 5 s + one renewal round + rebuild

    moved = await HubClient.connect(survivor.url, investor.token)
    cluster.clients.append(moved)
    messages, _ = await _resume(moved, conv_id)
    assert set(acked) <= {m["id"] for m in messages}
    fresh = await moved.say(conv_id, "主节点挂了之后还在吗？", cid="moved-1")
    await advisor.next_event(lambda e: e.get("id") == fresh["message_id"], timeout=10)

    # Routing works on the new leader: a new chat is assigned, the queued one is not forgotten.
    newcomer = await cluster.client(survivor)
    new_id = await cluster.handed_over(newcomer, "wealth")
    await advisor.next_event(
        lambda e: e["type"] == "assigned" and e["conversation"]["id"] == new_id, timeout=15
    )
    late = await cluster.client(survivor, "advisor3")
    got = await late.next_event(lambda e: e["type"] == "assigned", timeout=15)
    assert got["conversation"]["id"] == waiting_id
    rows = await cluster.sql(
        "SELECT id, advisor_id FROM conversations WHERE id = ANY($1::text[])",
        [conv_id, new_id, waiting_id],
    )
    owners = {r["id"]: r["advisor_id"] for r in rows}
    assert owners == {
        conv_id: advisor.user["id"],
        new_id: advisor.user["id"],
        waiting_id: late.user["id"],
    }
    await asyncio.sleep(0)
