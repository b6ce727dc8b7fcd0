"""Cluster: delivery and routing decisions across real hub processes on PostgreSQL and Redis.

Three nodes share one database and one Redis prefix. Advisors have capacity 2; the "account"
group uses grab mode (抢单). Tests run in file order and each closes the chats it opened.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chatserver.client import HubClient, HubError

pytestmark = [pytest.mark.cluster, pytest.mark.services, pytest.mark.slow]

CLUSTER_NODES = 3
CLUSTER_FLAGS = ("--default-capacity", "2", "--grab-groups", "account")


def _is_message(message_id: str) -> Any:
    return lambda e: e["type"] == "message" and e["id"] == message_id


async def test_cross_node_delivery_both_ways(cluster) -> None:
    a, b, _ = cluster.nodes
    advisor = await cluster.client(b, "advisor2")
    investor = await cluster.client(a)
    conv_id = await cluster.handed_over(investor, "wealth")
    assigned = await advisor.next_event(
        lambda e: e["type"] == "assigned" and e["conversation"]["id"] == conv_id, timeout=15
    )
    assert assigned["conversation"]["advisor_id"] == advisor.user["id"]
    state = await investor.next_event(
        lambda e: e.get("type") == "conversation" and e.get("state") == "assigned", timeout=10
    )
    assert state["advisor_id"] == advisor.user["id"]

    sent = await investor.say(conv_id, "请问开户需要带什么材料？")
    seen = await advisor.next_event(_is_message(sent["message_id"]), timeout=10)
    assert seen["text"] == "请问开户需要带什么材料？"
    reply = await advisor.say(conv_id, "带上身份证和银行卡即可。")
    got = await investor.next_event(_is_message(reply["message_id"]), timeout=10)
    assert got["text"] == "带上身份证和银行卡即可。"
    assert got["seq"] == seen["seq"] + 1
    await advisor.request({"type": "close", "conversation_id": conv_id})


async def test_a_chat_closed_on_one_node_refuses_messages_on_another_that_cached_it(cluster) -> None:
    """Each node caches conversation rows; a row written on one node is dropped on the others."""
    a, b, _ = cluster.nodes
    advisor = await cluster.client(b, "advisor2")
    investor = await cluster.client(a)
    conv_id = await cluster.handed_over(investor, "wealth")
    await advisor.next_event(lambda e: e["type"] == "assigned" and e["conversation"]["id"] == conv_id, timeout=15)
    # Both nodes read the row on their message paths (and keep it).
    for _ in range(2):
        sent = await investor.say(conv_id, "还在吗？")
        await advisor.next_event(_is_message(sent["message_id"]), timeout=10)
        reply = await advisor.say(conv_id, "在的，您请说。")
        await investor.next_event(_is_message(reply["message_id"]), timeout=10)
    await investor.request({"type": "close", "conversation_id": conv_id})
    await advisor.next_event(
        lambda e: e.get("type") == "conversation" and e.get("state") == "closed", timeout=10
    )
    with pytest.raises(HubError) as refused:
        await advisor.say(conv_id, "还有别的问题吗？")
    assert refused.value.code == "conversation_closed"
    rows = await cluster.sql("SELECT count(*) FROM messages WHERE conversation_id = $1 AND text = $2",
                             conv_id, "还有别的问题吗？")
    assert rows[0][0] == 0


async def test_grab_race_across_nodes_has_exactly_one_winner(cluster) -> None:
    first, middle, last = cluster.nodes
    grabbers = [await cluster.client(first, "advisor1"), await cluster.client(last, "advisor3")]
    ids = {g.user["id"] for g in grabbers}
    for round_ in range(4):
        investor = await cluster.client(middle)
        conv_id = await cluster.handed_over(investor, "account", f"第{round_}次：我要改绑银行卡")
        for g in grabbers:
            offer = await g.next_event(
                lambda e, c=conv_id: (
                    e["type"] == "pool" and e["action"] == "offer" and e["conversation"]["id"] == c
                ),
                timeout=15,
            )
            assert offer["group"] == "account"
        answers = await asyncio.gather(
            *(g.send_frame({"type": "claim", "conversation_id": conv_id, "cid": f"g{round_}"})
              for g in grabbers)
        )  # fmt: skip
        winners = [g for g, ans in zip(grabbers, answers, strict=True) if ans["type"] == "ack"]
        losers = [ans for ans in answers if ans["type"] == "error"]
        assert len(winners) == 1, answers
        assert [e["code"] for e in losers] == ["already_taken"], answers
        winner = winners[0]
        rows = await cluster.sql(
            "SELECT state, advisor_id FROM conversations WHERE id = $1", conv_id
        )
        assert (rows[0]["state"], rows[0]["advisor_id"]) == ("assigned", winner.user["id"])
        assigns = await cluster.sql(
            "SELECT count(*) AS n FROM audit_events WHERE chain = $1 AND action = 'conversation.assign'",
            conv_id,
        )
        assert assigns[0]["n"] == 1
        assert rows[0]["advisor_id"] in ids
        await winner.request({"type": "close", "conversation_id": conv_id})


async def test_assignment_storm_from_every_node_respects_capacity(cluster) -> None:
    advisors = [
        await cluster.client(node, name)
        for node, name in zip(cluster.nodes, ("advisor1", "advisor2", "advisor3"), strict=True)
    ]
    investors: list[HubClient] = []
    for node in cluster.nodes:
        investors += [await cluster.client(node) for _ in range(4)]
    conv_ids = await asyncio.gather(*(cluster.handed_over(i, "general") for i in investors))
    assert len(set(conv_ids)) == 12

    seen: dict[str, list[str]] = {a.user["id"]: [] for a in advisors}

    async def collect(advisor: HubClient) -> None:
        while True:
            e = await advisor.next_event("assigned", timeout=60)
            seen[advisor.user["id"]].append(e["conversation"]["id"])

    tasks = [asyncio.create_task(collect(a)) for a in advisors]
    try:
        for _ in range(300):
            if sum(map(len, seen.values())) >= 6:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # anything beyond capacity would arrive now
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    everything = [c for got in seen.values() for c in got]
    assert len(everything) == 6, seen  # 3 advisors x capacity 2, never more
    assert len(set(everything)) == 6  # no chat handed to two advisors
    assert all(len(got) == 2 for got in seen.values()), seen
    rows = await cluster.sql(
        "SELECT advisor_id, count(*) AS n FROM conversations "
        "WHERE state = 'assigned' AND id = ANY($1::text[]) GROUP BY advisor_id",
        list(conv_ids),
    )
    assert {r["advisor_id"]: r["n"] for r in rows} == {a: 2 for a in seen}
    queued = await cluster.sql(
        "SELECT count(*) AS n FROM conversations WHERE state = 'queued' AND id = ANY($1::text[])",
        list(conv_ids),
    )
    assert queued[0]["n"] == 6
    twice = await cluster.sql(
        "SELECT chain FROM audit_events WHERE action = 'conversation.assign' AND chain = ANY($1::text[]) "
        "GROUP BY chain HAVING count(*) > 1",
        list(conv_ids),
    )
    assert twice == []
    with pytest.raises(HubError):
        # A follower asked to claim a chat it was never offered is refused by the leader.
        await advisors[0].request(
            {"type": "claim", "conversation_id": seen[advisors[1].user["id"]][0]}
        )


async def test_a_ban_on_one_node_closes_the_account_sockets_on_the_others(cluster) -> None:
    import aiohttp

    from chatserver.client import get_token

    a, b, _ = cluster.nodes
    banned = await cluster.client(b)
    bystander = await cluster.client(b)
    admin_token, _ = await get_token(a.url, "admin", "demo1234")
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with aiohttp.ClientSession() as session:
        async with session.put(a.url + "/api/admin/access-lists", json={"banned_users": [banned.user["id"]]},
                               headers=headers) as response:
            assert response.status == 200
        try:
            await asyncio.wait_for(banned.ws.wait_closed(), 10)
            assert banned.ws.close_code == 4003
            assert (await bystander.request({"type": "ping"}))["type"] == "ack"
            async with session.get(b.url + "/api/admin/access-lists", headers=headers) as response:
                assert (await response.json())["banned_users"] == [banned.user["id"]]
        finally:
            async with session.put(a.url + "/api/admin/access-lists", json={"banned_users": []},
                                   headers=headers) as response:
                assert response.status == 200
