"""Agent assist runs after the acks, one job at a time, newest message per chat."""

from __future__ import annotations

import asyncio

from chatserver.assist import AssistQueue


async def test_waiting_messages_of_one_chat_are_coalesced_to_the_newest_in_place():
    done: list[tuple[str, str]] = []
    gate = asyncio.Event()

    async def compute(chat: str, text: str) -> None:
        if text == "first":
            await gate.wait()
        done.append((chat, text))

    queue = AssistQueue(compute)
    queue.submit("A", "A", "first")
    await asyncio.sleep(0.01)  # the worker is busy with A's first message
    queue.submit("B", "B", "b1")
    queue.submit("A", "A", "a2")
    queue.submit("C", "C", "c1")
    queue.submit("A", "A", "a3")  # replaces a2 where it waits: after B, before C
    gate.set()
    await asyncio.wait_for(queue.idle(), 5)
    assert done == [("A", "first"), ("B", "b1"), ("A", "a3"), ("C", "c1")]
    assert queue.coalesced == 1
    await queue.stop()


async def test_a_failing_job_is_logged_and_the_queue_goes_on(caplog):
    done: list[str] = []

    async def compute(text: str) -> None:
        if text == "bad":
            raise ValueError("index missing")
        done.append(text)

    queue = AssistQueue(compute)
    queue.submit("A", "bad")
    queue.submit("B", "good")
    await asyncio.wait_for(queue.idle(), 5)
    assert done == ["good"]
    assert "suggestions failed" in caplog.text
    await queue.stop()
