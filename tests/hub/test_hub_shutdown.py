"""Operations on a real server process: readiness, graceful shutdown with 1001, data kept."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from chatserver.client import HubClient, get_token


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "chatserver", "--port", str(port), "--data-dir", str(data_dir), "--no-log-json", "serve"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def wait_ready(port: int, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                import json

                return json.loads(response.read())
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("server never became ready")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_sigterm_closes_sockets_with_1001_and_keeps_every_acked_message(tmp_path):
    port = _free_port()
    server = start_server(tmp_path, port)
    try:
        ready = await asyncio.to_thread(wait_ready, port)
        assert ready["status"] == "ready" and ready["database"] is True
        url = f"http://127.0.0.1:{port}"
        token, _ = await get_token(url)
        client = await HubClient.connect(url, token)
        conv = await client.start()
        acked = [await client.say(conv["id"], f"关机前第{i}条") for i in range(5)]
        server.send_signal(signal.SIGTERM)
        code, reason = await asyncio.wait_for(client.closed, 15)
        assert code == 1001, (code, reason)
        assert await asyncio.to_thread(server.wait, 20) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    output = server.stdout.read().decode() if server.stdout else ""
    assert "Traceback" not in output, output
    db = sqlite3.connect(tmp_path / "chatserver.sqlite3")
    stored = {row[0] for row in db.execute("select id from messages where conversation_id = ?", (conv["id"],))}
    assert {a["message_id"] for a in acked} <= stored


async def test_an_engine_refresh_still_reading_at_shutdown_is_stopped_before_the_store_closes(tmp_path):
    """A bus notice's refresh still reading when the hub shuts down ends before the store
    closes, so its database connection goes back to the pool (dropped mid-read, it leaked one).
    It is let finish its read rather than cancelled in it: a read cancelled mid-flight left
    its connection to the garbage collector now and then (SQLAlchemy's "non-checked-in
    connection" warning at the end of a test run)."""
    from chatserver.app import close_services, open_services
    from chatserver.settings import Settings

    services = await open_services(Settings(data_dir=str(tmp_path)))
    pool = services.store.engine.pool
    try:
        services.engines.refresh_soon()
        await asyncio.sleep(0)  # the refresh is in its first read
        refreshing = [t for t in asyncio.all_tasks() if t.get_name() == "engines-refresh"]
        assert len(refreshing) == 1 and not refreshing[0].done()
        assert pool.checkedout() == 1
    finally:
        await close_services(services)
    assert refreshing[0].done() and not refreshing[0].cancelled()
    assert pool.checkedout() == 0


async def test_an_engine_refresh_that_cannot_read_is_logged_and_the_engines_stay(tmp_path, caplog):
    from chatserver.app import close_services, open_services
    from chatserver.settings import Settings

    services = await open_services(Settings(data_dir=str(tmp_path)))
    try:
        versions = services.engines.status()
        for _ in range(services.store.breaker.failures):
            services.store.breaker.failed()  # the database is down: reads fail at once
        services.engines.refresh_soon()
        refreshing = [t for t in asyncio.all_tasks() if t.get_name() == "engines-refresh"]
        await asyncio.wait(refreshing, timeout=5)
        assert "engines not refreshed" in caplog.text and "circuit open" in caplog.text
        assert services.engines.status() == versions and services.engines.bot is not None
    finally:
        services.store.breaker.succeeded()
        await close_services(services)


async def test_stopping_a_task_that_swallows_its_cancel_gives_up_after_the_bound(caplog):
    """A loop that swallowed its cancellation (seen once in the cluster's presence loop after a
    loaded run) is logged and left behind instead of hanging the node's shutdown; a task that
    honours its cancel is waited for as before."""
    import asyncio

    from chatserver.tasks import stop_task

    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue  # the fault: the cancel is eaten and the loop goes on

    rogue = asyncio.create_task(stubborn(), name="stubborn")
    polite = asyncio.create_task(asyncio.sleep(10), name="polite")
    await asyncio.sleep(0)
    started = asyncio.get_running_loop().time()
    await stop_task(rogue, within=0.2)
    assert 0.15 < asyncio.get_running_loop().time() - started < 2
    assert not rogue.done()
    assert "task stubborn did not stop within 0.2 s" in caplog.text
    await stop_task(polite, within=5)
    assert polite.cancelled()
    release.set()
    rogue.cancel()
    await asyncio.wait({rogue}, timeout=2)
    assert rogue.done()
