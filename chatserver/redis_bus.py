"""The Bus across several hub nodes: local delivery first, then Redis pub/sub to every other node.

Keeps serving local subscribers while Redis is unreachable (degraded) and reports a dead or
stale subscription (Redis up, our subscription not receiving) as unhealthy so /readyz says 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from chatserver.bus import Handler, LocalBus
from chatserver.tasks import stop_task, wait_event

log = logging.getLogger("chatserver.redis_bus")

PING_EVERY_S = 1.0
STALE_AFTER_S = 3.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 8.0
OUTBOX_MAX = 100_000


def new_node_id() -> str:
    return uuid.uuid4().hex[:12]


def redis_client(url: str, *, blocking: bool = False, name: str | None = None) -> aioredis.Redis:
    """A client that fails fast: no silent retries, short connect timeout.

    redis-py would otherwise reconnect and resubscribe behind our back, hiding the outage
    this bus must notice and report. Blocking clients (BLPOP) get no read timeout."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=1.0,
        socket_timeout=None if blocking else 2.0,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        health_check_interval=0,
        client_name=name,
    )


class RedisBus:
    """Bus protocol on Redis pub/sub with one subscription connection per node."""

    def __init__(
        self, url: str, *, prefix: str = "chatserver:", node_id: str | None = None
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.node_id = node_id or new_node_id()
        self.redis = redis_client(url)
        self._local = LocalBus()  # this node's subscribers; Redis only carries what crosses nodes
        self._pubsub: Any = None
        self._sub_client: aioredis.Redis | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._outbox: deque[tuple[str, str]] = deque()
        self._outbox_ready = asyncio.Event()
        self.dropped = 0
        self._wake = asyncio.Event()
        self._connected = False
        self._degraded = False
        self._closing = False
        self._last_pong = 0.0
        self.reconnects = 0

    # -- state ---------------------------------------------------------------------------
    @property
    def degraded(self) -> bool:
        """Redis is unreachable: only this node's own connections are served."""
        return self._degraded

    @property
    def stale(self) -> bool:
        """Redis answers but our subscription does not deliver (dead, killed or lagging)."""
        if self._degraded:
            return False
        return not self._connected or time.monotonic() - self._last_pong > STALE_AFTER_S

    @property
    def healthy(self) -> bool:
        return not self.stale

    @property
    def state(self) -> str:
        if self._degraded:
            return "degraded"
        return "stale" if self.stale else "redis"

    def channel(self, topic: str) -> str:
        return f"{self.prefix}bus:{topic}"

    @property
    def _ping_channel(self) -> str:
        return f"{self.prefix}node:{self.node_id}"

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        await self._connect()
        self._reader = asyncio.create_task(self._read_loop(), name="redis-bus-reader")
        self._pinger = asyncio.create_task(self._ping_loop(), name="redis-bus-ping")
        self._sender = asyncio.create_task(self._send_loop(), name="redis-bus-sender")

    async def close(self) -> None:
        self._closing = True
        for _ in range(50):  # what this node published just before closing still goes out
            if not self._outbox or self._degraded:
                break
            await asyncio.sleep(0.01)
        for task in (self._sender, self._pinger, self._reader):
            await stop_task(task)
        await self._drop_pubsub()
        await self._local.close()
        try:
            await self.redis.aclose()
        except (RedisError, OSError):
            pass

    async def _connect(self) -> bool:
        """Open a fresh subscription for every topic; False (and degraded) if Redis is down."""
        await self._drop_pubsub()
        # Named, so an operator (or a test) can find this node's subscription in CLIENT LIST.
        client = redis_client(self.url, blocking=True, name=f"{self.prefix}sub:{self.node_id}")
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(self._ping_channel, *(self.channel(t) for t in self._local.topics()))
            await self.redis.publish(self._ping_channel, "hello")
        except (RedisError, OSError) as exc:
            await _quiet_close(pubsub, client)
            self._mark_down(exc)
            return False
        self._pubsub, self._sub_client = pubsub, client
        self._connected = True
        # Until the first self-ping comes back, the subscription is not proven: treat as fresh
        # for one stale window so a reconnect does not flap /readyz.
        self._last_pong = time.monotonic()
        if self._degraded:
            log.warning(
                "redis is back: node %s resubscribed %d topics", self.node_id, len(self._local.topics())
            )
        self._degraded = False
        return True

    async def _drop_pubsub(self) -> None:
        pubsub, client = self._pubsub, self._sub_client
        self._pubsub, self._sub_client, self._connected = None, None, False
        if pubsub is not None:
            await _quiet_close(pubsub, client)

    def _mark_down(self, exc: BaseException) -> None:
        if not self._degraded:
            log.warning(
                "redis unreachable (%s): node %s serves its own connections only", exc, self.node_id
            )
        self._degraded = True
        self._connected = False
        self._wake.set()

    async def _redis_answers(self) -> bool:
        try:
            await self.redis.ping()
            return True
        except (RedisError, OSError):
            return False

    # -- reading ---------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        backoff = BACKOFF_FIRST_S
        while not self._closing:
            if self._pubsub is None:
                # Either Redis is down (degraded) or our subscription died while Redis is up
                # (stale, not ready): wait, then resubscribe everything.
                self._wake.clear()
                await wait_event(self._wake, backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
                if await self._connect():
                    self.reconnects += 1
                    backoff = BACKOFF_FIRST_S
                continue
            try:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=1.0
                )
            except (RedisError, OSError) as exc:
                await self._lost(exc)
                continue
            if message is not None:
                self._dispatch(message["channel"], message["data"])

    async def _lost(self, exc: BaseException) -> None:
        await self._drop_pubsub()
        if await self._redis_answers():
            log.warning(
                "redis subscription lost (%s) while redis answers: not ready until resubscribed",
                exc,
            )
        else:
            self._mark_down(exc)

    def _dispatch(self, channel: str, data: str) -> None:
        if channel == self._ping_channel:
            self._last_pong = time.monotonic()
            return
        origin, _, payload = data.partition("|")
        if origin == self.node_id:
            return  # already delivered locally when it was published
        topic = channel[len(self.prefix) + 4 :]
        self.deliver_local(topic, payload)

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(PING_EVERY_S)
            if self._pubsub is None:
                continue
            try:
                await self.redis.publish(self._ping_channel, "ping")
            except (RedisError, OSError) as exc:
                await self._lost(exc)
                continue
            if time.monotonic() - self._last_pong > STALE_AFTER_S and self._pubsub is not None:
                log.warning(
                    "redis subscription is stale (no self-ping for %.0fs): resubscribing",
                    STALE_AFTER_S,
                )
                await self._drop_pubsub()
                self._wake.set()

    @property
    def epoch(self) -> tuple[int, int] | None:
        """Names an unbroken stretch of other nodes' messages reaching this node (None while
        they may be missed): it changes with every resubscription and every dropped message."""
        if self.state != "redis":
            return None
        return (self.reconnects, self.dropped)

    # -- Bus protocol ------------------------------------------------------------------------
    async def publish(self, topic: str, payload: str) -> None:
        self.post(topic, payload)

    def post(self, topic: str, payload: str) -> None:
        """publish() for synchronous callers: it never waits on Redis anyway."""
        self.deliver_local(topic, payload)
        if self._degraded:
            return  # missed remotely; clients recover through resume (the database is the truth)
        if len(self._outbox) >= OUTBOX_MAX:
            self._outbox.popleft()  # Redis far behind: drop the oldest, resume recovers it
            self.dropped += 1
        # One sender pipelines whatever queued meanwhile: the caller never waits on Redis, and
        # one node's events keep their order.
        self._outbox.append((self.channel(topic), f"{self.node_id}|{payload}"))
        self._outbox_ready.set()

    async def _send_loop(self) -> None:
        while True:
            if not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
            batch = [self._outbox.popleft() for _ in range(min(len(self._outbox), 512))]
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for channel, message in batch:
                        pipe.publish(channel, message)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                if not await self._redis_answers():
                    self._mark_down(exc)
                    self._outbox.clear()

    def deliver_local(self, topic: str, payload: str) -> None:
        self._local.deliver_local(topic, payload)

    async def subscribe(self, topic: str, handler: Handler) -> None:
        first = topic not in self._local.topics()
        await self._local.subscribe(topic, handler)
        if first and self._pubsub is not None:
            try:
                await self._pubsub.subscribe(self.channel(topic))
            except (RedisError, OSError) as exc:
                await self._lost(exc)  # the reconnect subscribes every topic again

    async def unsubscribe(self, topic: str, handler: Handler) -> None:
        if topic not in self._local.topics():
            return
        await self._local.unsubscribe(topic, handler)
        if topic in self._local.topics():
            return  # other local subscribers remain
        if self._pubsub is not None:
            try:
                await self._pubsub.unsubscribe(self.channel(topic))
            except (RedisError, OSError) as exc:
                await self._lost(exc)

    def topics(self) -> set[str]:
        return self._local.topics()


async def _quiet_close(pubsub: Any, client: aioredis.Redis | None) -> None:
    for closing in (pubsub, client):
        if closing is None:
            continue
        try:
            await closing.aclose()
        except (RedisError, OSError, RuntimeError):
            pass
