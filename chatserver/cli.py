"""The `chatserver` command: serve the hub, and the operator's admin commands.

`chatserver serve` runs everything embedded by default; `chatserver --help` lists every setting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from chatserver import settings as settings_mod
from chatserver.settings import Settings, SettingsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatserver",
        description="Real-time chat routing hub for securities firms: bot first, least-loaded human "
                    "routing, live compliance. Every flag also reads a CHATSERVER_* environment variable.",
    )
    settings_mod.add_arguments(parser)
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the hub (embedded SQLite and in-process bus by default)")
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the port (needs --redis-url)")
    customers = sub.add_parser("customers", help="customer profiles").add_subparsers(dest="action", required=True)
    imp = customers.add_parser("import", help="import customer profiles from a CRM CSV export")
    imp.add_argument("file", type=Path)
    imp.add_argument("--strict", action="store_true", help="import nothing if any row is bad")
    audit = sub.add_parser("audit", help="tamper-evident record").add_subparsers(dest="action", required=True)
    audit.add_parser("verify", help="check every message and audit hash chain; exit 1 if any is broken")
    kb = sub.add_parser("kb", help="knowledge base").add_subparsers(dest="action", required=True)
    kb.add_parser("unanswered", help="questions the bot could not answer, clustered, with counts")
    users = sub.add_parser("users", help="accounts").add_subparsers(dest="action", required=True)
    add = users.add_parser("add", help="create an account")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=["investor", "advisor", "supervisor", "admin"])
    add.add_argument("--name")
    add.add_argument("--password", required=True)
    add.add_argument("--groups", default="", help="comma-separated advisor groups")
    add.add_argument("--capacity", type=int)
    purge = sub.add_parser("purge", help="delete closed transcripts past the retention period (never legal holds)")
    purge.add_argument("--days", type=int, help="override CHATSERVER_RETENTION_DAYS")
    db = sub.add_parser("db", help="database schema").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply Alembic migrations up to the newest")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_mod.from_args(args)
        if args.command in (None, "serve"):
            settings.validate()
    except SettingsError as exc:
        print(f"chatserver: {exc}", file=sys.stderr)
        return 2
    command = args.command or "serve"
    if command == "serve":
        return serve(settings, getattr(args, "workers", 1))
    handlers: dict[str, Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]] = {
        "customers": customers_import, "audit": audit_verify, "kb": kb_unanswered, "users": users_add,
        "purge": purge_command, "db": db_upgrade,
    }
    return asyncio.run(handlers[command](settings, args))


def serve(settings: Settings, workers: int = 1) -> int:
    from aiohttp import web

    from chatserver import logs
    from chatserver.app import create_app, prepare_process

    logs.configure(settings.log_level, settings.log_json)
    if workers > 1:
        from chatserver.workers import run_workers

        return run_workers(settings, workers)
    prepare_process()
    web.run_app(create_app(settings, announce=True), host=settings.host, port=settings.port,
                print=None, shutdown_timeout=10, access_log=None)
    return 0


async def _with_store(settings: Settings, work: Callable[[Any], Awaitable[int]]) -> int:
    from chatserver.storage.sql import open_store

    store = open_store(settings.effective_database_url)
    await store.start()
    try:
        return await work(store)
    finally:
        await store.close()


async def customers_import(settings: Settings, args: argparse.Namespace) -> int:
    from chatserver.customer_import import parse_customers_csv

    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"chatserver: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    customers, errors = parse_customers_csv(text)
    for e in errors:
        print(f"{args.file}: {e}", file=sys.stderr)
    if errors and args.strict:
        print(f"nothing imported: {len(errors)} bad row(s) and --strict", file=sys.stderr)
        return 1

    async def work(store: Any) -> int:
        await store.upsert_customers(customers, time.time())
        return 0

    await _with_store(settings, work)
    print(f"imported {len(customers)} customer(s); {len(errors)} bad row(s) skipped")
    return 1 if errors else 0


async def audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    async def work(store: Any) -> int:
        problems = await store.verify_chains()
        for p in problems:
            print(p)
        print("audit chains intact" if not problems else f"{len(problems)} problem(s) found")
        return 1 if problems else 0

    return await _with_store(settings, work)


async def kb_unanswered(settings: Settings, args: argparse.Namespace) -> int:
    from bot import cluster_questions

    async def work(store: Any) -> int:
        rows = await store.list_unanswered()
        clusters = cluster_questions([r["question"] for r in rows])
        for c in clusters:
            print(f"{c.count:5d}  {c.representative}")
            for m in list(c.members)[:5]:
                if m != c.representative:
                    print(f"         · {m}")
        print(f"{len(rows)} unanswered question(s) in {len(clusters)} cluster(s)")
        return 0

    return await _with_store(settings, work)


async def users_add(settings: Settings, args: argparse.Namespace) -> int:
    from chatserver.accounts import create_account

    async def work(store: Any) -> int:
        data = {"username": args.username, "role": args.role, "name": args.name, "password": args.password,
                "groups": [g for g in args.groups.split(",") if g] or (["general"] if args.role == "advisor" else []),
                "capacity": args.capacity}
        try:
            user = await create_account(store, data, time.time())
        except ValueError as exc:
            print(f"chatserver: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(user.public(), ensure_ascii=False))
        return 0

    return await _with_store(settings, work)


async def purge_command(settings: Settings, args: argparse.Namespace) -> int:
    days = args.days if args.days is not None else settings.retention_days
    if days <= 0:
        print("retention is unlimited (set --days or CHATSERVER_RETENTION_DAYS); nothing purged")
        return 0

    async def work(store: Any) -> int:
        count = await store.purge_closed_before(time.time() - days * 86400)
        await store.audit("global", None, "purge", {"days": days, "conversations": count}, time.time())
        print(f"purged {count} closed conversation(s) older than {days} day(s); legal holds kept")
        return 0

    return await _with_store(settings, work)


async def db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    async def work(store: Any) -> int:
        print("database schema is at the newest revision")
        return 0

    return await _with_store(settings, work)


if __name__ == "__main__":
    sys.exit(main())
