"""Routing across several hub nodes: one leader (a Redis lease) runs the Router, the rest forward.

Every node's hub talks to a ClusterAssignment with the same methods as Assignment. On the
leader it calls the routing core directly; elsewhere it pushes events to the leader's Redis
inbox (waiting for an answer where the caller needs one). Without Redis, each node routes its
own connections with a local core until Redis returns. See docs/deployment.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Gauge
from redis.exceptions import RedisError

from chatserver.assignment import Assignment
from chatserver.auth import Principal
from chatserver.protocol import ErrorCode, ProtocolError
from chatserver.storage.records import Conversation, Customer, User
from chatserver.storage.sql import SharedRows
from chatserver.tasks import stop_task
from routing import (
    AdvisorMetrics,
    AdvisorStatus,
    GroupMetrics,
    Offered,
    PoolWithdrawn,
    Router,
    RoutingError,
    RoutingMetrics,
)

if TYPE_CHECKING:
    from chatserver.hub import Hub
    from chatserver.redis_bus import RedisBus
    from chatserver.storage.sql import SQLStore

log = logging.getLogger("chatserver.cluster")

LEASE_MS = 5000
RENEW_EVERY_S = 1.0
PRESENCE_TTL_S = 15
PRESENCE_REFRESH_S = 5.0
PRESENCE_SWEEP_S = 2.0
# A chat queued this recently is left to its own submit, which may still be on its way (a
# database read behind it): adopting it then only logged a false "the router did not know".
ADOPT_AFTER_S = 3.0
# How long stop() waits for a cancelled loop. redis-py (5.2 to 8.1 tried) loses a cancel that
# arrives during a command on a client with a socket timeout: after loaded runs the presence
# loop was found asleep with its cancel lost and shutdown waited for ever. Our clients now time
# commands with asyncio.timeout instead (redis_bus.COMMAND_TIMEOUT_S); the loops also end on a
# flag, and this bound is the last resort (docs/benchmarks/pipeline.md, twelfth session).
STOP_WITHIN_S = 5.0
REPLY_TIMEOUT_S = 5.0
POOL_TOPIC = "cluster:pool"

# Renew only a lease we still hold: a node that lost it must never extend someone else's.
RENEW_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


# "node|n|conversation id": that node wrote the conversation's row, its n-th row write;
# "node|n|" (no id): the node's heartbeat, it has written n rows so far.
ROWS_TOPIC = "cluster:rows"
ROWS_HEARTBEAT_S = 2.0


class RowNotices:
    """Let every node cache conversation rows: each row write is announced, the others drop theirs.

    Saves the message path a database read per message on a cluster (see
    SQLStore.cache_conversations for what a cached row may and may not be used for). Each node
    numbers its row writes and says every ROWS_HEARTBEAT_S how many it has made, so a notice
    that never arrived (the writer's outbox overflowed, its sends failed, it lost Redis for a
    while) shows as a gap in the numbers within one heartbeat: the gap moves the cache's epoch
    on and the cache empties, as it does when this node's own subscription breaks.
    """

    def __init__(self, store: SQLStore, bus: RedisBus) -> None:
        self._store = store
        self._bus = bus
        self._origin = bus.node_id
        self._written = 0  # this node's row writes so far
        self._heard: dict[str, int] = {}  # other node -> the writes it has told us of
        self.gaps = 0  # times notices were found missing (for the epoch, tests and metrics)
        self._heartbeat: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._bus.subscribe(ROWS_TOPIC, self._on_notice)
        self._store.cache_conversations(shared=SharedRows(written=self._wrote, epoch=self.epoch))
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="row-notices")

    async def stop(self) -> None:
        await stop_task(self._heartbeat)

    def epoch(self) -> tuple[int, int, int] | None:
        bus_epoch = self._bus.epoch
        return None if bus_epoch is None else (*bus_epoch, self.gaps)

    def _wrote(self, conversation_id: str) -> None:
        self._written += 1
        self._bus.post(ROWS_TOPIC, f"{self._origin}|{self._written}|{conversation_id}")

    def _on_notice(self, payload: str) -> None:
        node, _, rest = payload.partition("|")
        number, _, conversation_id = rest.partition("|")
        if node == self._origin or not number.isdigit():
            return
        count = int(number)
        # A notice is the node's count-th write; a heartbeat says it has made count of them.
        before = count - 1 if conversation_id else count
        heard = self._heard.get(node)
        if (heard is None and before > 0) or (heard is not None and before > heard):
            # Writes we were never told of (or, from a node heard of for the first time, may
            # not have been: they predate its knowing that we listen).
            self.gaps += 1
        self._heard[node] = count if heard is None else max(heard, count)
        if conversation_id:
            self._store.forget_conversation(conversation_id)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(ROWS_HEARTBEAT_S)
            self._bus.post(ROWS_TOPIC, f"{self._origin}|{self._written}|")


class NodeGauges:
    """Per-node state for /metrics: bus, database circuit and routing leadership."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.bus_degraded = Gauge(
            "chatserver_bus_degraded",
            "1 while Redis is unreachable (local-only delivery)",
            registry=registry,
        )
        self.bus_stale = Gauge(
            "chatserver_bus_stale",
            "1 while Redis answers but our subscription does not deliver",
            registry=registry,
        )
        self.db_circuit_open = Gauge(
            "chatserver_database_circuit_open", "1 while the store fails fast", registry=registry
        )
        self.leader = Gauge(
            "chatserver_routing_leader",
            "1 if this node runs the Router (leader or local)",
            registry=registry,
        )

    def update(self, bus: Any, store: Any, assignment: Any) -> None:
        self.bus_degraded.set(1 if getattr(bus, "degraded", False) else 0)
        self.bus_stale.set(1 if getattr(bus, "stale", False) else 0)
        breaker = getattr(store, "breaker", None)
        self.db_circuit_open.set(1 if breaker is not None and breaker.is_open else 0)
        self.leader.set(1 if getattr(assignment, "routes_here", True) else 0)


