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
