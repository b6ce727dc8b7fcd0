"""Fixtures for the cluster suite: real hub processes sharing one PostgreSQL database and Redis.

Each test module gets one cluster (`module_cluster`): a fresh database and its own Redis key
prefix, shared by the module's tests in order (a later test sees the leader, closed chats and
advisors' grace periods an earlier one left; each test closes its own clients). Every process
and key is removed after the module, so runs never see each other.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from chatserver.client import HubClient, get_token

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "demo1234"
REQUIRE_SERVICES = os.environ.get("CHATSERVER_REQUIRE_SERVICES") == "1"
PG_HOST = os.environ.get("CHATSERVER_TEST_PG_HOST", "127.0.0.1")
PG_USER = os.environ.get("CHATSERVER_TEST_PG_USER", "postgres")
REDIS_URL = os.environ.get("CHATSERVER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def need_service(name: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=1):
            return
    except OSError:
        pass
    message = f"{name} is not reachable at {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and CHATSERVER_REQUIRE_SERVICES=1")
    pytest.skip(message + " (set CHATSERVER_REQUIRE_SERVICES=1 to fail instead)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    """One hub process of the cluster."""

    port: int
    data_dir: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / "node.log").open("ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def wait_ready(self, within: float = 60.0) -> None:
        """Blocks (used while no event loop runs, or before any client exists)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.alive, f"node {self.port} exited\n{self.log_tail()}"
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"node on {self.port} not ready in {within}s\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        path = self.data_dir / "node.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    async def get(self, path: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.get(self.url + path) as response:
            text = await response.text()
            try:
                return response.status, await response.json(content_type=None)
            except ValueError:
                return response.status, text

    async def metric(self, name: str) -> float:
        _, text = await self.get("/metrics")
        for line in str(text).splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(name)


@dataclass
class Cluster:
    """Hub processes on one fresh PostgreSQL database and one Redis key prefix."""

    database_url: str
    database_name: str
    prefix: str
    tmp: Path
    flags: tuple[str, ...]
    nodes: list[Node] = field(default_factory=list)
    clients: list[HubClient] = field(default_factory=list)

    def add_node(self) -> Node:
        """Spawn one more node (not waited for: call wait_ready)."""
        port = free_port()
        data_dir = self.tmp / f"node{len(self.nodes)}"
        args = [
            sys.executable, "-m", "chatserver", "--port", str(port), "--data-dir", str(data_dir),
            "--database-url", self.database_url, "--redis-url", REDIS_URL,
            "--redis-prefix", self.prefix, "--no-log-json", *self.flags, "serve",
        ]  # fmt: skip
        node = Node(port, data_dir, args)
        node.spawn()
        self.nodes.append(node)
        return node

    async def restart(self, node: Node, within: float = 60.0) -> None:
        node.spawn()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert node.alive, node.log_tail()
            try:
                if (await node.get("/readyz"))[0] == 200:
                    return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise TimeoutError(f"node {node.port} not ready after restart\n{node.log_tail()}")

    async def client(self, node: Node, username: str | None = None) -> HubClient:
        token, _ = await get_token(node.url, username, PASSWORD if username else None)
        client = await HubClient.connect(node.url, token)
        self.clients.append(client)
        return client

    async def leader(self, within: float = 20.0) -> Node:
        """The node that says it holds the routing lease (waits for an election)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for node in self.nodes:
                if not node.alive:
                    continue
                try:
                    _, body = await node.get("/readyz")
                except aiohttp.ClientError:
                    continue
                if isinstance(body, dict) and body.get("routing") == "leader":
                    return node
            await asyncio.sleep(0.2)
        raise TimeoutError("no routing leader elected")

    async def sql(self, query: str, *args: Any) -> list[Any]:
        import asyncpg

        conn = await asyncpg.connect(host=PG_HOST, user=PG_USER, database=self.database_name)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    @staticmethod
    async def handed_over(
        investor: HubClient, group: str = "general", question: str = "我想找人工客服咨询"
    ) -> str:
        """Start a chat in `group` and ask for a human; returns the conversation id."""
        conv = (await investor.request({"type": "start", "group": group}))["conversation"]
        await investor.say(conv["id"], question)
        await investor.request({"type": "handoff", "conversation_id": conv["id"]})
        return str(conv["id"])

    async def close_clients(self) -> None:
        clients, self.clients = self.clients, []
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    def stop(self) -> None:
        for node in self.nodes:
            node.terminate()
        asyncio.run(_drop_database(self.database_name))
        asyncio.run(delete_keys(self.prefix))


def start_cluster(tmp: Path, n: int, *flags: str, together: bool = False) -> Cluster:
    need_service("Redis", "127.0.0.1", 6379)
    need_service("PostgreSQL", PG_HOST, 5432)
    name = f"cs_cluster_{uuid.uuid4().hex[:16]}"
    asyncio.run(_create_database(name))
    url = f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:5432/{name}"
    c = Cluster(url, name, f"cstest:{uuid.uuid4().hex[:10]}:", tmp, flags)
    try:
        # The first node creates the schema; the others then start together (concurrent demo
        # seeding included, which must not fail).
        if together:  # all at once on the empty database: migrations and seeding race
            for node in [c.add_node() for _ in range(n)]:
                node.wait_ready()
        else:
            c.add_node().wait_ready()
            rest = [c.add_node() for _ in range(n - 1)]
            for node in rest:
                node.wait_ready()
    except BaseException:
        c.stop()
        raise
    return c


async def _create_database(name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(host=PG_HOST, user=PG_USER, database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def _drop_database(name: str) -> None:
    import asyncpg

    for _ in range(150):  # PostgreSQL may still be restarting after the outage test
        try:
            admin = await asyncpg.connect(host=PG_HOST, user=PG_USER, database="postgres")
            break
        except (OSError, asyncpg.PostgresError):
            await asyncio.sleep(0.2)
    else:
        return
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def delete_keys(prefix: str) -> None:
    for _ in range(150):
        try:
            redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
            try:
                keys = [k async for k in redis.scan_iter(match=prefix + "*", count=1000)]
                if keys:
                    await redis.delete(*keys)
            finally:
                await redis.aclose()
            return
        except (OSError, aioredis.ConnectionError):
            await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
def module_cluster(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    """One cluster shared by a test module; its flags come from the module's CLUSTER_FLAGS."""
    n = getattr(request.module, "CLUSTER_NODES", 3)
    flags = getattr(request.module, "CLUSTER_FLAGS", ())
    together = getattr(request.module, "CLUSTER_START_TOGETHER", False)
    c = start_cluster(tmp_path_factory.mktemp("cluster"), n, *flags, together=together)
    yield c
    c.stop()


@pytest.fixture
async def cluster(module_cluster: Cluster) -> AsyncIterator[Cluster]:
    yield module_cluster
    await module_cluster.close_clients()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A Redis key prefix of this test's own, with its keys deleted afterwards."""
    need_service("Redis", "127.0.0.1", 6379)
    prefix = f"cstest:{uuid.uuid4().hex[:10]}:"
    yield prefix
    await delete_keys(prefix)
