"""The OpenAPI 3 document of the HTTP API, served at /api/openapi.json.

Paths and roles come from http_api.route_table(), so the document cannot miss an endpoint; the
request and response schemas per endpoint are written here (tests check them against the server).
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from chatserver.auth import Principal
from chatserver.protocol import CHANNELS, ErrorCode

if TYPE_CHECKING:
    from chatserver.app import Services

Schema = dict[str, Any]

_STR: Schema = {"type": "string"}
_NSTR: Schema = {"type": ["string", "null"]}
_NUM: Schema = {"type": "number"}
_NNUM: Schema = {"type": ["number", "null"]}
_INT: Schema = {"type": "integer"}
_BOOL: Schema = {"type": "boolean"}
_OBJ: Schema = {"type": "object"}
_STRS: Schema = {"type": "array", "items": _STR}


def _object(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **(optional or {})},
    }


def _list_of(name: str, item: Schema) -> Schema:
    return _object({name: {"type": "array", "items": item}})


USER = _object(
    {
        "id": _STR,
        "username": _STR,
        "name": _STR,
        "role": {"enum": ["investor", "advisor", "supervisor", "admin"]},
        "customer_id": _NSTR,
        "groups": _STRS,
        "team": _NSTR,
        "capacity": {"type": ["integer", "null"]},
    }
)
TOKEN = _object({"token": _STR, "user": USER})
CONVERSATION = _object(
    {
        "id": _STR,
        "investor_id": _STR,
        "customer_id": _NSTR,
        "channel": _STR,
        "state": {"enum": ["bot", "queued", "assigned", "closed"]},
        "group": _NSTR,
        "advisor_id": _NSTR,
        "intent": _NSTR,
        "last_seq": _INT,
        "created_at": _NUM,
        "closed_at": _NNUM,
    }
)
MESSAGE = _object(
    {
        "type": {"const": "message"},
        "conversation_id": _STR,
        "id": _STR,
        "seq": _INT,
        "sender_id": _STR,
        "sender_role": _STR,
        "kind": _STR,
        "text": _STR,
        "created_at": _NUM,
    }
)
CUSTOMER = _object(
    {"id": _STR, "name": _STR, "star": _INT, "tags": _OBJ},
    {"risk_level": _NSTR, "dedicated_advisor": _NSTR, "team": _NSTR, "phone": _NSTR},
)
ALERT = _object({"id": _STR, "conversation_id": _STR, "rule_id": _STR, "tier": _STR, "state": _STR})
ERROR = _object(
    {
        "error": _object(
            {"code": {"enum": [str(c) for c in ErrorCode]}, "message": _STR}, {"field": _STR}
        )
    }
)
KB_ENTRY = _object({"id": _STR, "question": _STR, "answer": _STR})
RULE = _object({"id": _STR})
VERSIONS = _list_of("versions", _OBJ)
ACCESS_LISTS = _object({"banned_users": _STRS, "banned_networks": _STRS, "allowed_networks": _STRS})
SEND_ACK = _object({"conversation_id": _STR, "message_id": _STR, "seq": _INT, "duplicate": _BOOL})

# (method, path) -> summary, request body schema (None: no body), 200 response schema, query params.
# A response schema of None means a non-JSON body whose media types are listed in CONTENT.
ENDPOINTS: dict[tuple[str, str], tuple[str, Schema | None, Schema | None, list[str]]] = {
    ("POST", "/api/login"): (
        "log in; 5 failures lock the name for 5 minutes",
        _object({"username": _STR, "password": _STR}),
        TOKEN,
        [],
    ),
    ("POST", "/api/visitor"): (
        "a token for an anonymous investor",
        _object({}, {"name": _STR}),
        TOKEN,
        [],
    ),
    ("GET", "/api/me"): (
        "the caller's account",
        None,
        _object({"user": {"anyOf": [USER, {"type": "null"}]}}),
        [],
    ),
    ("GET", "/api/conversations"): (
        "the caller's conversations",
        None,
        _list_of("conversations", CONVERSATION),
        ["state", "customer_id"],
    ),
    ("GET", "/api/conversations/{id}"): (
        "one conversation with its role-filtered transcript",
        None,
        _object(
            {
                "conversation": CONVERSATION,
                "messages": {"type": "array", "items": MESSAGE},
                "customer": {"anyOf": [CUSTOMER, {"type": "null"}]},
                "rating": {"type": ["object", "null"]},
            }
        ),
        [],
    ),
    ("GET", "/api/conversations/{id}/export"): (
        "the transcript with each message's hash (json or csv)",
        None,
        None,
        ["format"],
    ),
    ("GET", "/api/customers/{id}"): (
        "a customer profile and past conversations",
        None,
        _object({"customer": CUSTOMER, "conversations": {"type": "array", "items": CONVERSATION}}),
        [],
    ),
    ("POST", "/api/channels/{channel}/inbound"): (
        "a signed message from a channel gateway",
        _object({"user_id": _STR, "message_id": _STR, "text": _STR}, {"name": _STR}),
        SEND_ACK,
        [],
    ),
    ("GET", "/api/alerts"): (
        "compliance alerts, newest first",
        None,
        _list_of("alerts", ALERT),
        ["state", "advisor_id", "rule_id", "tier", "since", "until"],
    ),
    ("GET", "/api/alerts/stats"): (
        "per-rule hit counts and dispositions",
        None,
        _list_of("rules", _OBJ),
        [],
    ),
    ("POST", "/api/alerts/{id}/acknowledge"): (
        "open -> acknowledged",
        _object({}, {"notes": _STR}),
        _object({"alert": ALERT}),
        [],
    ),
    ("POST", "/api/alerts/{id}/resolve"): (
        "resolve with a disposition",
        _object(
            {"disposition": {"enum": ["confirmed", "false_positive", "coached"]}}, {"notes": _STR}
        ),
        _object({"alert": ALERT}),
        [],
    ),
    ("GET", "/api/holds"): ("the four-eyes queue", None, _list_of("holds", _OBJ), ["state"]),
    ("POST", "/api/holds/{id}/{decision}"): ("approve or reject a held message", None, _OBJ, []),
    ("GET", "/api/advisors"): (
        "advisors with live status and load",
        None,
        _list_of("advisors", USER),
        [],
    ),
    ("POST", "/api/compliance/check"): (
        "check a text against the live rules; nothing stored",
        _object(
            {"text": _STR},
            {
                "role": {"enum": ["advisor", "investor", "bot"]},
                "previous": _STRS,
                "customer_risk": _STR,
            },
        ),
        _object(
            {
                "tier": _STR,
                "hold": _BOOL,
                "masked_text": _STR,
                "hits": {"type": "array", "items": _OBJ},
            }
        ),
        [],
    ),
    ("GET", "/api/admin/customers"): (
        "every customer profile",
        None,
        _list_of("customers", CUSTOMER),
        [],
    ),
    ("PUT", "/api/admin/customers"): (
        "create or replace one customer profile",
        _object({"id": _STR, "name": _STR}),
        _object({"customer": CUSTOMER}),
        [],
    ),
    ("POST", "/api/admin/customers/import"): (
        "import customer profiles from a CSV body",
        None,
        _object({"imported": _INT, "errors": {"type": "array", "items": _OBJ}}),
        [],
    ),
    ("PUT", "/api/admin/channels/{name}"): (
        "configure a channel gateway",
        _object(
            {"secret": {"type": "string", "minLength": 16}},
            {"callback_url": _STR, "enabled": _BOOL},
        ),
        _object({"channel": _OBJ}),
        [],
    ),
    ("GET", "/api/admin/access-lists"): (
        "banned users, banned and allowed networks",
        None,
        ACCESS_LISTS,
        [],
    ),
    ("PUT", "/api/admin/access-lists"): (
        "replace the access lists",
        _object({}, {"banned_users": _STRS, "banned_networks": _STRS, "allowed_networks": _STRS}),
        ACCESS_LISTS,
        [],
    ),
    ("POST", "/api/admin/users"): (
        "create an account",
        _object({"username": _STR, "role": _STR, "password": _STR}),
        _object({"user": USER}),
        [],
    ),
    ("PUT", "/api/admin/conversations/{id}/legal-hold"): (
        "set or lift a legal hold (held transcripts are never purged)",
        _object({"legal_hold": _BOOL}),
        _object({"conversation_id": _STR, "legal_hold": _BOOL}),
        [],
    ),
    ("GET", "/api/openapi.json"): (
        "this document",
        None,
        _object({"openapi": _STR, "paths": _OBJ}),
        [],
    ),
    ("GET", "/api/kb"): (
        "the knowledge base",
        None,
        _object({"version": _INT, "entries": {"type": "array", "items": KB_ENTRY}}),
        [],
    ),
    ("PUT", "/api/kb/entries/{id}"): (
        "create or replace a KB entry (a new version)",
        _object({"question": _STR, "answer": _STR}),
        _object({"version": _INT, "entry": KB_ENTRY}),
        [],
    ),
    ("DELETE", "/api/kb/entries/{id}"): (
        "delete a KB entry (a new version)",
        None,
        _object({"version": _INT}),
        [],
    ),
    ("POST", "/api/kb/import"): (
        "import JSONL or CSV (merge or replace)",
        None,
        _object({"version": _INT, "imported": _INT}),
        ["format", "mode"],
    ),
    ("GET", "/api/kb/export"): (
        "export the knowledge base as JSONL or CSV",
        None,
        None,
        ["format"],
    ),
    ("GET", "/api/kb/versions"): ("KB versions", None, VERSIONS, []),
    ("GET", "/api/kb/unanswered"): (
        "unanswered questions, clustered",
        None,
        _object({"total": _INT, "clusters": {"type": "array", "items": _OBJ}}),
        [],
    ),
    ("POST", "/api/kb/learn"): (
        "turn an advisor reply into a KB entry or paraphrase",
        _object({"question": _STR}, {"answer": _STR, "category": _STR, "entry_id": _STR}),
        _object({"version": _INT, "entry": KB_ENTRY}),
        [],
    ),
    ("GET", "/api/rules"): (
        "the compliance rules",
        None,
        _object({"version": _INT, "rules": {"type": "array", "items": RULE}}),
        [],
    ),
    ("PUT", "/api/rules/{id}"): (
        "create or replace a rule; a bad rule is refused",
        _OBJ,
        _object({"version": _INT, "rule": RULE}),
        [],
    ),
    ("DELETE", "/api/rules/{id}"): ("delete a rule", None, _object({"version": _INT}), []),
    ("GET", "/api/rules/versions"): ("rule versions", None, VERSIONS, []),
    ("GET", "/api/quick-replies"): (
        "quick replies rendered for the caller",
        None,
        _list_of("quick_replies", _OBJ),
        ["q", "customer_name"],
    ),
    ("PUT", "/api/quick-replies/{id}"): (
        "create or replace a quick reply",
        _object({"title": _STR, "text": _STR}, {"team": _STR}),
        _object({"quick_reply": _OBJ}),
        [],
    ),
    ("GET", "/api/queue"): (
        "chats waiting for a human that the caller could serve",
        None,
        _list_of(
            "queue",
            _object(
                {"conversation": CONVERSATION, "group": _STR, "waiting_s": _NUM, "star": _INT},
                {
                    "position": {"type": ["integer", "null"]},
                    "eta_s": {"type": ["integer", "number", "null"]},
                },
            ),
        ),
        [],
    ),
    ("GET", "/api/supervisor/board"): ("per-advisor and per-group live figures", None, _OBJ, []),
}

UNDESCRIBED: tuple[str, Schema | None, Schema | None, list[str]] = (
    "not described yet",
    None,
    _OBJ,
    [],
)

# Non-JSON bodies, by endpoint: the media types the server may answer 200 with.
CONTENT: dict[tuple[str, str], dict[str, Schema]] = {
    ("GET", "/api/conversations/{id}/export"): {
        "application/json": _object({"conversation": CONVERSATION, "messages": {"type": "array"}}),
        "text/csv": _STR,
    },
    ("GET", "/api/kb/export"): {"application/x-ndjson": _STR, "text/csv": _STR},
}
RAW_BODIES = {
    ("POST", "/api/admin/customers/import"): "text/csv",
    ("POST", "/api/kb/import"): "text/plain",
}
QUERY_ENUMS: dict[str, list[str]] = {
    "format": ["json", "csv", "jsonl"],
    "mode": ["merge", "replace"],
}
PATH_ENUMS: dict[str, list[str]] = {"channel": list(CHANNELS), "decision": ["approve", "reject"]}


def build_document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document, one operation per route in route_table()."""
    from chatserver.http_api import ANYONE, route_table

    paths: dict[str, dict[str, Any]] = {}
    for method, path, roles, _ in route_table():
        # A route nobody described yet is still listed (tests flag it); the API never 500s for it.
        summary, request, response, query = ENDPOINTS.get((method, path), UNDESCRIBED)
        operation: dict[str, Any] = {
            "operationId": f"{method.lower()}_{re.sub(r'[^a-z0-9]+', '_', path.lower()).strip('_')}",
            "summary": summary,
            "description": f"roles: {', '.join(sorted(roles))}",
            "parameters": _parameters(path, query),
            "responses": {
                "200": {"description": "done", "content": _ok_content(method, path, response)},
                "default": {
                    "description": "an error (docs/protocol.md lists every code)",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
            },
        }
        if roles != ANYONE:
            operation["security"] = [{"bearer": []}]
        if (method, path) in RAW_BODIES:
            operation["requestBody"] = {"content": {RAW_BODIES[(method, path)]: {"schema": _STR}}}
        elif request is not None:
            operation["requestBody"] = {"content": {"application/json": {"schema": request}}}
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chatserver HTTP API",
            "version": "1",
            "description": "Roles per endpoint: docs/security.md. Error codes: docs/protocol.md.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _parameters(path: str, query: list[str]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in re.findall(r"{(\w+)}", path):
        schema: Schema = (
            {"type": "string", "enum": PATH_ENUMS[name]}
            if name in PATH_ENUMS
            else {"type": "string", "minLength": 1}
        )
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    for name in query:
        schema = {"type": "string", "enum": QUERY_ENUMS[name]} if name in QUERY_ENUMS else _STR
        params.append({"name": name, "in": "query", "required": False, "schema": schema})
    return params


def _ok_content(method: str, path: str, response: Schema | None) -> dict[str, Any]:
    if response is None:
        return {media: {"schema": schema} for media, schema in CONTENT[(method, path)].items()}
    return {"application/json": {"schema": response}}


async def serve_document(
    services: Services, request: web.Request, _: Principal | None
) -> dict[str, Any]:
    return _cached_document()


@functools.cache
def _cached_document() -> dict[str, Any]:
    return build_document()
