"""Cluster: nodes started at the same moment on an empty database all come up.

Migrations and demo seeding run concurrently on every node; none may fail, and the demo rows
exist once.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.services, pytest.mark.slow]

CLUSTER_NODES = 3
CLUSTER_START_TOGETHER = True


async def test_nodes_started_together_share_one_schema_and_one_set_of_demo_rows(cluster) -> None:
    for node in cluster.nodes:
        status, body = await node.get("/readyz")
        assert status == 200, body
    users = await cluster.sql("SELECT username, count(*) AS n FROM users GROUP BY username")
    assert {r["username"] for r in users} >= {"advisor1", "advisor2", "advisor3", "supervisor1"}
    assert all(r["n"] == 1 for r in users), users
    roles = [(await n.get("/readyz"))[1]["routing"] for n in cluster.nodes]
    assert sorted(roles) == ["follower", "follower", "leader"]
    # Any node can log anyone in: the same token secret and the same users everywhere.
    advisor = await cluster.client(cluster.nodes[2], "advisor1")
    investor = await cluster.client(cluster.nodes[0])
    conv_id = await cluster.handed_over(investor, "general")
    got = await advisor.next_event(lambda e: e["type"] == "assigned", timeout=15)
    assert got["conversation"]["id"] == conv_id
