"""HTTP API for the knowledge base, compliance rules, quick replies and the supervisor board.

KB and rules are versioned documents: every save stores a whole new version, validated by
building the engine first (a bad rule is refused and the old version stays active).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from bot import KBEntry, KBFormatError, KnowledgeBase, cluster_questions, render_template
from chatserver import bus as topics
from chatserver.auth import Principal
from chatserver.protocol import ErrorCode, ProtocolError, encode
from chatserver.storage.sql import new_id
from compliance import Rule, RuleError, RuleSet

if TYPE_CHECKING:
    from chatserver.app import Services

_save_lock = asyncio.Lock()


async def _body(request: web.Request) -> dict[str, Any]:
    from chatserver.http_api import json_body

    return await json_body(request)


def _engines(services: Services) -> Any:
    return services.engines


# -- knowledge base ----------------------------------------------------------------------------
async def get_kb(services: Services, request: web.Request, _: Principal | None) -> dict[str, Any]:
    kb = _engines(services).kb
    return {"version": _engines(services).kb_version, "entries": [e.to_dict() for e in kb.entries]}


async def put_kb_entry(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    data = {**await _body(request), "id": request.match_info["id"]}
    try:
        entry = KBEntry.from_dict(data)
    except KBFormatError as exc:
        raise ProtocolError(ErrorCode.INVALID_FIELD, str(exc)) from None
    version = await _save_kb(services, who, lambda kb: kb.with_entry(entry), f"put {entry.id}")
    return {"version": version, "entry": entry.to_dict()}


async def delete_kb_entry(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    entry_id = request.match_info["id"]
    if _engines(services).kb.get(entry_id) is None:
        raise ProtocolError(ErrorCode.CONVERSATION_NOT_FOUND, f"no KB entry {entry_id!r}")
    return {"version": await _save_kb(services, who, lambda kb: kb.without(entry_id), f"delete {entry_id}")}


async def import_kb(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    fmt = request.query.get("format", "jsonl")
    mode = request.query.get("mode", "merge")
    if fmt not in ("jsonl", "csv") or mode not in ("merge", "replace"):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "format is jsonl or csv; mode is merge or replace")
    try:
        text = (await request.read()).decode("utf-8")
        incoming = KnowledgeBase.from_jsonl(text) if fmt == "jsonl" else KnowledgeBase.from_csv(text)
    except UnicodeDecodeError:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "the file must be UTF-8") from None
    except KBFormatError as exc:
        raise ProtocolError(ErrorCode.INVALID_FIELD, str(exc), line=exc.line) from None

    def merge(kb: KnowledgeBase) -> KnowledgeBase:
        if mode == "replace":
            return incoming
        for entry in incoming.entries:
            kb = kb.with_entry(entry)
        return kb

    version = await _save_kb(services, who, merge, f"import {len(incoming.entries)} entries ({mode})")
    return {"version": version, "imported": len(incoming.entries)}


async def export_kb(services: Services, request: web.Request, _: Principal | None) -> web.Response:
    kb = _engines(services).kb
    if request.query.get("format", "jsonl") == "csv":
        return web.Response(text=kb.to_csv(), content_type="text/csv", charset="utf-8")
    return web.Response(text=kb.to_jsonl(), content_type="application/x-ndjson", charset="utf-8")


async def unanswered(services: Services, request: web.Request, _: Principal | None) -> dict[str, Any]:
    rows = await services.store.list_unanswered()
    clusters = await asyncio.to_thread(cluster_questions, [r["question"] for r in rows])
    replies: dict[str, str] = {r["question"]: r["advisor_reply"] for r in rows if r.get("advisor_reply")}
    return {"total": len(rows), "clusters": [
        {"representative": c.representative, "count": c.count, "members": list(c.members)[:20],
         "advisor_reply": next((replies[m] for m in c.members if m in replies), None)}
        for c in clusters
    ]}


async def kb_from_reply(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    """One action for an advisor: turn a reply into a new KB entry, or a question into a paraphrase."""
    from chatserver.http_api import need_str

    data = await _body(request)
    question = need_str(data, "question", max_len=500) or ""
    entry_id = need_str(data, "entry_id", max_len=64, required=False)
    kb = _engines(services).kb
    if entry_id:
        existing = kb.get(entry_id)
        if existing is None:
            raise ProtocolError(ErrorCode.CONVERSATION_NOT_FOUND, f"no KB entry {entry_id!r}")
        entry = KBEntry.from_dict({**existing.to_dict(), "similar_questions": [*existing.similar_questions, question]})
    else:
        answer = need_str(data, "answer", max_len=4000) or ""
        category = need_str(data, "category", max_len=32, required=False) or "general"
        try:
            entry = KBEntry.from_dict({"id": f"learned-{new_id()[-12:]}", "question": question,
                                       "answer": answer, "category": category})
        except KBFormatError as exc:
            raise ProtocolError(ErrorCode.INVALID_FIELD, str(exc)) from None
    version = await _save_kb(services, who, lambda kb: kb.with_entry(entry), f"learned {entry.id}")
    return {"version": version, "entry": entry.to_dict()}


async def _save_kb(services: Services, who: Principal | None, change: Any, comment: str) -> int:
    engines = _engines(services)
    async with _save_lock:
        try:
            kb = await asyncio.to_thread(change, engines.kb)
        except KBFormatError as exc:
            raise ProtocolError(ErrorCode.INVALID_FIELD, str(exc)) from None
        jsonl = kb.to_jsonl()
        version = await _add_version(services, "kb", jsonl, who, comment)
        await engines.use_kb(version, jsonl)
    await services.bus.publish(topics.CONTROL, encode({"type": "reload", "what": "kb", "version": version}))
    return version


async def kb_versions(services: Services, request: web.Request, _: Principal | None) -> dict[str, Any]:
    return {"versions": await services.store.list_versions("kb")}


# -- compliance rules ----------------------------------------------------------------------------
async def get_rules(services: Services, request: web.Request, _: Principal | None) -> dict[str, Any]:
    engines = _engines(services)
    return {"version": engines.rules_version, "rules": [r.to_dict() for r in engines.rules]}


async def put_rule(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    data = {**await _body(request), "id": request.match_info["id"]}
    try:
        rule = Rule.from_dict(data)
    except RuleError as exc:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"rule refused: {exc}") from None

    def change(rules: RuleSet) -> RuleSet:
        return RuleSet([r for r in rules if r.id != rule.id] + [rule])

    version = await _save_rules(services, who, change, f"put {rule.id}")
    return {"version": version, "rule": rule.to_dict()}


async def delete_rule(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    rule_id = request.match_info["id"]
    rules = _engines(services).rules
    if rules.get(rule_id) is None:
        raise ProtocolError(ErrorCode.CONVERSATION_NOT_FOUND, f"no rule {rule_id!r}")
    version = await _save_rules(services, who, lambda rs: RuleSet([r for r in rs if r.id != rule_id]),
                                f"delete {rule_id}")
    return {"version": version}


async def _save_rules(services: Services, who: Principal | None, change: Any, comment: str) -> int:
    engines = _engines(services)
    async with _save_lock:
        try:
            rules = change(engines.rules)
            jsonl = rules.to_jsonl()
            # Build before storing: a rule set that cannot compile never becomes a version.
            from chatserver.engines import _build_compliance

            await asyncio.to_thread(_build_compliance, jsonl)
        except RuleError as exc:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"rule refused: {exc}") from None
        version = await _add_version(services, "rules", jsonl, who, comment)
        await engines.use_rules(version, jsonl)
    await services.bus.publish(topics.CONTROL, encode({"type": "reload", "what": "rules", "version": version}))
    return version


async def rule_versions(services: Services, request: web.Request, _: Principal | None) -> dict[str, Any]:
    return {"versions": await services.store.list_versions("rules")}


async def _add_version(services: Services, kind: str, jsonl: str, who: Principal | None, comment: str) -> int:
    now = services.hub.clock()
    try:
        version = await services.store.add_version(kind, jsonl, who.user_id if who else None, comment, now)
    except IntegrityError:
        raise ProtocolError(ErrorCode.INVALID_STATE, "another edit was saved at the same moment; reload and retry") from None
    await services.store.audit("global", who.user_id if who else None, f"{kind}.version", {"version": version, "comment": comment}, now)
    return version


# -- quick replies ----------------------------------------------------------------------------
async def quick_replies(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    assert who is not None
    user = await services.store.get_user(who.user_id)
    if user is None:
        raise ProtocolError(ErrorCode.AUTH_FAILED, "unknown user")
    query = request.query.get("q", "").strip()
    customer_name = request.query.get("customer_name", "")
    items = []
    for row in await services.store.quick_replies_for(user):
        if query and query not in row["title"] and query not in row["text"]:
            continue
        items.append({**row, "rendered": render_template(row["text"], {
            "customer_name": customer_name or "您", "advisor_name": user.display_name})})
    return {"quick_replies": items}


async def put_quick_reply(services: Services, request: web.Request, who: Principal | None) -> dict[str, Any]:
    from chatserver.http_api import need_str

    assert who is not None
    data = await _body(request)
    item = {"id": request.match_info["id"], "title": need_str(data, "title", max_len=128),
            "text": need_str(data, "text", max_len=4000),
            "team": need_str(data, "team", max_len=64, required=False)}
    # Advisors keep their own templates; supervisors may set team or global ones.
    item["owner_id"] = who.user_id if who.role == "advisor" else None
    if who.role == "advisor":
        item["team"] = None
    await services.store.put_quick_reply(item, services.hub.clock())
    return {"quick_reply": item}


# -- supervisor board ---------------------------------------------------------------------------
async def board(services: Services, request: web.Request, _: Principal | None) -> dict[str, Any]:
    return await services.hub.board()


def routes(anyone: frozenset[str], signed_in: frozenset[str], staff: frozenset[str],
           supervisors: frozenset[str], admins: frozenset[str]) -> list[tuple[str, str, frozenset[str], Any]]:
    return [
        ("GET", "/api/kb", staff, get_kb),
        ("PUT", "/api/kb/entries/{id}", supervisors, put_kb_entry),
        ("DELETE", "/api/kb/entries/{id}", supervisors, delete_kb_entry),
        ("POST", "/api/kb/import", supervisors, import_kb),
        ("GET", "/api/kb/export", supervisors, export_kb),
        ("GET", "/api/kb/versions", supervisors, kb_versions),
        ("GET", "/api/kb/unanswered", supervisors, unanswered),
        ("POST", "/api/kb/learn", staff, kb_from_reply),
        ("GET", "/api/rules", supervisors, get_rules),
        ("PUT", "/api/rules/{id}", supervisors, put_rule),
        ("DELETE", "/api/rules/{id}", supervisors, delete_rule),
        ("GET", "/api/rules/versions", supervisors, rule_versions),
        ("GET", "/api/quick-replies", staff, quick_replies),
        ("PUT", "/api/quick-replies/{id}", staff, put_quick_reply),
        ("GET", "/api/supervisor/board", supervisors, board),
    ]
