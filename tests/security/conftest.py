"""Helpers for the security suite: the documented access matrix and raw WebSocket access.

Every test under tests/security/ is marked `security` here, so `pytest -m security` runs them all.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets

SECURITY_DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
ROLES = ("anonymous", "investor", "advisor", "supervisor", "admin")
LOGINS = {
    "investor": "investor1",
    "advisor": "advisor1",
    "supervisor": "supervisor1",
    "admin": "admin",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if Path(str(item.fspath)).resolve().parent == here:
            item.add_marker(pytest.mark.security)


def matrix_rows() -> tuple[dict[tuple[str, str], frozenset[str]], dict[str, frozenset[str]]]:
    """The two access tables of docs/security.md: HTTP (method, path) and WS frame -> roles allowed."""
    http: dict[tuple[str, str], frozenset[str]] = {}
    frames: dict[str, frozenset[str]] = {}
    for line in SECURITY_DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6 or not re.fullmatch(r"`[^`]+`", cells[0]):
            continue
        allowed = frozenset(
            role for role, cell in zip(ROLES, cells[1:], strict=True) if cell == "✓"
        )
        key = cells[0].strip("`")
        if " " in key:
            method, path = key.split(" ", 1)
            http[(method, path)] = allowed
        else:
            frames[key] = allowed
    return http, frames


def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + "/ws"


async def raw_auth(base_url: str, token: str, **connect: Any) -> Any:
    """A bare `websockets` connection that has sent its auth frame and read auth_ok."""
    ws = await websockets.connect(ws_url(base_url), ping_interval=None, **connect)
    await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
    first = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
    assert first["type"] == "auth_ok", first
    return ws


async def read_until_closed(ws: Any, wait_s: float = 10.0) -> list[dict[str, Any]]:
    """Every event the server sent until it closed the socket."""
    events = []
    try:
        while True:
            raw = await asyncio.wait_for(ws.recv(), wait_s)
            events.append(orjson.loads(raw))
    except websockets.ConnectionClosed:
        pass
    return events


@pytest.fixture
def sec() -> Any:
    """This module, so test files (imported in importlib mode) reach the helpers above."""
    import sys

    return sys.modules[__name__]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HubProcess:
    """`python -m chatserver ... serve` as a real child process, its log captured to a file."""

    def __init__(self, data_dir: Path, database_url: str, *extra: str, port: int | None = None):
        self.data_dir, self.database_url, self.extra = data_dir, database_url, extra
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / f"hub-{self.port}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, ready_timeout: float = 60.0) -> None:
        import sys

        import aiohttp

        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chatserver",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--database-url",
            self.database_url,
            *self.extra,
            "serve",
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = asyncio.get_running_loop().time() + ready_timeout
        async with aiohttp.ClientSession() as session:
            while True:
                assert self.proc.returncode is None, self.log_path.read_text(errors="replace")[
                    -3000:
                ]
                try:
                    async with session.get(self.base_url + "/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                assert asyncio.get_running_loop().time() < deadline, "hub did not become ready"
                await asyncio.sleep(0.2)

    def kill(self) -> None:
        import signal

        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@pytest.fixture
async def hub_processes() -> Any:
    """Start HubProcess objects through this list; whatever is still running is stopped after."""
    started: list[HubProcess] = []
    yield started
    for hub in started:
        await hub.stop()
