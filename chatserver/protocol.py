"""The wire protocol: JSON frames in, typed frames out, and every error and close code.

This is the one place that turns client JSON into frames (validating on the way in) and events
into JSON; docs/protocol.md documents each frame and code defined here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import orjson


class ErrorCode(enum.StrEnum):
    BAD_JSON = "bad_json"  # the frame is not valid UTF-8 JSON
    BAD_FRAME = "bad_frame"  # JSON, but not an object with a string "type"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"  # wrong type or value out of range
    EMPTY_TEXT = "empty_text"
    TEXT_TOO_LONG = "text_too_long"
    FRAME_TOO_LARGE = "frame_too_large"
    AUTH_REQUIRED = "auth_required"
    AUTH_FAILED = "auth_failed"
    ALREADY_AUTHENTICATED = "already_authenticated"
    FORBIDDEN = "forbidden"  # the role may not do this at all
    CONVERSATION_NOT_FOUND = "conversation_not_found"  # missing, or not the caller's: no difference shown
    CONVERSATION_CLOSED = "conversation_closed"
    INVALID_STATE = "invalid_state"
    COMPLIANCE_BLOCKED = "compliance_blocked"
    HELD_FOR_REVIEW = "held_for_review"
    ALREADY_TAKEN = "already_taken"
    ROUTING_REJECTED = "routing_rejected"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"  # storage down: retry with the same client id
    INTERNAL_ERROR = "internal_error"


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down: reconnect elsewhere and resume
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    AUTH_FAILED = 4001  # no, bad, expired or forged token, or auth too late
    FORBIDDEN = 4003  # banned user or address, origin not allowed
    RATE_LIMITED = 4008  # kept flooding after rate_limited errors
    SLOW_CONSUMER = 4009  # did not read fast enough; reconnect and resume
    TOO_MANY_CONNECTIONS = 4010
    REPLACED = 4011  # reserved


class ProtocolError(Exception):
    """A client frame or request the hub refuses; carries the wire error code."""

    def __init__(self, code: ErrorCode, message: str, *, field: str | None = None, **extra: Any):
        super().__init__(message)
        self.cid: str | None = None  # set once the frame's cid is known, so the error answers it
        self.code = code
        self.message = message
        self.field = field
        self.extra = extra

    def to_event(self, cid: str | None) -> dict[str, Any]:
        event: dict[str, Any] = {"type": "error", "code": str(self.code), "message": self.message}
        if cid is not None:
            event["cid"] = cid
        if self.field:
            event["field"] = self.field
        event.update(self.extra)
        return event


ROLES = ("investor", "advisor", "supervisor", "admin")
STAFF_ROLES = frozenset({"advisor", "supervisor", "admin"})
CHANNELS = ("web", "app", "wechat", "miniprogram", "h5", "douyin", "weibo", "toutiao", "api")
PRESENCE = ("online", "away", "offline")
MAX_CID_CHARS = 64
MAX_ID_CHARS = 64


@dataclass(frozen=True, slots=True)
class Frame:
    """A validated client frame: its type, optional client id and typed fields."""

    type: str
    cid: str | None
    fields: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


# Field specs per frame type: name -> (python type, required). Strings are length-checked below.
_STR, _INT = str, int
FRAME_FIELDS: dict[str, dict[str, tuple[type, bool]]] = {
    "auth": {"token": (_STR, True)},
    "start": {"channel": (_STR, False), "group": (_STR, False)},
    "send": {"conversation_id": (_STR, True), "text": (_STR, True)},
    "resume": {"conversation_id": (_STR, True), "after_seq": (_INT, True)},
    "handoff": {"conversation_id": (_STR, True)},
    "typing": {"conversation_id": (_STR, True)},
    "close": {"conversation_id": (_STR, True)},
    "rate": {"conversation_id": (_STR, True), "score": (_INT, True), "comment": (_STR, False)},
    "leave_message": {"conversation_id": (_STR, True), "text": (_STR, True), "contact": (_STR, False)},
    "presence": {"status": (_STR, True)},
    "claim": {"conversation_id": (_STR, True)},
    "transfer": {
        "conversation_id": (_STR, True),
        "to_advisor": (_STR, False),
        "to_group": (_STR, False),
        "note": (_STR, False),
    },
    "reassign": {"conversation_id": (_STR, True), "advisor_id": (_STR, True)},
    "watch": {"conversation_id": (_STR, True)},
    "ping": {},
}


def decode_json(raw: str | bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"frame is not valid JSON: {exc}") from None


def cid_of(raw: str | bytes) -> str | None:
    """The frame's valid cid, or None (never raises): so even a refused frame's answer can be
    matched to it by the client."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    cid = data.get("cid") if isinstance(data, dict) else None
    return cid if isinstance(cid, str) and 0 < len(cid) <= MAX_CID_CHARS else None


