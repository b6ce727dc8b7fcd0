"""The aiohttp application factory: one place that opens, wires and closes every resource.

create_app(settings) builds the store, bus, engines, hub, routing and channel gateway in a
cleanup_ctx, so they open with the app and close (flushing storage) when it stops.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from chatserver import bus as topics
from chatserver.accounts import demo_logins, seed_demo
from chatserver.auth import TokenSigner
from chatserver.bus import Bus, LocalBus
from chatserver.channels import ChannelGateway
from chatserver.cluster import ClusterAssignment, NodeGauges, RowNotices, bus_state
from chatserver.engines import Engines, freeze_heap
from chatserver.guard import ACCESS_LISTS, Guard
from chatserver.http_api import add_routes
from chatserver.hub import Hub
from chatserver.metrics import HubMetrics
from chatserver.protocol import CloseCode, ErrorCode, ProtocolError, decode_json, encode
from chatserver.redis_bus import RedisBus
from chatserver.settings import Settings
from chatserver.storage.sql import SQLStore, open_store
from chatserver.ws import ClientConnection, websocket_handler

log = logging.getLogger("chatserver.app")
WEB_ROOT = Path(__file__).resolve().parent.parent / "web_client"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self' ws: wss:; media-src 'self' data:; frame-ancestors 'self'; base-uri 'none'; form-action 'self'")


@dataclass(slots=True)
class Services:
    settings: Settings
    store: SQLStore
    bus: Bus
    engines: Engines
    hub: Hub
    signer: TokenSigner
    guard: Guard
    channels: ChannelGateway
    metrics: HubMetrics
    connections: set[ClientConnection] = field(default_factory=set)
    demo_logins: list[tuple[str, str, str]] = field(default_factory=list)
    node_gauges: NodeGauges | None = None
    row_notices: RowNotices | None = None  # several nodes: conversation rows cached on each
    ready: bool = False


SERVICES = web.AppKey("services", Services)


def make_bus(settings: Settings) -> Bus:
    if settings.redis_url:
        from chatserver.redis_bus import RedisBus

        return RedisBus(settings.redis_url, prefix=settings.redis_prefix, node_id=settings.node_id or None)
    return LocalBus()


async def open_services(settings: Settings) -> Services:
    """Open every resource in dependency order (used by the app and by CLI commands)."""
    store = open_store(settings.effective_database_url, batch_max=settings.commit_batch_max,
                       gather_s=settings.commit_gather_ms / 1000)
    await store.start()
    bus = make_bus(settings)
    await bus.start()
    engines = Engines(store)
    async with store.seeding():
        # Nodes starting together on one empty database take turns: the first stores the
        # shipped KB and rule versions, quick replies and demo people; the others find them.
        await engines.seed()
        await _seed(settings, store)
    await engines.load()
    saved_lists = await store.latest_audit("global", "access_lists.put")
    metrics = HubMetrics()
    hub = Hub(settings, store, bus, engines)
    hub.metrics_hook = metrics.record
    services = Services(settings=settings, store=store, bus=bus, engines=engines, hub=hub,
                        signer=TokenSigner(settings.effective_secret, settings.token_ttl_s),
                        guard=Guard(settings), channels=ChannelGateway(hub), metrics=metrics)
    services.node_gauges = NodeGauges(metrics.registry)
    if saved_lists and isinstance(saved_lists.get("detail"), dict):
        # Bans and network lists are saved as their audit event; a restarted or new node
        # starts with the ones in force.
        _apply_access_lists(services, saved_lists["detail"])
    services.demo_logins = demo_logins() if settings.demo else []
    if isinstance(bus, RedisBus):
        # Several nodes share routing: one leader runs the Router, the others forward to it.
        hub.assignment = ClusterAssignment(hub, bus)  # type: ignore[assignment]
        services.row_notices = RowNotices(store, bus)
        await services.row_notices.start()
    await hub.assignment.start()
    await services.channels.start()
    await bus.subscribe(topics.CONTROL, lambda payload: _on_control(services, payload))
    freeze_heap()  # everything opened so far lives as long as the process
    services.ready = True
    return services


async def _seed(settings: Settings, store: SQLStore) -> None:
    from bot import load_quick_replies

    await store.seed_quick_replies([{"id": q.id, "title": q.title, "text": q.text, "team": q.team, "owner_id": None}
                                    for q in load_quick_replies()], time.time())
    if settings.demo:
        await seed_demo(store, time.time())


async def close_services(services: Services) -> None:
    services.ready = False
    await services.channels.stop()
    await services.hub.assignment.stop()
    await services.hub.assist.stop()
    await services.hub.suggester.close()
    if services.row_notices is not None:
        await services.row_notices.stop()
    await services.bus.close()
    await services.engines.close()
    await services.store.close()  # drains the writer: everything accepted is committed


def _on_control(services: Services, payload: str) -> None:
    event = decode_json(payload)
    if not isinstance(event, dict):
        return
    if event.get("type") == "reload":
        services.engines.refresh_soon()
    elif event.get("type") == "access_lists":
        _apply_access_lists(services, event)


def _apply_access_lists(services: Services, event: dict[str, Any]) -> None:
    """Another node's (or this node's) new black/white lists: take them, close banned sockets."""
    lists = {name: event.get(name, []) for name in ACCESS_LISTS}
    try:
        services.guard.set_lists(**lists)
    except ValueError:
        log.warning("access lists from the bus refused (bad network); the lists in force stay")
        return
    banned = set(lists["banned_users"])
    for conn in list(services.connections):
        if conn.principal.user_id in banned:
            conn.push(encode(ProtocolError(ErrorCode.FORBIDDEN, "this account is banned").to_event(None)))
            conn.close_after_flush(CloseCode.FORBIDDEN, b"forbidden")


# How long the event loop may hold the GIL before a waiting thread gets it (Python's default
# is 5 ms). The SQLite writer thread releases the GIL around every SQLite call and needs it back
# to go on; with the loop busy, each of those waits could last the full 5 ms, so one group
# commit took tens of milliseconds and every acknowledgement waited behind it
# (docs/benchmarks/pipeline.md).
GIL_SWITCH_INTERVAL_S = 0.001

# Python's cyclic collector runs a full collection once ten younger ones have run and the
# objects promoted since the last full one reach a quarter of those it kept. Under load the
# messages in flight (their tasks and coroutines, waiting for a commit) are promoted steadily,
# so with the default (700, 10, 10) a full collection came about once a second, each walking
# every live object of the requests in flight — about 95 ms during which nothing moved (the
# startup heap is frozen and not walked; docs/benchmarks/pipeline.md). A thousand younger
# collections between full ones make those pauses a hundred times rarer (with a hundred, one of
# 84 ms fell into a benchmark's 20-second half-load phase, after the heap had grown under load);
# cyclic garbage that reaches the oldest generation waits that much longer to be freed.
GC_THRESHOLDS = (700, 10, 1000)


def prepare_process() -> None:
    """Process-wide settings for a serving hub: uvloop if installed, a short GIL switch
    interval, rarer full garbage collections."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()


