"""The HTTP API: login, conversations, alerts, admin (customers, channels, KB, rules, lists).

Every route is declared once in ROUTES with the roles allowed; `api` turns ProtocolError into the
same JSON error shape the WebSocket uses, with a matching HTTP status.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from chatserver import bus as topics
from chatserver.auth import Principal, verify_password
from chatserver.customer_import import customer_from_json, parse_customers_csv
from chatserver.guard import ACCESS_LISTS
from chatserver.protocol import CHANNELS, ErrorCode, ProtocolError, check_text, encode
from chatserver.storage.records import User
from chatserver.storage.sql import StorageUnavailable, new_id

if TYPE_CHECKING:
    from chatserver.app import Services

log = logging.getLogger("chatserver.http")

STATUS = {
    ErrorCode.AUTH_REQUIRED: 401, ErrorCode.AUTH_FAILED: 401, ErrorCode.FORBIDDEN: 403,
    ErrorCode.CONVERSATION_NOT_FOUND: 404, ErrorCode.INVALID_STATE: 409, ErrorCode.ALREADY_TAKEN: 409,
    ErrorCode.RATE_LIMITED: 429, ErrorCode.UNAVAILABLE: 503, ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.TEXT_TOO_LONG: 413, ErrorCode.FRAME_TOO_LARGE: 413,
}
ANYONE = frozenset({"anonymous", "investor", "advisor", "supervisor", "admin"})
SIGNED_IN = frozenset({"investor", "advisor", "supervisor", "admin"})
STAFF = frozenset({"advisor", "supervisor", "admin"})
SUPERVISORS = frozenset({"supervisor", "admin"})
ADMINS = frozenset({"admin"})
MAX_BODY = 4 * 1024 * 1024

Endpoint = Callable[["Services", web.Request, Principal | None], Awaitable[Any]]


def error_response(exc: ProtocolError) -> web.Response:
    body = {"error": {"code": str(exc.code), "message": exc.message, **({"field": exc.field} if exc.field else {}), **exc.extra}}
    return web.json_response(body, status=STATUS.get(exc.code, 400), dumps=_dumps)


def _dumps(obj: Any) -> str:
    # Row mappings use SQLAlchemy's str subclass for keys; orjson needs to be told that is fine.
    return orjson.dumps(obj, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def api(roles: frozenset[str], endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        from chatserver.app import SERVICES

        services = request.app[SERVICES]
        try:
            if not services.guard.address_allowed(request.remote):
                raise ProtocolError(ErrorCode.FORBIDDEN, "your address is not allowed")
            if not services.guard.ip_allows(request.remote, services.hub.clock()):
                raise ProtocolError(ErrorCode.RATE_LIMITED, "too many requests from your address")
            principal = await _principal(services, request)
            role = principal.role if principal else "anonymous"
            if role not in roles:
                if principal is None:
                    raise ProtocolError(ErrorCode.AUTH_REQUIRED, "sign in first (Authorization: Bearer <token>)")
                raise ProtocolError(ErrorCode.FORBIDDEN, f"a {role} may not do this")
            result = await endpoint(services, request, principal)
        except ProtocolError as exc:
            log.info("%s %s refused: %s", request.method, request.path, exc.code)
            return error_response(exc)
        except StorageUnavailable as exc:
            log.warning("storage unavailable on %s: %s", request.path, exc)
            return error_response(ProtocolError(ErrorCode.UNAVAILABLE, "storage is unavailable; retry", retryable=True))
        except web.HTTPException:
            raise
        except Exception:  # noqa: BLE001 - a bug answers 500 in the documented shape, never a crash
            log.exception("%s %s failed", request.method, request.path)
            return error_response(ProtocolError(ErrorCode.INTERNAL_ERROR, "internal error", retryable=True))
        if isinstance(result, web.StreamResponse):
            return result
        return web.json_response(result, dumps=_dumps)

    return handler


async def _principal(services: Services, request: web.Request) -> Principal | None:
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ProtocolError(ErrorCode.AUTH_FAILED, "use Authorization: Bearer <token>")
    principal = services.signer.verify(token.strip(), services.hub.clock())
    await services.guard.check_user(principal)
    return principal


async def json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise ProtocolError(ErrorCode.BAD_JSON, "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.BAD_FRAME, "body must be a JSON object")
    return data


def need_str(data: dict[str, Any], name: str, *, max_len: int = 256, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise ProtocolError(ErrorCode.MISSING_FIELD, f"{name!r} is required", field=name)
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{name!r} must be a string of at most {max_len} characters", field=name)
    return value


# -- sign in -----------------------------------------------------------------------------------
async def login(services: Services, request: web.Request, _: Principal | None) -> dict[str, Any]:
    data = await json_body(request)
    username = need_str(data, "username", max_len=128) or ""
    password = need_str(data, "password", max_len=256) or ""
    now = services.hub.clock()
    if services.guard.login_locked(username, now):
        raise ProtocolError(ErrorCode.RATE_LIMITED, "too many failed logins; try again in a few minutes")
    user = await services.store.get_user_by_username(username)
    valid = bool(user and not user.disabled and user.password_hash
                 and await asyncio.to_thread(verify_password, user.password_hash, password))
    if user is None or not valid:
        services.guard.login_failed(username, now)
        raise ProtocolError(ErrorCode.AUTH_FAILED, "wrong username or password")
    services.guard.login_succeeded(username)
    principal = Principal(user.id, user.role, user.display_name, user.customer_id)
    await services.store.audit("global", user.id, "login", {"role": user.role}, now)
    return {"token": services.signer.issue(principal, now), "user": user.public()}


async def visitor(services: Services, request: web.Request, _: Principal | None) -> dict[str, Any]:
    """Any visitor may ask (as the leading platforms allow): an anonymous investor identity."""
    data = await json_body(request)
    name = need_str(data, "name", max_len=64, required=False) or "访客"
    now = services.hub.clock()
    user_id = new_id()
    user = User(id=user_id, username=f"visitor-{user_id}", display_name=name, role="investor")
    await services.store.create_user(user, now)
    principal = Principal(user.id, "investor", name, None)
    return {"token": services.signer.issue(principal, now), "user": user.public()}


async def me(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    assert who is not None
    user = await services.store.get_user(who.user_id)
    return {"user": user.public() if user else None}


# -- conversations -----------------------------------------------------------------------------
async def list_conversations(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    assert who is not None
    states = [s for s in request.query.get("state", "").split(",") if s] or None
    if who.role == "investor":
        convs = await services.store.list_conversations(investor_id=who.user_id, states=states)
    elif who.role == "advisor":
        convs = await services.store.list_conversations(advisor_id=who.user_id, states=states)
    else:
        convs = await services.store.list_conversations(states=states, customer_id=request.query.get("customer_id"))
    return {"conversations": [c.public() for c in convs]}


async def get_conversation(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    assert who is not None
    conv = await services.hub.conversation_for(who, request.match_info["id"], write=False)
    messages = await services.hub.transcript(who, conv)
    customer = await services.hub.customer_of(conv) if who.is_staff else None
    return {"conversation": conv.public(), "messages": [m.event() for m in messages],
            "customer": customer.public() if customer else None,
            "rating": await services.store.get_rating(conv.id) if who.is_staff else None}


async def export_conversation(services: Services, request: web.Request, who: Principal | None) -> web.StreamResponse:
    assert who is not None
    conv = await services.hub.conversation_for(who, request.match_info["id"], write=False)
    messages = await services.hub.transcript(who, conv)
    fmt = request.query.get("format", "json")
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["conversation_id", "seq", "id", "created_at", "sender_role", "sender_id", "sender_name", "kind", "verdict", "text", "hash"])
        for m in messages:
            writer.writerow([m.conversation_id, m.seq, m.id, m.created_at, m.sender_role, m.sender_id, m.sender_name, m.kind, m.verdict, m.text, m.hash])
        return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{conv.id}.csv"'})
    if fmt != "json":
        raise ProtocolError(ErrorCode.INVALID_FIELD, "format must be json or csv", field="format")
    return web.json_response({"conversation": conv.public(), "messages": [{**m.event(), "hash": m.hash} for m in messages]}, dumps=_dumps)


async def customer_profile(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    assert who is not None
    customer_id = request.match_info["id"]
    if who.role == "advisor":
        # An advisor sees a profile only while serving (or offered) one of the customer's chats.
        mine = await services.store.list_conversations(customer_id=customer_id, states=["assigned", "queued"])
        if not any(services.hub.may_read(who, c) for c in mine):
            raise ProtocolError(ErrorCode.CONVERSATION_NOT_FOUND, "no such customer among your chats")
    customer = await services.store.get_customer(customer_id)
    if customer is None:
        raise ProtocolError(ErrorCode.CONVERSATION_NOT_FOUND, "no such customer")
    past = await services.store.list_conversations(customer_id=customer_id, limit=20)
    return {"customer": customer.public(), "conversations": [c.public() for c in past]}


async def waiting_queue(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    """The chats waiting for a human that this advisor could serve (supervisors: all of them)."""
    from chatserver.assignment import group_for

    assert who is not None
    user = await services.store.get_user(who.user_id)
    groups = set(user.groups) if user and who.role == "advisor" else None
    router = services.hub.assignment.router
    position_of = getattr(router, "queue_position", None)  # only the node that routes knows positions
    now = services.hub.clock()
    items: list[dict[str, Any]] = []
    for conv in await services.store.list_conversations(states=["queued"], limit=500):
        group = group_for(conv)
        if groups is not None and group not in groups and "general" not in groups:
            continue
        customer = await services.hub.customer_of(conv)
        place = position_of(conv.id) if position_of else None
        items.append({"conversation": conv.public(), "group": group, "waiting_s": round(now - conv.updated_at, 1),
                      "star": customer.star if customer else 1, "position": place[0] if place else None,
                      "eta_s": round(place[1]) if place else None})
    items.sort(key=lambda i: (i["position"] is None, i["position"] or 0, -i["star"], -i["waiting_s"]))
    return {"queue": items}


# -- channel gateways ----------------------------------------------------------------------------
async def channel_inbound(services: Services, request: web.Request, _: Principal | None) -> dict[str, Any]:
    return await services.channels.inbound(request)


# -- supervisors: alerts and holds ------------------------------------------------------------------
async def list_alerts(services: Services, request: web.Request, _: Principal | None) -> dict[str, Any]:
    q = request.query
    try:
        since = float(q["since"]) if "since" in q else None
        until = float(q["until"]) if "until" in q else None
    except ValueError:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "since and until are Unix times in seconds") from None
    alerts = await services.store.list_alerts(state=q.get("state"), advisor_id=q.get("advisor_id"),
                                              rule_id=q.get("rule_id"), tier=q.get("tier"), since=since, until=until)
    return {"alerts": alerts}


async def alert_stats(services: Services, request: web.Request, _: Principal | None) -> dict[str, Any]:
    return {"rules": await services.store.alert_stats()}


DISPOSITIONS = ("confirmed", "false_positive", "coached")


async def acknowledge_alert(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    assert who is not None
    alert_id = request.match_info["id"]
    data = await json_body(request)
    notes = need_str(data, "notes", max_len=4000, required=False)
    now = services.hub.clock()
    if not await services.store.update_alert(alert_id, ["open"], state="acknowledged", acknowledged_by=who.user_id,
                                             acknowledged_at=now, **({"notes": notes} if notes else {})):
        raise _alert_state_error(await services.store.get_alert(alert_id), "open")
    return await _alert_changed(services, alert_id, who, "alert.acknowledge", now)


async def resolve_alert(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    assert who is not None
    alert_id = request.match_info["id"]
    data = await json_body(request)
    disposition = need_str(data, "disposition", max_len=32)
    if disposition not in DISPOSITIONS:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"disposition must be one of {', '.join(DISPOSITIONS)}", field="disposition")
    notes = need_str(data, "notes", max_len=4000, required=False)
    now = services.hub.clock()
    if not await services.store.update_alert(alert_id, ["open", "acknowledged"], state="resolved", disposition=disposition,
                                             resolved_by=who.user_id, resolved_at=now, **({"notes": notes} if notes else {})):
        raise _alert_state_error(await services.store.get_alert(alert_id), "open or acknowledged")
    return await _alert_changed(services, alert_id, who, "alert.resolve", now)


def _alert_state_error(alert: dict[str, Any] | None, wanted: str) -> ProtocolError:
    if alert is None:
        return ProtocolError(ErrorCode.CONVERSATION_NOT_FOUND, "no such alert")
    return ProtocolError(ErrorCode.INVALID_STATE, f"alert is {alert['state']}; this needs it {wanted}")


async def _alert_changed(services: Services, alert_id: str, who: Principal, action: str, now: float) -> dict[str, Any]:
    alert = await services.store.get_alert(alert_id)
    assert alert is not None
    await services.store.audit(alert["conversation_id"], who.user_id, action,
                               {"alert_id": alert_id, "disposition": alert.get("disposition")}, now)
    await services.bus.publish(topics.SUPERVISORS, encode({"type": "alert_update", "alert": alert}))
    return {"alert": alert}


async def list_holds(services: Services, request: web.Request, _: Principal | None) -> dict[str, Any]:
    return {"holds": await services.store.list_holds(request.query.get("state", "pending"))}


async def decide_hold(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    assert who is not None
    decision = request.match_info["decision"]
    if decision not in ("approve", "reject"):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "decision is approve or reject")
    return await services.hub.decide_hold(who, request.match_info["id"], decision == "approve")


# -- admin ----------------------------------------------------------------------------------------
async def list_customers(services: Services, request: web.Request, _: Principal | None) -> dict[str, Any]:
    return {"customers": [c.public() for c in await services.store.list_customers()]}


async def put_customer(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    try:
        customer = customer_from_json(await json_body(request))
    except ValueError as exc:
        raise ProtocolError(ErrorCode.INVALID_FIELD, str(exc)) from None
    await services.store.upsert_customers([customer], services.hub.clock())
    return {"customer": customer.public()}


async def import_customers(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    raw = await request.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "the CSV must be UTF-8") from None
    customers, errors = parse_customers_csv(text)
    if customers:
        await services.store.upsert_customers(customers, services.hub.clock())
    assert who is not None
    await services.store.audit("global", who.user_id, "customers.import", {"imported": len(customers), "errors": len(errors)}, services.hub.clock())
    return {"imported": len(customers), "errors": [{"line": e.line, "message": e.message} for e in errors]}


async def put_channel(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    name = request.match_info["name"]
    if name not in CHANNELS or name in ("web", "h5"):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"gateway channels are {', '.join(c for c in CHANNELS if c not in ('web', 'h5'))}")
    data = await json_body(request)
    secret = need_str(data, "secret", max_len=256) or ""
    if len(secret) < 16:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "secret must be at least 16 characters", field="secret")
    callback = need_str(data, "callback_url", max_len=2000, required=False)
    if callback and not callback.startswith(("http://", "https://")):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "callback_url must be http(s)", field="callback_url")
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "enabled must be true or false", field="enabled")
    await services.store.put_channel(name, secret, callback, enabled, services.hub.clock())
    await services.channels.refresh()
    assert who is not None
    await services.store.audit("global", who.user_id, "channel.put", {"name": name, "callback_url": callback}, services.hub.clock())
    return {"channel": {"name": name, "callback_url": callback, "enabled": enabled}}


async def get_access_lists(services: Services, request: web.Request, _: Principal | None) -> dict[str, Any]:
    return services.guard.lists()


async def put_access_lists(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    data = await json_body(request)
    lists = {}
    for name in ACCESS_LISTS:
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"{name} must be a list of strings", field=name)
        lists[name] = value
    try:
        services.guard.set_lists(**lists)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"bad network: {exc}") from None
    assert who is not None
    await services.store.audit("global", who.user_id, "access_lists.put", lists, services.hub.clock())
    # Every node takes the lists and closes the banned accounts' open sockets (this one too:
    # the bus delivers a node's own notices locally).
    await services.bus.publish(topics.CONTROL, encode({"type": "access_lists", **lists}))
    return services.guard.lists()


async def create_user(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    from chatserver.accounts import create_account

    data = await json_body(request)
    try:
        user = await create_account(services.store, data, services.hub.clock())
    except ValueError as exc:
        raise ProtocolError(ErrorCode.INVALID_FIELD, str(exc)) from None
    assert who is not None
    await services.store.audit("global", who.user_id, "user.create", {"username": user.username, "role": user.role}, services.hub.clock())
    return {"user": user.public()}


async def put_legal_hold(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    """Set or lift a legal hold: a held transcript is never purged, whatever its age."""
    assert who is not None
    conversation_id = request.match_info["id"]
    hold = (await json_body(request)).get("legal_hold")
    if not isinstance(hold, bool):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "legal_hold must be true or false", field="legal_hold")
    if await services.store.get_conversation(conversation_id) is None:
        raise ProtocolError(ErrorCode.CONVERSATION_NOT_FOUND, "no such conversation")
    now = services.hub.clock()
    await services.store.update_conversation(conversation_id, now, legal_hold=hold)
    await services.store.audit(conversation_id, who.user_id, "conversation.legal_hold", {"legal_hold": hold}, now)
    return {"conversation_id": conversation_id, "legal_hold": hold}


async def list_advisors(services: Services, request: web.Request, _: Principal | None) -> dict[str, Any]:
    metrics = services.hub.assignment.router.metrics(services.hub.clock())
    out = []
    for user in await services.store.list_users("advisor"):
        m = metrics.advisors.get(user.id)
        out.append({**user.public(), "status": m.status.value if m else "offline",
                    "open_chats": m.open_chats if m else 0})
    return {"advisors": out}


async def check_text_endpoint(services: Services, request: web.Request, _: Principal | None) -> dict[str, Any]:
    """"Try this text" against the live rules, without storing anything."""
    data = await json_body(request)
    # Any length is read as a string here so that too long gets the same code as on the socket.
    text = check_text(need_str(data, "text", max_len=MAX_BODY) or "", services.settings.max_text_chars)
    role = need_str(data, "role", max_len=16, required=False) or "advisor"
    if role not in ("advisor", "investor", "bot"):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "role must be advisor, investor or bot", field="role")
    previous = data.get("previous", [])
    if not isinstance(previous, list) or not all(isinstance(p, str) for p in previous):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "previous must be a list of strings", field="previous")
    engine = services.engines.compliance
    assert engine is not None
    customer_risk = need_str(data, "customer_risk", max_len=2, required=False)
    if customer_risk is not None and customer_risk not in ("C1", "C2", "C3", "C4", "C5"):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "customer_risk must be C1 to C5", field="customer_risk")
    verdict = engine.check(text, role=role, previous=tuple(previous[-3:]), customer_risk=customer_risk)
    from chatserver.hub import hit_dict

    return {"tier": verdict.tier.name.lower(), "hold": verdict.hold, "masked_text": verdict.masked_text,
            "hits": [hit_dict(h) for h in verdict.hits], "rules_version": services.engines.rules_version}


def route_table() -> list[tuple[str, str, frozenset[str], Endpoint]]:
    """Every HTTP endpoint with the roles that may call it (docs/security.md mirrors this)."""
    from chatserver import admin_api, openapi

    return [
        ("POST", "/api/login", ANYONE, login),
        ("POST", "/api/visitor", ANYONE, visitor),
        ("GET", "/api/me", SIGNED_IN, me),
        ("GET", "/api/conversations", SIGNED_IN, list_conversations),
        ("GET", "/api/conversations/{id}", SIGNED_IN, get_conversation),
        ("GET", "/api/conversations/{id}/export", SIGNED_IN, export_conversation),
        ("GET", "/api/customers/{id}", STAFF, customer_profile),
        ("GET", "/api/queue", STAFF, waiting_queue),
        ("POST", "/api/channels/{channel}/inbound", ANYONE, channel_inbound),
        ("GET", "/api/alerts", SUPERVISORS, list_alerts),
        ("GET", "/api/alerts/stats", SUPERVISORS, alert_stats),
        ("POST", "/api/alerts/{id}/acknowledge", SUPERVISORS, acknowledge_alert),
        ("POST", "/api/alerts/{id}/resolve", SUPERVISORS, resolve_alert),
        ("GET", "/api/holds", SUPERVISORS, list_holds),
        ("POST", "/api/holds/{id}/{decision}", SUPERVISORS, decide_hold),
        ("GET", "/api/advisors", SUPERVISORS, list_advisors),
        ("POST", "/api/compliance/check", STAFF, check_text_endpoint),
        ("GET", "/api/admin/customers", ADMINS, list_customers),
        ("PUT", "/api/admin/customers", ADMINS, put_customer),
        ("POST", "/api/admin/customers/import", ADMINS, import_customers),
        ("PUT", "/api/admin/channels/{name}", ADMINS, put_channel),
        ("GET", "/api/admin/access-lists", ADMINS, get_access_lists),
        ("PUT", "/api/admin/access-lists", ADMINS, put_access_lists),
        ("POST", "/api/admin/users", ADMINS, create_user),
        ("PUT", "/api/admin/conversations/{id}/legal-hold", ADMINS, put_legal_hold),
        ("GET", "/api/openapi.json", ANYONE, openapi.serve_document),
        *admin_api.routes(ANYONE, SIGNED_IN, STAFF, SUPERVISORS, ADMINS),
    ]


def add_routes(app: web.Application) -> None:
    for method, path, roles, endpoint in route_table():
        app.router.add_route(method, path, api(roles, endpoint))
