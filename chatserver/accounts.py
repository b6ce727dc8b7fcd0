"""Staff and investor accounts: validated creation, and the demo people seeded in demo mode.

Demo passwords are printed at start in demo mode only; outside it no account is created for you.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from chatserver.auth import hash_password
from chatserver.storage.records import Customer, User
from chatserver.storage.sql import SQLStore, new_id

_USERNAME = re.compile(r"^[A-Za-z0-9_.\-]{2,64}$")
ROLES = ("investor", "advisor", "supervisor", "admin")
GROUPS = ("account", "trading", "margin", "wealth", "complaints", "general")


async def create_account(store: SQLStore, data: dict[str, Any], now: float, *, password_hash: str | None = None) -> User:
    """Create one account from JSON-like data; ValueError says what is wrong.

    Argon2 is deliberately slow (~0.2 s), so hashing runs in a worker thread, never on the loop.
    """
    username = data.get("username")
    if not isinstance(username, str) or not _USERNAME.match(username):
        raise ValueError("username must be 2-64 letters, digits, '_', '.' or '-'")
    role = data.get("role")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    password = data.get("password")
    if password_hash is None and (not isinstance(password, str) or len(password) < 8):
        raise ValueError("password must be at least 8 characters")
    groups = data.get("groups", ["general"] if role == "advisor" else [])
    if not isinstance(groups, list) or any(g not in GROUPS for g in groups):
        raise ValueError(f"groups must be a list of {', '.join(GROUPS)}")
    capacity = data.get("capacity")
    if capacity is not None and (not isinstance(capacity, int) or isinstance(capacity, bool) or not 1 <= capacity <= 100):
        raise ValueError("capacity must be a whole number from 1 to 100")
    if await store.get_user_by_username(username):
        raise ValueError(f"username {username!r} is taken")
    user = User(
        id=new_id(), username=username, display_name=str(data.get("name") or username)[:64], role=role,
        customer_id=data.get("customer_id") if isinstance(data.get("customer_id"), str) else None,
        groups=tuple(groups), licences=tuple(str(x) for x in data.get("licences", []) if isinstance(x, str)),
        team=data.get("team") if isinstance(data.get("team"), str) else None, capacity=capacity,
        password_hash=password_hash or await asyncio.to_thread(hash_password, str(password)),
    )
    return await store.create_user(user, now)


DEMO_PASSWORD = "demo1234"
DEMO_STAFF: tuple[tuple[str, str, str, list[str], str | None], ...] = (
    # username, name, role, groups, team
    ("advisor1", "王顾问", "advisor", ["general", "account", "trading"], "team-a"),
    ("advisor2", "李顾问", "advisor", ["general", "wealth", "margin"], "team-a"),
    ("advisor3", "陈顾问", "advisor", ["general", "complaints", "account"], "team-b"),
    ("supervisor1", "赵主管", "supervisor", [], None),
    ("admin", "系统管理员", "admin", [], None),
)
DEMO_CUSTOMERS = (
    Customer(id="C1001", name="张伟", star=5, risk_level="C4", tags_risk=("积极型",), tags_qualification=("创业板", "两融"),
             tags_preference=("成长股", "公募基金"), tags_value=("高净值",), dedicated_advisor="advisor2", team="team-a",
             phone_masked="138****0001"),
    Customer(id="C1002", name="刘芳", star=3, risk_level="C3", tags_risk=("稳健型",), tags_qualification=("创业板",),
             tags_preference=("理财产品",), tags_value=("富裕客户",), team="team-a", phone_masked="139****0002"),
    Customer(id="C1003", name="孙强", star=1, risk_level="C1", tags_risk=("保守型",), tags_qualification=(),
             tags_preference=("货币基金",), tags_value=("潜在客户",), phone_masked="137****0003"),
)
DEMO_INVESTORS = (("investor1", "张伟", "C1001"), ("investor2", "刘芳", "C1002"), ("investor3", "孙强", "C1003"))


def demo_logins() -> list[tuple[str, str, str]]:
    """(username, password, role) of every demo login, as `chatserver serve` prints them."""
    return ([(username, DEMO_PASSWORD, role) for username, _name, role, _groups, _team in DEMO_STAFF]
            + [(username, DEMO_PASSWORD, "investor") for username, _name, _customer in DEMO_INVESTORS])


async def seed_demo(store: SQLStore, now: float) -> None:
    """Create the demo people once (callers hold `store.seeding()` so nodes take turns)."""
    await store.upsert_customers(list(DEMO_CUSTOMERS), now)
    shared_hash = await asyncio.to_thread(hash_password, DEMO_PASSWORD)  # one hash for every demo login
    for username, name, role, groups, team in DEMO_STAFF:
        if not await store.get_user_by_username(username):
            await create_account(store, {"username": username, "name": name, "role": role, "groups": groups,
                                         "team": team}, now, password_hash=shared_hash)
    for username, name, customer_id in DEMO_INVESTORS:
        if not await store.get_user_by_username(username):
            await create_account(store, {"username": username, "name": name, "role": "investor",
                                         "customer_id": customer_id}, now, password_hash=shared_hash)
