"""Frames of one socket: in order within a conversation, concurrent across conversations.

The `Lanes` scheduler directly (real asyncio tasks, real events), then the same promises
through a real WebSocket: pipelined sends to one conversation are stored and acked in order,
and a ping answers only after every frame sent before it.
"""

from __future__ import annotations

import asyncio

import orjson

from chatserver.ws import Lanes


class Recorder:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}

    def work(self, name: str, gated: bool = False):
        if gated:
            self.gates[name] = asyncio.Event()

        async def run() -> None:
            self.log.append(f"start {name}")
            if name in self.gates:
                await self.gates[name].wait()
            self.log.append(f"end {name}")

        return run


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_same_conversation_waits_other_conversation_does_not():
    lanes, r = Lanes(limit=8), Recorder()
    await lanes.run("A", r.work("a1", gated=True))
    await lanes.run("A", r.work("a2"))
    await lanes.run("B", r.work("b1"))
    await settle()
    assert r.log == ["start a1", "start b1", "end b1"]  # b1 ran while a1 was blocked; a2 waits
    r.gates["a1"].set()
    await lanes.drain()
    assert r.log[3:] == ["end a1", "start a2", "end a2"]


async def test_frame_without_conversation_is_a_barrier_both_ways():
    lanes, r = Lanes(limit=8), Recorder()
    await lanes.run("A", r.work("a1", gated=True))
    await lanes.run(None, r.work("ping"))
    await lanes.run("B", r.work("b1"))
    await settle()
    assert r.log == ["start a1"]  # the ping waits for a1, and b1 (sent after it) for the ping
    r.gates["a1"].set()
    await lanes.drain()
    assert r.log == ["start a1", "end a1", "start ping", "end ping", "start b1", "end b1"]


async def test_in_flight_limit_stops_reading_until_a_frame_finishes():
    lanes, r = Lanes(limit=2), Recorder()
    await lanes.run("A", r.work("a1", gated=True))
    await lanes.run("B", r.work("b1", gated=True))
    third = asyncio.create_task(lanes.run("C", r.work("c1")))
    await settle()
    assert not third.done() and "start c1" not in r.log
    r.gates["b1"].set()
    await asyncio.wait_for(third, 2)
    r.gates["a1"].set()
    await lanes.drain()
    assert r.log.count("end c1") == 1


async def test_pipelined_sends_are_stored_and_acked_in_order(hub):
    client, conv = await hub.investor()
    for i in range(12):
        await client.send_raw(orjson.dumps({"type": "send", "conversation_id": conv["id"], "text": f"第{i}条",
                                            "cid": f"p{i}"}).decode())
    await client.send_raw(orjson.dumps({"type": "ping", "cid": "barrier"}).decode())
    await client.next_event(lambda e: e.get("cid") == "barrier" and e["type"] == "ack")
    # Everything sent before the ping was answered before it, in the order sent.
    acks = [e for e in client.events if e["type"] == "ack" and e.get("for") == "send"]
    assert [a["cid"] for a in acks] == [f"p{i}" for i in range(12)]
    seqs = [a["seq"] for a in acks]
    assert seqs == sorted(seqs) and len(set(seqs)) == 12
    stored = await hub.services.store.messages_after(conv["id"], 0)
    assert [m.text for m in stored if m.sender_role == "investor"] == [f"第{i}条" for i in range(12)]
