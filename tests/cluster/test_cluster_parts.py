"""Cluster building blocks in one process: RedisBus delivery, the store's circuit breaker, and
`serve --workers N` (refused without Redis; on one SQLite file, seqs stay gap-free).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatserver.client import HubClient, get_token
from chatserver.redis_bus import RedisBus
from chatserver.storage.sql import StorageUnavailable, open_store

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
