"""Crash safety: SIGKILL the hub process mid-load, restart it, and account for every message.

Every message a client saw acknowledged must be stored exactly once and come back on resume;
resending the unacknowledged ones with the same cid after the restart stores each exactly once.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections import Counter
from typing import Any

import pytest

from chatserver.client import HubClient, get_token

CLIENTS, SENDERS_PER_CLIENT, MESSAGES_PER_SENDER = 4, 3, 400


class Investor:
    """One investor of the load: its conversation, what it sent and what was acknowledged."""

    def __init__(self, number: int):
        self.number = number
        self.token = ""
        self.conv_id = ""
        self.sent: dict[str, str] = {}  # cid -> text, in sending order
        self.acked: dict[str, dict[str, Any]] = {}  # cid -> ack

    async def sender(self, client: HubClient, lane: int) -> None:
        for i in range(MESSAGES_PER_SENDER):
            cid = f"i{self.number}-l{lane}-m{i}"
            text = f"客户{self.number}第{lane}路第{i}条消息"
            self.sent[cid] = text
            ack = await client.request(
                {"type": "send", "conversation_id": self.conv_id, "text": text}, cid=cid, timeout=30
            )
            self.acked[cid] = ack


async def transcript(client: HubClient, conv_id: str) -> list[dict[str, Any]]:
    await client.request({"type": "resume", "conversation_id": conv_id, "after_seq": 0}, timeout=30)
    resumed = await client.next_event("resumed", timeout=30)
    by_id: dict[str, dict[str, Any]] = {}
    while client.events:
        event = client.events.popleft()
        if event.get("type") == "message" and event["conversation_id"] == conv_id:
            # A live copy of a message may race the replay; clients drop ids they already have.
            assert by_id.setdefault(event["id"], event) == event
    messages = sorted(by_id.values(), key=lambda m: m["seq"])
    assert resumed["last_seq"] >= max((m["seq"] for m in messages), default=0)
    return messages


async def run_crash(hub_processes: list[Any], sec: Any, tmp_path: Any, db_url: str) -> None:
    rng = random.Random()
    hub = sec.HubProcess(tmp_path / "data", db_url)
    hub_processes.append(hub)
    await hub.start()
    investors = [Investor(n) for n in range(CLIENTS)]
    clients = []
    for investor in investors:
        investor.token, _ = await get_token(hub.base_url, name=f"压测{investor.number}")
        client = await HubClient.connect(hub.base_url, investor.token)
        investor.conv_id = (await client.start())["id"]
        clients.append(client)
    load = [
        asyncio.create_task(inv.sender(client, lane))
        for inv, client in zip(investors, clients, strict=True)
        for lane in range(SENDERS_PER_CLIENT)
    ]
    kill_after = rng.uniform(0.8, 2.5)
    await asyncio.sleep(kill_after)
    hub.kill()
    await hub.proc.wait()
    await asyncio.gather(*load, return_exceptions=True)
    for client in clients:
        await client.close()
    acked_total = sum(len(i.acked) for i in investors)
    unacked_total = sum(len(i.sent) - len(i.acked) for i in investors)
    print(f"killed after {kill_after:.2f}s: {acked_total} acked, {unacked_total} in flight")
    assert acked_total > 0, "the kill came before any ack; the test proves nothing"
    assert unacked_total > 0, "nothing was in flight at the kill; the test proves nothing"

    await hub.start()  # same port, same data dir, same database
    for investor in investors:
        client = await HubClient.connect(hub.base_url, investor.token)
        # 1. Every acknowledged message is there exactly once, with the seq its ack named.
        stored = await transcript(client, investor.conv_id)
        by_text = Counter(m["text"] for m in stored if m["sender_role"] == "investor")
        assert len({m["seq"] for m in stored}) == len(stored), "two messages share a seq"
        by_id = {m["id"]: m for m in stored}
        for cid, ack in investor.acked.items():
            assert by_text[investor.sent[cid]] == 1, cid
            assert by_id[ack["message_id"]]["seq"] == ack["seq"], cid
        # 2. Resend everything not acknowledged, plus a few that were, with the same cids.
        unacked = [cid for cid in investor.sent if cid not in investor.acked]
        again = unacked + rng.sample(sorted(investor.acked), min(5, len(investor.acked)))
        for cid in again:
            ack = await client.request(
                {"type": "send", "conversation_id": investor.conv_id, "text": investor.sent[cid]},
                cid=cid,
                timeout=30,
            )
            if cid in investor.acked:
                assert (
                    ack["duplicate"] and ack["message_id"] == investor.acked[cid]["message_id"]
                ), cid
        # 3. Now every message sent is stored exactly once, and a reader sees no duplicates.
        final = await transcript(client, investor.conv_id)
        counts = Counter(m["text"] for m in final if m["sender_role"] == "investor")
        wrong = {cid: counts[text] for cid, text in investor.sent.items() if counts[text] != 1}
        assert not wrong, f"stored other than once after resending (cid: copies): {wrong}"
        assert len({m["seq"] for m in final}) == len(final), "two messages share a seq"
        await client.close()
    # The audit hash chain of every transcript still verifies after the crash.
    verify = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatserver",
        "--data-dir",
        str(tmp_path / "data"),
        "--database-url",
        db_url,
        "audit",
        "verify",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await verify.communicate()
    assert verify.returncode == 0, out.decode(errors="replace")[-2000:]


@pytest.mark.timeout(180)
async def test_sigkill_mid_load_loses_no_acknowledged_message_and_resends_store_once(
    hub_processes, sec, tmp_path, db_url
):
    await run_crash(hub_processes, sec, tmp_path, db_url)