def parse_frame(raw: str | bytes, *, max_text_chars: int) -> Frame:
    """Validate one client frame; raises ProtocolError with the code the client will see."""
    data = decode_json(raw)
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError(ErrorCode.BAD_FRAME, 'a frame is a JSON object with a string "type"')
    cid = data.get("cid")
    if cid is not None and (not isinstance(cid, str) or not 0 < len(cid) <= MAX_CID_CHARS):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"cid must be a string of 1-{MAX_CID_CHARS} characters", field="cid"
        )
    spec = FRAME_FIELDS.get(data["type"])
    if spec is None:
        error = ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {data['type'][:40]!r}")
        error.cid = cid
        raise error
    try:
        fields = _typed_fields(data, spec)
        _check_values(data["type"], fields, max_text_chars)
    except ProtocolError as exc:
        exc.cid = cid
        raise
    return Frame(type=data["type"], cid=cid, fields=fields)


def _typed_fields(data: dict[str, Any], spec: dict[str, tuple[type, bool]]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, (kind, required) in spec.items():
        value = data.get(name)
        if value is None:
            if required:
                raise ProtocolError(ErrorCode.MISSING_FIELD, f"{data['type']} needs {name!r}", field=name)
            continue
        # bool is an int in Python; the wire does not treat true as 1.
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, f"{name!r} must be a {kind.__name__}", field=name
            )
        fields[name] = value
    return fields


def check_text(text: str, max_text_chars: int) -> str:
    if len(text) > max_text_chars:
        raise ProtocolError(
            ErrorCode.TEXT_TOO_LONG, f"text is {len(text)} characters; the limit is {max_text_chars}",
            field="text", limit=max_text_chars,
        )
    if not text.strip():
        raise ProtocolError(ErrorCode.EMPTY_TEXT, "text is empty", field="text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "text contains lone surrogates", field="text") from None
    return text


def _check_values(kind: str, fields: dict[str, Any], max_text_chars: int) -> None:
    for name in ("conversation_id", "advisor_id", "to_advisor", "to_group", "group"):
        value = fields.get(name)
        if value is not None and not 0 < len(value) <= MAX_ID_CHARS:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"{name!r} must be 1-{MAX_ID_CHARS} characters", field=name)
    if "text" in fields:
        check_text(fields["text"], max_text_chars)
    for name in ("note", "comment", "contact"):
        if name in fields and len(fields[name]) > max_text_chars:
            raise ProtocolError(ErrorCode.TEXT_TOO_LONG, f"{name!r} is too long", field=name)
    if kind == "resume" and not 0 <= fields["after_seq"] < 2**53:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "after_seq must be between 0 and 2^53", field="after_seq")
    if kind == "rate" and not 1 <= fields["score"] <= 5:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "score must be 1 to 5", field="score")
    if kind == "presence" and fields["status"] not in PRESENCE:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"status must be one of {', '.join(PRESENCE)}", field="status")
    if kind == "start" and fields.get("channel", "web") not in CHANNELS:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"channel must be one of {', '.join(CHANNELS)}", field="channel")
    if kind == "transfer" and not (fields.get("to_advisor") or fields.get("to_group")):
        raise ProtocolError(ErrorCode.MISSING_FIELD, "transfer needs to_advisor or to_group", field="to_advisor")


def encode(event: dict[str, Any]) -> str:
    return orjson.dumps(event).decode()