def bus_state(bus: Any) -> str:
    """What /readyz reports for the bus: local, redis, degraded or stale."""
    return str(getattr(bus, "state", "local" if bus.healthy else "down"))


class LeaderAssignment(Assignment):
    """The routing core on the leader: also tells every node about pool offers (may_claim)."""

    def __init__(self, hub: Hub, cluster: ClusterAssignment) -> None:
        super().__init__(hub)
        self.cluster = cluster

    async def _offered(self, d: Offered) -> None:
        await super()._offered(d)
        await self.cluster.publish_pool(d.conversation_id, d.advisor_ids)

    async def _withdrawn(self, d: PoolWithdrawn) -> None:
        await super()._withdrawn(d)
        await self.cluster.publish_pool(d.conversation_id, ())

    async def closed(self, conversation_id: str) -> None:
        had_offer = conversation_id in self._offers
        await super().closed(conversation_id)
        if had_offer:
            await self.cluster.publish_pool(conversation_id, ())


class SnapshotRouter:
    """Stands in for the Router on a non-leader node: answers metrics() from the leader's snapshot."""

    def __init__(self) -> None:
        self.snapshot = RoutingMetrics(advisors={}, groups={})

    def metrics(self, now: float) -> RoutingMetrics:
        return self.snapshot


class ClusterAssignment:
    """The routing facade every node's hub uses when the bus is Redis."""

    def __init__(self, hub: Hub, bus: RedisBus) -> None:
        from chatserver.redis_bus import redis_client

        self.hub = hub
        self.bus = bus
        self.node_id = bus.node_id
        self.redis = bus.redis
        self._blocking = redis_client(bus.url, blocking=True)
        p = bus.prefix
        self.leader_key = f"{p}routing:leader"
        self.inbox_key = f"{p}routing:inbox"
        self.snapshot_key = f"{p}routing:snapshot"
        self.presence_prefix = f"{p}presence:"
        self.reply_prefix = f"{p}routing:reply:"
        self.core: LeaderAssignment | None = None
        self.mode = "follower"  # follower | leader | local (Redis unreachable)
        self._local: dict[str, int] = {}  # advisors connected to this node -> open sockets
        self._status: dict[str, str] = {}
        self._offers: dict[str, tuple[str, ...]] = {}
        self._names: dict[str, str] = {}
        self._snapshot = SnapshotRouter()
        self._tasks: list[asyncio.Task[None]] = []
        # Set by stop(): the loops also end on it, should a cancel be lost (see STOP_WITHIN_S).
        self._stopping = False
        self._inbox_task: asyncio.Task[None] | None = None
        self._switch = asyncio.Lock()
        self.elections_won = 0

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        for advisor in await self.hub.store.list_users("advisor"):
            self._names[advisor.id] = advisor.display_name
        await self.bus.subscribe(POOL_TOPIC, self._on_pool)
        await self._election_round()
        self._tasks = [
            asyncio.create_task(self._election_loop(), name="routing-election"),
            asyncio.create_task(self._presence_loop(), name="routing-presence"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            await stop_task(task, within=STOP_WITHIN_S)
        await self._step_down()
        with contextlib.suppress(RedisError, OSError):
            await self.redis.eval(RELEASE_LUA, 1, self.leader_key, self.node_id)  # type: ignore[misc]
            for advisor_id in self._local:
                await self.redis.delete(self._presence_key(advisor_id))
        with contextlib.suppress(RedisError, OSError):
            await self._blocking.aclose()

    @property
    def routes_here(self) -> bool:
        return self.core is not None

    # -- queries (any node) ------------------------------------------------------------------
    @property
    def router(self) -> Router | SnapshotRouter:
        return self.core.router if self.core is not None else self._snapshot

    def current_advisor(self, conv: Conversation) -> str | None:
        if self.core is not None:
            return self.core.current_advisor(conv)
        return conv.advisor_id

    def may_claim(self, advisor_id: str, conversation_id: str) -> bool:
        if self.core is not None:
            return self.core.may_claim(advisor_id, conversation_id)
        return advisor_id in self._offers.get(conversation_id, ())

    def pool_for(self, advisor_id: str) -> list[str]:
        if self.core is not None:
            return self.core.pool_for(advisor_id)
        return [cid for cid, who in self._offers.items() if advisor_id in who]

    def name_of(self, advisor_id: str | None) -> str | None:
        if self.core is not None and (name := self.core.name_of(advisor_id)):
            return name
        return self._names.get(advisor_id) if advisor_id else None

    # -- events from this node's hub ---------------------------------------------------------
    async def advisor_connected(self, user: User) -> None:
        self._names[user.id] = user.display_name
        self._local[user.id] = self._local.get(user.id, 0) + 1
        if self._local[user.id] > 1:
            return
        self._status[user.id] = AdvisorStatus.ONLINE.value
        await self._refresh_presence(user.id)
        await self._route("connected", {"advisor_id": user.id})

    async def advisor_disconnected(self, user_id: str) -> None:
        left = self._local.get(user_id, 1) - 1
        if left > 0:
            self._local[user_id] = left
            return
        self._local.pop(user_id, None)
        self._status.pop(user_id, None)
        with contextlib.suppress(RedisError, OSError):
            await self.redis.delete(self._presence_key(user_id))
        await self._route("disconnected", {"advisor_id": user_id})

    async def set_presence(self, user_id: str, status: str) -> None:
        await self._route("presence", {"advisor_id": user_id, "status": status}, wait=True)
        if user_id in self._local:
            self._status[user_id] = status
            await self._refresh_presence(user_id)

    async def submit(
        self, conv: Conversation, customer: Customer | None, *, requeued: bool = False
    ) -> None:
        if self.core is not None:
            await self.core.submit(conv, customer, requeued=requeued)
        else:
            await self._route("submit", {"conversation_id": conv.id, "requeued": requeued})

    async def closed(self, conversation_id: str) -> None:
        self._offers.pop(conversation_id, None)
        if self.core is not None:
            await self.core.closed(conversation_id)
        else:
            await self._route("closed", {"conversation_id": conversation_id})

    async def responded(self, conversation_id: str, advisor_id: str) -> None:
        await self._route(
            "responded", {"conversation_id": conversation_id, "advisor_id": advisor_id}
        )

    async def claim(self, who: Principal, conversation_id: str) -> None:
        if who.role != "advisor":
            raise ProtocolError(ErrorCode.FORBIDDEN, "only advisors claim chats")
        await self._route(
            "claim", {"who": dataclasses.asdict(who), "conversation_id": conversation_id}, wait=True
        )

    async def transfer(
        self,
        who: Principal,
        conversation_id: str,
        to_advisor: str | None,
        to_group: str | None,
        note: str | None,
    ) -> None:
        await self._route(
            "transfer",
            {
                "who": dataclasses.asdict(who),
                "conversation_id": conversation_id,
                "to_advisor": to_advisor,
                "to_group": to_group,
                "note": note,
            },
            wait=True,
        )

    async def reassign(self, who: Principal, conversation_id: str, advisor_id: str) -> None:
        if who.role not in ("supervisor", "admin"):
            raise ProtocolError(ErrorCode.FORBIDDEN, "only supervisors reassign chats")
        await self._route(
            "reassign",
            {
                "who": dataclasses.asdict(who),
                "conversation_id": conversation_id,
                "advisor_id": advisor_id,
            },
            wait=True,
        )

    # -- forwarding ----------------------------------------------------------------------------
    async def _route(self, op: str, args: dict[str, Any], *, wait: bool = False) -> None:
        core = self.core
        if core is not None:
            await self._run(core, op, args)
            return
        item: dict[str, Any] = {"op": op, "args": args, "node": self.node_id}
        reply_key = None
        if wait:
            reply_key = item["reply"] = f"{self.reply_prefix}{uuid.uuid4().hex}"
        try:
            await self.redis.lpush(self.inbox_key, json.dumps(item))  # type: ignore[misc]
            if reply_key is None:
                return
            async with asyncio.timeout(REPLY_TIMEOUT_S + 2):
                answer = await self._blocking.blpop([reply_key], timeout=REPLY_TIMEOUT_S)  # type: ignore[misc]
        except (RedisError, OSError, TimeoutError) as exc:
            if not wait:
                log.warning(
                    "routing event %s lost (redis: %s); the next leader rebuilds from the database",
                    op,
                    exc,
                )
                return
            raise _unavailable("routing is unavailable; retry") from exc
        if answer is None:
            raise _unavailable("the routing leader did not answer in time; retry")
        result = json.loads(answer[1])
        if result.get("error"):
            err = result["error"]
            raise ProtocolError(
                ErrorCode(err["code"]),
                err["message"],
                field=err.get("field"),
                **err.get("extra", {}),
            )

    async def _run(self, core: Assignment, op: str, args: dict[str, Any]) -> None:
        """Carry out one routing event on the routing core (leader or local)."""
        hub = self.hub
        if op == "connected":
            user = await hub.store.get_user(args["advisor_id"])
            if user is not None and user.id not in core._connections:
                await core.advisor_connected(user)
        elif op == "disconnected":
            advisor_id = args["advisor_id"]
            if advisor_id in core._connections and not await self._still_present(advisor_id):
                await core.advisor_disconnected(advisor_id)
        elif op == "presence":
            await core.set_presence(args["advisor_id"], args["status"])
        elif op == "submit":
            conv = await hub.store.get_conversation(args["conversation_id"])
            if conv is not None and conv.state == "queued":
                await core.submit(
                    conv, await hub.customer_of(conv), requeued=args.get("requeued", False)
                )
        elif op == "closed":
            # No database read: freeing the slot needs only the id, so a database outage on the
            # leader cannot lose it (the node that forwarded it committed the close already).
            await core.closed(args["conversation_id"])
        elif op == "responded":
            await core.responded(args["conversation_id"], args["advisor_id"])
        elif op == "claim":
            await core.claim(Principal(**args["who"]), args["conversation_id"])
        elif op == "transfer":
            await core.transfer(
                Principal(**args["who"]),
                args["conversation_id"],
                args.get("to_advisor"),
                args.get("to_group"),
                args.get("note"),
            )
        elif op == "reassign":
            await core.reassign(
                Principal(**args["who"]), args["conversation_id"], args["advisor_id"]
            )
        else:
            log.warning("unknown routing op %r", op)

    async def _serve_inbox(self, core: LeaderAssignment) -> None:
        """The leader's side of forwarding: one event at a time, in arrival order, for as long
        as this node leads with `core` (a step-down detaches it before stopping this loop)."""
        while self.core is core and not self._stopping:
            try:
                async with asyncio.timeout(5):
                    popped = await self._blocking.brpop([self.inbox_key], timeout=1)  # type: ignore[misc]
            except (RedisError, OSError, TimeoutError):
                await asyncio.sleep(0.5)
                continue
            if popped is None:
                continue
            item = json.loads(popped[1])
            result: dict[str, Any] = {"ok": True}
            try:
                await self._run(core, item["op"], item.get("args", {}))
            except ProtocolError as exc:
                result = {
                    "error": {
                        "code": str(exc.code),
                        "message": exc.message,
                        "field": exc.field,
                        "extra": exc.extra,
                    }
                }
            except Exception:  # noqa: BLE001 - one bad event must not stop routing for everyone
                log.exception("routing event %s failed", item.get("op"))
                result = {
                    "error": {
                        "code": str(ErrorCode.INTERNAL_ERROR),
                        "message": "routing failed; retry",
                        "extra": {"retryable": True},
                    }
                }
            if item.get("reply"):
                with contextlib.suppress(RedisError, OSError):
                    await self.redis.lpush(item["reply"], json.dumps(result))  # type: ignore[misc]
                    await self.redis.expire(item["reply"], 30)

    # -- leadership ----------------------------------------------------------------------------
    async def _election_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(RENEW_EVERY_S)
            try:
                await self._election_round()
            except Exception:  # noqa: BLE001 - the election loop must outlive any one failure
                log.exception("routing election round failed")

    async def _election_round(self) -> None:
        if self.bus.degraded:
            if self.mode != "local":
                await self._become("local")
            return
        if self.mode == "local":
            await self._become("follower")  # Redis is back: step back and re-elect
        try:
            if self.mode == "leader":
                held = await self.redis.eval(RENEW_LUA, 1, self.leader_key, self.node_id, LEASE_MS)  # type: ignore[misc]
                if not held:
                    log.warning("node %s lost the routing lease: stepping down", self.node_id)
                    await self._become("follower")
            elif await self.redis.set(self.leader_key, self.node_id, nx=True, px=LEASE_MS):
                await self._become("leader")
        except (RedisError, OSError) as exc:
            log.info("routing lease check failed: %s", exc)
            return
        if self.mode == "leader":
            await self._publish_snapshot()
        else:
            await self._read_snapshot()

    async def _become(self, mode: str) -> None:
        async with self._switch:
            if mode == self.mode:
                return
            await self._step_down()
            self.mode = mode
            if mode == "follower":
                return
            core = LeaderAssignment(self.hub, self)
            # Rebuilds from the database: assigned chats, queued chats with their original wait.
            await core.start()
            present = self._local_presence() if mode == "local" else await self._presence()
            for advisor_id, status in present.items():
                user = await self.hub.store.get_user(advisor_id)
                if user is None:
                    continue
                await core.advisor_connected(user)
                if status != AdvisorStatus.ONLINE.value:
                    with contextlib.suppress(ProtocolError):
                        await core.set_presence(advisor_id, status)
            self.core = core
            if mode == "leader":
                self.elections_won += 1
                self._inbox_task = asyncio.create_task(
                    self._serve_inbox(core), name="routing-inbox"
                )
                log.warning(
                    "node %s is the routing leader (%d advisors present)",
                    self.node_id,
                    len(present),
                )
            else:
                log.warning(
                    "node %s routes its own connections locally (redis unreachable)", self.node_id
                )

    async def _step_down(self) -> None:
        # Detached first: events are forwarded to the inbox from now on, and an inbox loop
        # that missed its cancel applies nothing more to this core.
        core, self.core = self.core, None
        if self._inbox_task is not None:
            await stop_task(self._inbox_task, within=STOP_WITHIN_S)
            self._inbox_task = None
        if core is not None:
            await core.stop()
        self.mode = "follower"

    # -- presence ---------------------------------------------------------------------------------
    def _presence_key(self, advisor_id: str) -> str:
        return f"{self.presence_prefix}{advisor_id}:{self.node_id}"

    async def _refresh_presence(self, advisor_id: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.set(
                self._presence_key(advisor_id),
                self._status.get(advisor_id, "online"),
                ex=PRESENCE_TTL_S,
            )

    def _local_presence(self) -> dict[str, str]:
        return {a: self._status.get(a, "online") for a in self._local}

    async def _presence(self) -> dict[str, str]:
        """Every advisor connected to any node, from the presence keys (an expired key = gone)."""
        found: dict[str, str] = {}
        async for key in self.redis.scan_iter(match=f"{self.presence_prefix}*", count=500):
            advisor_id = key[len(self.presence_prefix) :].rsplit(":", 1)[0]
            status = str(await self.redis.get(key) or "") or None
            if status is not None and found.get(advisor_id) != "online":
                found[advisor_id] = status
        return found

    async def _still_present(self, advisor_id: str) -> bool:
        if self.mode == "local":
            return advisor_id in self._local
        try:
            async for _ in self.redis.scan_iter(
                match=f"{self.presence_prefix}{advisor_id}:*", count=500
            ):
                return True
        except (RedisError, OSError):
            return advisor_id in self._local
        return False

    async def _presence_loop(self) -> None:
        since_refresh = 0.0
        while not self._stopping:
            await asyncio.sleep(PRESENCE_SWEEP_S)
            since_refresh += PRESENCE_SWEEP_S
            try:
                if since_refresh >= PRESENCE_REFRESH_S:
                    since_refresh = 0.0
                    for advisor_id in tuple(self._local):
                        await self._refresh_presence(advisor_id)
                core = self.core
                if core is not None and self.mode == "leader":
                    await self._sweep(core)
                    if since_refresh == 0.0:
                        await self._adopt_queued(core)
            except Exception:  # noqa: BLE001 - presence upkeep must outlive any one failure
                log.exception("presence upkeep failed")

    async def _sweep(self, core: LeaderAssignment) -> None:
        """Leader: advisors whose node died (keys expired) disconnect; the grace period applies."""
        present = await self._presence()
        for advisor_id in tuple(core._connections):
            if advisor_id not in present:
                log.info("advisor %s has no presence key left: disconnected", advisor_id)
                await core.advisor_disconnected(advisor_id)
        for advisor_id in present:
            if advisor_id not in core._connections:
                await self._run(core, "connected", {"advisor_id": advisor_id})

    async def _adopt_queued(self, core: LeaderAssignment) -> None:
        """Leader: submit queued chats the Router has never seen.

        A submit can miss the leader: pushed while Redis came back and a node was still routing
        locally, or popped by a leader that died before applying it. The database says queued,
        so the chat is routed from here, with its original wait."""
        router = core.router
        settled = self.hub.clock() - ADOPT_AFTER_S
        for conv in await self.hub.store.list_conversations(states=["queued"], limit=100_000):
            if (
                conv.updated_at > settled  # its submit may be on its way (no warning for that)
                or router.queue_position(conv.id) is not None
                or router.assigned_to(conv.id)
                or conv.id in core._offers
            ):
                continue
            log.warning("adopting queued chat %s the router did not know", conv.id)
            try:
                await core.submit(conv, await self.hub.customer_of(conv), requeued=True)
            except RoutingError as exc:
                log.info("chat %s is known to the router after all: %s", conv.id, exc.code)

    # -- pool offers and the board on every node -----------------------------------------------
    async def publish_pool(self, conversation_id: str, advisor_ids: tuple[str, ...]) -> None:
        await self.bus.publish(
            POOL_TOPIC, json.dumps({"c": conversation_id, "a": list(advisor_ids)})
        )

    def _on_pool(self, payload: str) -> None:
        event = json.loads(payload)
        if event["a"]:
            self._offers[event["c"]] = tuple(event["a"])
        else:
            self._offers.pop(event["c"], None)

    async def _publish_snapshot(self) -> None:
        core = self.core
        if core is None:
            return
        metrics = core.router.metrics(self.hub.clock())
        body = {
            "advisors": [_advisor_dict(m) for m in metrics.advisors.values()],
            "groups": [dataclasses.asdict(g) for g in metrics.groups.values()],
            "offers": {cid: list(who) for cid, who in core._offers.items()},
            "names": core._names,
            "leader": self.node_id,
        }
        await self.redis.set(self.snapshot_key, json.dumps(body), px=LEASE_MS)

    async def _read_snapshot(self) -> None:
        raw = await self.redis.get(self.snapshot_key)
        if raw is None:
            return
        body = json.loads(raw)
        self._snapshot.snapshot = RoutingMetrics(
            advisors={
                a["advisor_id"]: AdvisorMetrics(**{**a, "status": AdvisorStatus(a["status"])})
                for a in body["advisors"]
            },
            groups={g["group"]: GroupMetrics(**g) for g in body["groups"]},
        )
        # The snapshot heals any pool message this node missed (e.g. while resubscribing).
        self._offers = {cid: tuple(who) for cid, who in body["offers"].items()}
        self._names.update(body["names"])


def _advisor_dict(m: AdvisorMetrics) -> dict[str, Any]:
    d = dataclasses.asdict(m)
    d["status"] = m.status.value
    return d


def _unavailable(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.UNAVAILABLE, message, retryable=True)
