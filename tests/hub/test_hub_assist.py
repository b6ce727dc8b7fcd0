"""Agent assist runs after the acks, newest message per chat, in batches; by default in a worker process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from bot import KnowledgeBase
from chatserver.assist import (
    WORKER_NICE,
    AssistQueue,
    InlineSuggester,
    ProcessSuggester,
    StaleWorker,
    suggest_in_worker,
)
from chatserver.engines import Engines
from chatserver.settings import Settings, SettingsError


async def test_waiting_messages_of_one_chat_are_coalesced_to_the_newest_in_place():
    done: list[tuple[str, str]] = []
    gate = asyncio.Event()

    async def run_batch(batch: list[tuple[Any, ...]]) -> None:
        for chat, text in batch:
            if text == "first":
                await gate.wait()
            done.append((chat, text))

    queue = AssistQueue(run_batch)
    queue.submit("A", "A", "first")
    await asyncio.sleep(0.01)  # the worker is busy with A's first message
    queue.submit("B", "B", "b1")
    queue.submit("A", "A", "a2")
    queue.submit("C", "C", "c1")
    queue.submit("A", "A", "a3")  # replaces a2 where it waits: after B, before C
    gate.set()
    await asyncio.wait_for(queue.idle(), 5)
    assert done == [("A", "first"), ("B", "b1"), ("A", "a3"), ("C", "c1")]
    assert queue.coalesced == 1 and queue.batches == 4  # one job per batch by default
    await queue.stop()


async def test_a_gather_window_sends_the_waiting_chats_in_one_batch_of_bounded_size():
    batches: list[list[str]] = []

    async def run_batch(batch: list[tuple[Any, ...]]) -> None:
        batches.append([text for (text,) in batch])

    queue = AssistQueue(run_batch, batch_max=3, gather_s=0.05)
    for n in range(5):
        queue.submit(f"chat{n}", f"m{n}")
    await asyncio.wait_for(queue.idle(), 5)
    assert batches == [["m0", "m1", "m2"], ["m3", "m4"]]
    await queue.stop()


async def test_a_failing_batch_is_logged_and_the_queue_goes_on(caplog):
    done: list[str] = []

    async def run_batch(batch: list[tuple[Any, ...]]) -> None:
        for (text,) in batch:
            if text == "bad":
                raise ValueError("index missing")
            done.append(text)

    queue = AssistQueue(run_batch)
    queue.submit("A", "bad")
    queue.submit("B", "good")
    await asyncio.wait_for(queue.idle(), 5)
    assert done == ["good"]
    assert "suggestions failed" in caplog.text
    await queue.stop()


@pytest.fixture
async def engines(tmp_path) -> Engines:
    from chatserver.storage.sql import open_store

    store = open_store(f"sqlite+aiosqlite:///{tmp_path / 'kb.sqlite3'}")
    await store.start()
    await store.migrate()
    loaded = Engines(store)
    await loaded.load()
    yield loaded
    await store.close()


JOBS = [("两融怎么开通", None), ("基金赎回多久到账", "C1"), ("好的，明白了", None), ("", None)]


async def test_the_worker_process_suggests_what_the_hub_process_would(engines: Engines):
    worker = ProcessSuggester(engines)
    try:
        from_worker = await worker.suggest_many(JOBS)
        assert worker.worker_pids() and worker.worker_pids()[0] != os.getpid()
        assert from_worker == await InlineSuggester(engines).suggest_many(JOBS)
        assert any(s.category == "margin" for s in from_worker[0])
    finally:
        await worker.close()


async def test_the_worker_process_yields_the_cores_to_the_hub(engines: Engines):
    """Suggestions are best effort; on a busy machine the message path goes first."""
    worker = ProcessSuggester(engines)
    try:
        await worker.suggest_many(JOBS[:1])
        [pid] = worker.worker_pids()
        hub_nice = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, hub_nice + WORKER_NICE) > hub_nice
    finally:
        await worker.close()


async def test_a_new_kb_version_reaches_the_worker_with_its_next_batch(engines: Engines):
    worker = ProcessSuggester(engines)
    try:
        assert (await worker.suggest_many([("火星基金怎么买", None)]))[0][0].entry_id != "mars_fund"
        kb = KnowledgeBase.from_jsonl(engines.kb_jsonl)
        added = kb.to_jsonl() + (
            '{"id": "mars_fund", "question": "火星基金怎么买", "answer": "火星基金在APP理财频道购买。", '
            '"similar_questions": ["怎么买火星基金"], "category": "wealth"}\n')
        await engines.use_kb(engines.kb_version + 1, added)
        [items] = await worker.suggest_many([("火星基金怎么买", None)])
        assert items[0].entry_id == "mars_fund"
    finally:
        await worker.close()


async def test_a_killed_worker_costs_one_batch_computed_in_the_hub_then_a_new_worker(engines: Engines, caplog):
    worker = ProcessSuggester(engines)
    try:
        expected = await InlineSuggester(engines).suggest_many(JOBS)
        assert await worker.suggest_many(JOBS) == expected
        [pid] = worker.worker_pids()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            await asyncio.sleep(0.05)
        assert await worker.suggest_many(JOBS) == expected  # this batch: computed in the hub
        assert worker.restarts == 1 and "suggestion worker unusable" in caplog.text
        assert await worker.suggest_many(JOBS) == expected  # the next: a new worker
        assert worker.worker_pids() and worker.worker_pids()[0] != pid
    finally:
        await worker.close()


async def test_a_worker_missing_the_kb_it_is_asked_for_is_replaced(engines: Engines, caplog):
    """A worker that does not hold the version the hub believes it holds (it was replaced
    unnoticed) answers StaleWorker: that batch is computed in the hub, the next worker gets the KB."""
    worker = ProcessSuggester(engines)
    try:
        expected = await InlineSuggester(engines).suggest_many(JOBS)
        worker._loaded = engines.kb_version  # so the first batch goes without the KB
        assert await worker.suggest_many(JOBS) == expected
        assert worker.restarts == 1 and "StaleWorker" in caplog.text
        assert await worker.suggest_many(JOBS) == expected and worker.worker_pids()
    finally:
        await worker.close()


KILLED_HUB = """
import asyncio, os, signal, sys
from chatserver.assist import ProcessSuggester
from chatserver.engines import Engines
from chatserver.storage.sql import open_store

