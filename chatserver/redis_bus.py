"""The Bus across several hub nodes: local delivery first, then Redis pub/sub to the other nodes.

Only what another node listens to crosses Redis: every node keeps its topics in a Redis set
(`interest:<node>`) and announces each change on the `interest` channel, so a publisher knows
which topics some other node subscribes to. A chat whose investor and advisor are on one node,
or a conversation nobody watches elsewhere, costs Redis nothing.

Keeps serving local subscribers while Redis is unreachable (degraded) and reports a dead or
stale subscription (Redis up, our subscription not receiving) as unhealthy so /readyz says 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
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
# Commands (or pipelines) one client has in flight at once; more wait their turn. redis-py's pool
# refuses the 101st concurrent command ("Too many connections") and a burst of topic changes
# (hundreds of sockets opening or closing at once) was taken for Redis being down. The bound is
# a semaphore in front of redis-py's pool rather than its BlockingConnectionPool: the pool stays
# as redis-py tests it, and a caller cancelled before its turn never touches it.
REDIS_COMMANDS_AT_ONCE = 64
# A command's (or pipeline's) time limit on non-blocking clients, kept by asyncio.timeout around
# the call rather than redis-py's socket_timeout: with the socket timeout redis-py lost the
# cancel of a task cancelled mid-command in up to 99 of 100 trials (the task carried on; a
# node's shutdown hung on it), with asyncio.timeout in 0 of 100 (docs/benchmarks/pipeline.md,
# twelfth session).
COMMAND_TIMEOUT_S = 2.0
INTEREST_TTL_MS = 15_000  # a node's topic set outlives it this long; refreshed with every ping
NODES_CHECK_EVERY_S = 10.0  # how often the topic sets of nodes that died are forgotten
ANNOUNCE_ECHO_S = 1.0  # subscribe() waits at most this long for its announcement to come back


def new_node_id() -> str:
    return uuid.uuid4().hex[:12]


def redis_client(url: str, *, blocking: bool = False, name: str | None = None) -> aioredis.Redis:
    """A client that fails fast: no silent retries, short connect timeout.

    redis-py would otherwise reconnect and resubscribe behind our back, hiding the outage
    this bus must notice and report. Blocking clients (BLPOP) get no time limit, others
    COMMAND_TIMEOUT_S per command. At most REDIS_COMMANDS_AT_ONCE commands run at once; a burst
    queues, it does not fail."""
    client = _QueuingRedis.from_url(
        url,
        socket_connect_timeout=1.0,
        socket_timeout=None,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        health_check_interval=0,
        client_name=name,
    )
    client.slots = asyncio.Semaphore(REDIS_COMMANDS_AT_ONCE)
    client.command_timeout = None if blocking else COMMAND_TIMEOUT_S
    return client


class _QueuingRedis(aioredis.Redis):
    """A client whose commands and pipelines take one of `slots` while they run, each within
    `command_timeout` (a timeout raises TimeoutError, an OSError like a dead socket's)."""

    slots: asyncio.Semaphore
    command_timeout: float | None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        async with self.slots, asyncio.timeout(self.command_timeout):
            return await super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Any:
        pipe = _QueuingPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.slots, pipe.command_timeout = self.slots, self.command_timeout
        return pipe


class _QueuingPipeline(Pipeline):
    slots: asyncio.Semaphore
    command_timeout: float | None

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        async with self.slots, asyncio.timeout(self.command_timeout):
            return await super().execute(raise_on_error)


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
        # Other nodes' topics: node -> topics, and topic -> how many other nodes listen.
        self._interest: dict[str, set[str]] = {}
        self._remote: dict[str, int] = {}
        self._echoes: dict[str, asyncio.Future[None]] = {}  # our announcements on their way back
        self._background: set[asyncio.Task[None]] = set()
        self.sent_remote = 0  # events handed to Redis (for tests and metrics)
        self._on_redis: set[str] = set()  # topics subscribed on Redis and announced
        self._topic_locks: dict[str, asyncio.Lock] = {}

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

    @property
    def _interest_channel(self) -> str:
        return f"{self.prefix}interest"

    def _interest_key(self, node: str) -> str:
        return f"{self.prefix}interest:{node}"

    def remote_interest(self, topic: str) -> bool:
        """Whether another node subscribes to `topic` (so publishing it goes through Redis)."""
        return self._remote.get(topic, 0) > 0

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
        for task in (self._sender, self._pinger, self._reader, *self._background):
            await stop_task(task)
        if not self._degraded:
            try:  # the others stop sending us our topics now rather than when the set expires
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.delete(self._interest_key(self.node_id))
                    pipe.publish(self._interest_channel, f"~|{self.node_id}")
                    await pipe.execute()
            except (RedisError, OSError):
                pass
        await self._drop_pubsub()
        await self._local.close()
        try:
            await self.redis.aclose()
        except (RedisError, OSError):
            pass

    async def _connect(self) -> bool:
        """Open a fresh subscription for every topic; False (and degraded) if Redis is down."""
        await self._drop_pubsub()
        # Idle pooled command sockets may date from before a Redis restart; with no retries each
        # would fail the first command it carries (an event batch, a routing push): start afresh.
        with contextlib.suppress(RedisError, OSError):
            await self.redis.connection_pool.disconnect(inuse_connections=False)
        # Named, so an operator (or a test) can find this node's subscription in CLIENT LIST.
        client = redis_client(self.url, blocking=True, name=f"{self.prefix}sub:{self.node_id}")
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(self._ping_channel, self._interest_channel,
                                   *(self.channel(t) for t in self._local.topics()))
            await self.redis.publish(self._ping_channel, "hello")
            # Subscribed to the announcements before reading the sets: a change made after the
            # read arrives as an announcement, one made before is in the sets.
            self._on_redis = set(self._local.topics())
            await self._register()
            await self._load_interest()
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

    async def _register(self) -> None:
        """Write this node's topic set afresh and tell the others to read it."""
        key = self._interest_key(self.node_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            topics = self._local.topics()
            if topics:
                pipe.sadd(key, *topics)
            pipe.pexpire(key, INTEREST_TTL_MS)
            pipe.publish(self._interest_channel, f"!|{self.node_id}")
            await pipe.execute()

    async def _load_interest(self) -> None:
        """Every other live node's topics, read from their sets (replaces what we knew)."""
        prefix = self._interest_key("")
        interest: dict[str, set[str]] = {}
        async for key in self.redis.scan_iter(match=prefix + "*", count=500):
            node = key[len(prefix):]
            if node != self.node_id:
                interest[node] = {str(t) for t in await self.redis.smembers(key)}
        self._interest = interest
        self._recount()

    def _recount(self) -> None:
        remote: dict[str, int] = {}
        for topics in self._interest.values():
            for topic in topics:
                remote[topic] = remote.get(topic, 0) + 1
        self._remote = remote

    def _on_interest(self, data: str) -> None:
        kind, _, rest = data.partition("|")
        node, _, topic = rest.partition("|")
        if node == self.node_id:
            echo = self._echoes.pop(topic, None)
            if echo is not None and not echo.done():
                echo.set_result(None)
            return
        topics = self._interest.setdefault(node, set())
        if kind == "+" and topic not in topics:
            topics.add(topic)
            self._remote[topic] = self._remote.get(topic, 0) + 1
        elif kind == "-" and topic in topics:
            topics.discard(topic)
            self._remote[topic] -= 1
        elif kind == "~":
            del self._interest[node]
            self._recount()
        elif kind == "!":
            # The node (re)registered: add its set. Topics it dropped meanwhile stay counted,
            # which costs extra sends but never misses one, until it says "-" or leaves.
            self._spawn(self._read_node(node))

    async def _read_node(self, node: str) -> None:
        try:
            topics = await self.redis.smembers(self._interest_key(node))
        except (RedisError, OSError):
            return  # a reconnect reloads every set
        self._interest.setdefault(node, set()).update(str(t) for t in topics)
        self._recount()

    async def _forget_dead_nodes(self) -> None:
        nodes = list(self._interest)
        if not nodes:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for node in nodes:
                pipe.exists(self._interest_key(node))
            alive = await pipe.execute()
        dead = [node for node, exists in zip(nodes, alive, strict=True) if not exists]
        for node in dead:
            self._interest.pop(node, None)
        if dead:
            self._recount()

    async def _announce(self, kind: str, topic: str) -> None:
        """Record a change of this node's topics in its set, then announce it (in that order)."""
        key = self._interest_key(self.node_id)
        echo = asyncio.get_running_loop().create_future() if kind == "+" else None
        if echo is not None:
            self._echoes[topic] = echo
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                if kind == "+":
                    pipe.sadd(key, topic)
                else:
                    pipe.srem(key, topic)
                pipe.publish(self._interest_channel, f"{kind}|{self.node_id}|{topic}")
                await pipe.execute()
        except BaseException:
            self._echoes.pop(topic, None)  # no announcement went out: nothing will come back
            raise
        if echo is not None:
            # When our own announcement is back, every other node has been sent it too.
            try:
                await asyncio.wait_for(echo, ANNOUNCE_ECHO_S)
            except TimeoutError:
                self._echoes.pop(topic, None)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
        if channel == self._interest_channel:
            self._on_interest(data)
            return
        origin, _, payload = data.partition("|")
        if origin == self.node_id:
            return  # already delivered locally when it was published
        topic = channel[len(self.prefix) + 4 :]
        self.deliver_local(topic, payload)

    async def _ping_loop(self) -> None:
        checked = time.monotonic()
        while not self._closing:  # also on the flag, should a cancel be lost (cluster.py)
            await asyncio.sleep(PING_EVERY_S)
            if self._pubsub is None:
                continue
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.publish(self._ping_channel, "ping")
                    pipe.pexpire(self._interest_key(self.node_id), INTEREST_TTL_MS)
                    await pipe.execute()
                if time.monotonic() - checked > NODES_CHECK_EVERY_S:
                    checked = time.monotonic()
                    await self._forget_dead_nodes()
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
        if not self._remote.get(topic):
            return  # no other node listens
        self.sent_remote += 1
        if len(self._outbox) >= OUTBOX_MAX:
            self._outbox.popleft()  # Redis far behind: drop the oldest, resume recovers it
            self.dropped += 1
        # One sender pipelines whatever queued meanwhile: the caller never waits on Redis, and
        # one node's events keep their order.
        self._outbox.append((self.channel(topic), f"{self.node_id}|{payload}"))
        self._outbox_ready.set()

    async def _send_loop(self) -> None:
        while not self._closing or self._outbox:
            if not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
            batch = [self._outbox.popleft() for _ in range(min(len(self._outbox), 512))]
            try:
                await self._send(batch)
            except (RedisError, OSError) as exc:
                if not await self._redis_answers():
                    self._mark_down(exc)
                    self._outbox.clear()
                    continue
                # Redis answers: that socket was bad (redis-py closed it). Once more on another,
                # then the batch counts as dropped (the epoch moves on; resume recovers it).
                try:
                    await self._send(batch)
                except (RedisError, OSError) as again:
                    self.dropped += len(batch)
                    log.warning("%d events not sent to redis: %s", len(batch), again)

    async def _send(self, batch: list[tuple[str, str]]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel, message in batch:
                pipe.publish(channel, message)
            await pipe.execute()

    def deliver_local(self, topic: str, payload: str) -> None:
        self._local.deliver_local(topic, payload)

    async def subscribe(self, topic: str, handler: Handler) -> None:
        first = topic not in self._local.topics()
        await self._local.subscribe(topic, handler)
        if first:
            await self._sync_topic(topic)

    async def unsubscribe(self, topic: str, handler: Handler) -> None:
        if topic not in self._local.topics():
            return
        await self._local.unsubscribe(topic, handler)
        if topic not in self._local.topics():  # the last local subscriber left
            await self._sync_topic(topic)

    async def _sync_topic(self, topic: str) -> None:
        """Bring Redis in line with the local subscribers of `topic`: subscribed and announced
        while there are any, neither once there are none. One change per topic at a time, so a
        socket closing and the same user's new socket opening cannot reach Redis (and the other
        nodes) in the wrong order."""
        lock = self._topic_locks.setdefault(topic, asyncio.Lock())
        try:
            async with lock:
                pubsub = self._pubsub
                if pubsub is None:
                    return  # the reconnect subscribes and registers every local topic
                wanted = topic in self._local.topics()
                if wanted == (topic in self._on_redis):
                    return
                try:
                    if wanted:
                        # Listening first, then telling the others: whatever they send once
                        # they know reaches us.
                        await pubsub.subscribe(self.channel(topic))
                        self._on_redis.add(topic)
                        await self._announce("+", topic)
                    else:
                        self._on_redis.discard(topic)
                        await self._announce("-", topic)
                        await pubsub.unsubscribe(self.channel(topic))
                except (RedisError, OSError) as exc:
                    await self._lost(exc)
        finally:
            if not lock.locked() and self._topic_locks.get(topic) is lock and not getattr(lock, "_waiters", None):
                del self._topic_locks[topic]

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