def create_app(settings: Settings, *, announce: bool = False) -> web.Application:
    settings.validate()
    app = web.Application(client_max_size=4 * 1024 * 1024, middlewares=[security_headers])

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        services = await open_services(settings)
        app[SERVICES] = services
        if announce:
            _announce(services)
        yield
        await close_services(services)

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/ws", websocket_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    add_routes(app)
    for page, filename in (("/", "index.html"), ("/console", "console.html"), ("/supervisor", "supervisor.html")):
        app.router.add_get(page, _page(filename))
    if WEB_ROOT.is_dir():
        app.router.add_static("/static/", WEB_ROOT, show_index=False)
    return app


def _announce(services: Services) -> None:
    s = services.settings
    print(f"chatserver listening on http://{s.host}:{s.port}  (database: {services.store.dialect}, "
          f"bus: {'redis' if s.redis_url else 'in-process'})", flush=True)
    print(f"  investor chat  http://{s.host}:{s.port}/\n  advisor console http://{s.host}:{s.port}/console\n"
          f"  supervisor desk http://{s.host}:{s.port}/supervisor", flush=True)
    if s.demo and services.demo_logins:
        print("DEMO MODE - these logins exist only because --demo is on:", flush=True)
        for username, password, role in services.demo_logins:
            print(f"  {role:<10} {username:<12} {password}", flush=True)


RequestHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def security_headers(request: web.Request, handler: RequestHandler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def _page(filename: str) -> RequestHandler:
    async def page(request: web.Request) -> web.StreamResponse:
        path = WEB_ROOT / filename
        if not path.is_file():
            raise web.HTTPNotFound(text=f"{filename} is not built in this checkout")
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    return page


async def _close_sockets(app: web.Application) -> None:
    """Graceful shutdown: tell every client to reconnect elsewhere (1001), then storage flushes."""
    services = app.get(SERVICES)
    if services is None:
        return
    services.ready = False
    await asyncio.gather(*(c.ws.close(code=CloseCode.GOING_AWAY, message=b"server shutting down")
                           for c in list(services.connections)), return_exceptions=True)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    db = await services.store.ping()
    bus_ok = services.bus.healthy
    services.metrics.db_healthy.set(1 if db else 0)
    services.metrics.bus_healthy.set(1 if bus_ok else 0)
    # A degraded bus (Redis unreachable) still counts as ready: the node serves its own
    # connections, and pulling every node out of the balancer would be a full outage.
    ok = services.ready and db and bus_ok
    if services.node_gauges is not None:
        services.node_gauges.update(services.bus, services.store, services.hub.assignment)
    body = {"status": "ready" if ok else "not_ready", "database": db, "bus": bus_state(services.bus),
            "routing": getattr(services.hub.assignment, "mode", "single"),
            "node": getattr(services.bus, "node_id", None),
            **services.engines.status()}
    return web.json_response(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    m = services.metrics
    for role in ("investor", "advisor", "supervisor", "admin"):
        m.connections.labels(role).set(sum(1 for c in services.connections if c.principal.role == role))
    for g in services.hub.assignment.router.metrics(services.hub.clock()).groups.values():
        m.queue_length.labels(g.group).set(g.queue_length)
    m.bus_healthy.set(1 if services.bus.healthy else 0)
    m.asyncio_tasks.set(len(asyncio.all_tasks()))  # a leak shows as a climb under steady load
    if services.node_gauges is not None:
        services.node_gauges.update(services.bus, services.store, services.hub.assignment)
    return web.Response(body=m.render(), content_type="text/plain", charset="utf-8")