async def main():
    store = open_store(sys.argv[1])
    await store.start()
    engines = Engines(store)
    await engines.load()
    worker = ProcessSuggester(engines)
    await worker.suggest_many([("两融怎么开通", None)])
    print(worker.worker_pids()[0], flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_the_worker_exits_when_its_hub_is_killed(tmp_path):
    script = tmp_path / "killed_hub.py"
    script.write_text(KILLED_HUB)
    # (A worker left behind would also hold the captured stdout open: run() would time out.)
    out = subprocess.run([sys.executable, str(script), f"sqlite+aiosqlite:///{tmp_path / 'k.sqlite3'}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == -signal.SIGKILL, out.stderr
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"suggestion worker {pid} outlived its killed hub")


def test_a_worker_without_the_version_asked_for_says_so():
    with pytest.raises(StaleWorker):
        suggest_in_worker(10**9, None, None, [("开户", None)])  # type: ignore[arg-type]


def test_assist_settings_are_checked():
    with pytest.raises(SettingsError, match="assist_workers"):
        Settings(assist_workers=2).validate()
    with pytest.raises(SettingsError, match="assist_gather_ms"):
        Settings(assist_gather_ms=-1).validate()
    assert Settings().assist_workers == 1


async def test_suggestions_reach_the_advisor_from_the_worker_and_in_process(hub_factory):
    for workers in (1, 0):
        hub = await hub_factory(assist_workers=workers)
        advisor = await hub.connect("advisor1")
        investor, cid = await hub.human_chat(advisor)
        asked = await investor.say(cid, "两融怎么开通")
        mid = asked["message_id"]
        event = await advisor.next_event(lambda e, mid=mid: e["type"] == "suggestions" and e["for_message"] == mid)
        assert any(item["category"] == "margin" for item in event["items"])
        suggester = hub.services.hub.suggester
        assert isinstance(suggester, ProcessSuggester if workers else InlineSuggester)
        if workers:
            assert suggester.worker_pids()
