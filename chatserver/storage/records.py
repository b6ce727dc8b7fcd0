"""Values the store hands out and takes in: conversations, messages, users, alerts.

Plain frozen dataclasses so the rest of the hub never sees a database row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    display_name: str
    role: str
    customer_id: str | None = None
    groups: tuple[str, ...] = ()
    licences: tuple[str, ...] = ()
    team: str | None = None
    capacity: int | None = None
    disabled: bool = False
    password_hash: str | None = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, "username": self.username, "name": self.display_name, "role": self.role,
            "customer_id": self.customer_id, "groups": list(self.groups), "team": self.team,
            "capacity": self.capacity,
        }


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str
    star: int = 1
    risk_level: str = "C1"
    tags_risk: tuple[str, ...] = ()
    tags_qualification: tuple[str, ...] = ()
    tags_preference: tuple[str, ...] = ()
    tags_value: tuple[str, ...] = ()
    dedicated_advisor: str | None = None
    team: str | None = None
    phone_masked: str | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "star": self.star, "risk_level": self.risk_level,
            "tags": {
                "risk": list(self.tags_risk), "qualification": list(self.tags_qualification),
                "preference": list(self.tags_preference), "value": list(self.tags_value),
            },
            "dedicated_advisor": self.dedicated_advisor, "team": self.team, "phone": self.phone_masked,
        }


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    investor_id: str
    channel: str
    state: str
    customer_id: str | None = None
    group_name: str | None = None
    advisor_id: str | None = None
    intent: str | None = None
    bot_state: dict[str, Any] | None = None
    last_seq: int = 0
    legal_hold: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0
    closed_at: float | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, "investor_id": self.investor_id, "customer_id": self.customer_id,
            "channel": self.channel, "state": self.state, "group": self.group_name,
            "advisor_id": self.advisor_id, "intent": self.intent, "last_seq": self.last_seq,
            "created_at": self.created_at, "closed_at": self.closed_at,
        }


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message the hub has checked and wants stored; the store gives it an id, seq and hash."""

    conversation_id: str
    sender_id: str
    sender_role: str
    sender_name: str
    kind: str
    text: str
    verdict: str = "pass"
    client_id: str | None = None
    meta: dict[str, Any] | None = None
    created_at: float = 0.0
    # Alerts raised by compliance, committed in the same transaction as the message.
    alerts: tuple[dict[str, Any], ...] = ()
    # Outbound channel delivery queued in the same transaction (the outbox pattern).
    deliver_to_channel: str | None = None
    hold: bool = False


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: str
    conversation_id: str
    seq: int
    sender_id: str
    sender_role: str
    sender_name: str
    kind: str
    text: str
    verdict: str
    created_at: float
    client_id: str | None = None
    meta: dict[str, Any] | None = None
    hash: str = ""
    duplicate: bool = False  # True when this was an idempotent resend of an earlier frame

    def event(self) -> dict[str, Any]:
        event: dict[str, Any] = {
            "type": "message", "conversation_id": self.conversation_id, "id": self.id,
            "seq": self.seq, "sender_id": self.sender_id, "sender_role": self.sender_role,
            "sender_name": self.sender_name, "kind": self.kind, "text": self.text,
            "created_at": self.created_at,
        }
        if self.verdict != "pass":
            event["verdict"] = self.verdict
        if self.meta:
            event["meta"] = self.meta
        return event


def chain_hash(prev_hash: str, record: dict[str, Any]) -> str:
    """Each record holds the hash of the one before, so editing or deleting any breaks the chain."""
    body = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode() + b"\n" + body).hexdigest()


def message_hash_fields(m: StoredMessage | dict[str, Any]) -> dict[str, Any]:
    get = m.get if isinstance(m, dict) else lambda k: getattr(m, k)
    return {
        "id": get("id"), "conversation_id": get("conversation_id"), "seq": get("seq"),
        "sender_id": get("sender_id"), "sender_role": get("sender_role"), "kind": get("kind"),
        "text": get("text"), "verdict": get("verdict"), "created_at": get("created_at"),
        "client_id": get("client_id"),
    }
