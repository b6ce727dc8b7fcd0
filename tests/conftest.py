"""Shared fixtures: a real hub on a loopback port, real SQLite files, real PostgreSQL and Redis.

Tests needing PostgreSQL or Redis skip with a reason when they are down, unless
CHATSERVER_REQUIRE_SERVICES=1 (CI), where they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from chatserver.app import SERVICES, Services, create_app
from chatserver.client import HubClient
from chatserver.settings import Settings

REQUIRE_SERVICES = os.environ.get("CHATSERVER_REQUIRE_SERVICES") == "1"
PG_HOST = os.environ.get("CHATSERVER_TEST_PG_HOST", "127.0.0.1")
PG_USER = os.environ.get("CHATSERVER_TEST_PG_USER", "postgres")
REDIS_URL = os.environ.get("CHATSERVER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PASSWORD = "demo1234"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and CHATSERVER_REQUIRE_SERVICES=1")
    pytest.skip(message + " (set CHATSERVER_REQUIRE_SERVICES=1 to fail instead)")


@asynccontextmanager
async def fresh_pg_database() -> AsyncIterator[str]:
    """A brand-new PostgreSQL database for one test, dropped afterwards."""
    import asyncpg

    need_service("PostgreSQL", PG_HOST, 5432)
    name = f"cs_test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(host=PG_HOST, user=PG_USER, database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:5432/{name}"
    finally:
        admin = await asyncpg.connect(host=PG_HOST, user=PG_USER, database="postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Each test using this runs twice: on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}"
    else:
        async with fresh_pg_database() as url:
            yield url


@dataclass
class Hub:
    """A running hub and the ways a test talks to it."""

    base_url: str
    services: Services
    session: aiohttp.ClientSession
    _clients: list[HubClient]

    async def http(self, method: str, path: str, body: Any = None, token: str | None = None,
                   *, raw: bytes | str | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {"headers": hdrs}
        if raw is not None:
            kwargs["data"] = raw
        elif body is not None:
            kwargs["json"] = body
        async with self.session.request(method, self.base_url + path, **kwargs) as response:
            text = await response.text()
            try:
                return response.status, await response.json(content_type=None) if text else None
            except ValueError:
                return response.status, text

    async def token(self, username: str | None = None, password: str = PASSWORD) -> str:
        if username is None:
            status, body = await self.http("POST", "/api/visitor", {"name": "测试访客"})
        else:
            status, body = await self.http("POST", "/api/login", {"username": username, "password": password})
        assert status == 200, body
        return str(body["token"])

    async def connect(self, username: str | None = None, token: str | None = None) -> HubClient:
        client = await HubClient.connect(self.base_url, token or await self.token(username))
        self._clients.append(client)
        return client

    async def investor(self, username: str | None = None) -> tuple[HubClient, dict[str, Any]]:
        """A connected investor with a started conversation (bot greeting already sent)."""
        client = await self.connect(username)
        conv = await client.start()
        return client, conv

    async def human_chat(self, advisor: HubClient, investor_username: str | None = None,
                         question: str = "我想咨询一下我的账户问题") -> tuple[HubClient, str]:
        """An investor whose chat has been handed to `advisor` (who must be the only one online)."""
        investor, conv = await self.investor(investor_username)
        await investor.say(conv["id"], question)
        await investor.request({"type": "handoff", "conversation_id": conv["id"]})
        await advisor.next_event(lambda e: e["type"] == "assigned" and e["conversation"]["id"] == conv["id"])
        return investor, conv["id"]


@pytest.fixture
async def hub_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Hub]]]:
    servers: list[TestServer] = []
    hubs: list[Hub] = []
    session = aiohttp.ClientSession()

    async def make(**overrides: Any) -> Hub:
        data_dir = tmp_path / f"hub{len(servers)}"
        settings = Settings(**{"data_dir": str(data_dir), "demo": True, "log_json": False, **overrides})
        app = create_app(settings)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        hub = Hub(str(server.make_url("")).rstrip("/"), app[SERVICES], session, [])
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        await asyncio.gather(*(c.close() for c in hub._clients), return_exceptions=True)
    for server in servers:
        await server.close()
    await session.close()


@pytest.fixture
async def hub(hub_factory: Callable[..., Awaitable[Hub]]) -> Hub:
    return await hub_factory()


@pytest.fixture
async def any_hub(hub_factory: Callable[..., Awaitable[Hub]], db_url: str) -> Hub:
    """The same hub on SQLite and on PostgreSQL (the test runs once per backend)."""
    return await hub_factory(database_url=db_url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
