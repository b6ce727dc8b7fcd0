"""One settings object for the hub, read from CHATSERVER_* environment variables and CLI flags.

Every default runs embedded on a laptop: SQLite under the data dir, in-process bus, demo data.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A fixed secret is only acceptable in demo mode; outside it the hub refuses to start.
DEMO_SECRET = "demo-secret-not-for-production-use-only"


class SettingsError(ValueError):
    """A setting has a value the hub cannot run with."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = field(default="127.0.0.1", metadata={"help": "interface to listen on"})
    port: int = field(default=8080, metadata={"help": "TCP port to listen on"})
    data_dir: str = field(default="./data", metadata={"help": "where the SQLite file and logs live"})
    database_url: str = field(
        default="",
        metadata={"help": "SQLAlchemy async URL; empty: sqlite+aiosqlite:///DATA_DIR/chatserver.sqlite3"},
    )
    redis_url: str = field(default="", metadata={"help": "redis:// URL of the shared bus; empty: in-process bus"})
    redis_prefix: str = field(default="chatserver:", metadata={"help": "prefix of every Redis key and channel (one per deployment)"})
    node_id: str = field(default="", metadata={"help": "this node's id in the cluster; empty: a random id per start"})
    secret: str = field(default="", metadata={"help": "HMAC secret for tokens (required outside demo mode)"})
    demo: bool = field(default=True, metadata={"help": "seed demo advisors, customers and print their logins"})
    token_ttl_s: int = field(default=12 * 3600, metadata={"help": "lifetime of a login token in seconds"})
    max_text_chars: int = field(default=4000, metadata={"help": "longest chat message accepted"})
    max_frame_bytes: int = field(default=64 * 1024, metadata={"help": "largest WebSocket frame accepted"})
    auth_timeout_s: float = field(default=10.0, metadata={"help": "time allowed for the first (auth) frame"})
    heartbeat_s: float = field(default=30.0, metadata={"help": "WebSocket ping interval; a peer silent for 2x is dropped"})
    send_queue_max: int = field(default=1000, metadata={"help": "frames queued to one slow client before it is dropped"})
    frames_in_flight: int = field(default=32, metadata={"help": "frames of one socket handled at once (in order within a conversation)"})
    default_capacity: int = field(default=5, metadata={"help": "open chats per advisor unless overridden"})
    grace_period_s: float = field(default=60.0, metadata={"help": "an advisor who drops keeps their chats this long"})
    no_answer_timeout_s: float = field(default=120.0, metadata={"help": "auto-transfer a chat its advisor does not answer"})
    fallback_after_s: float = field(default=60.0, metadata={"help": "queued this long: widen to the fallback group"})
    pool_fallback_after_s: float = field(default=30.0, metadata={"help": "unclaimed in the grab pool this long: auto-assign"})
    grab_groups: str = field(default="", metadata={"help": "comma-separated groups that use grab mode (抢单)"})
    channel_retry_max: int = field(default=6, metadata={"help": "attempts to deliver a reply to a channel callback"})
    commit_batch_max: int = field(default=256, metadata={"help": "messages grouped into one database commit at most"})
    commit_gather_ms: float = field(default=2.0, metadata={
        "help": "with fewer than 16 messages waiting, the writer waits this long for more before a commit (0: never)"})
    assist_workers: int = field(default=1, metadata={
        "help": "processes that rank the KB for advisors' suggestions (0: in the hub process; at most 1)"})
    assist_gather_ms: float = field(default=20.0, metadata={
        "help": "with a suggestion worker, collect this long before sending it a batch (0-1000)"})
    retention_days: int = field(default=0, metadata={"help": "purge closed transcripts older than this; 0: keep forever"})
    log_level: str = field(default="INFO", metadata={"help": "DEBUG, INFO, WARNING or ERROR"})
    log_json: bool = field(default=True, metadata={"help": "structured JSON log lines"})
    business_hours: str = field(
        default="",
        metadata={"help": 'human service hours per group, e.g. "complaints=mon-fri 09:00-17:00;general=mon-sun 08:00-22:00"; '
                          "a group not named is served 7x24"},
    )
    timezone: str = field(default="Asia/Shanghai", metadata={"help": "IANA time zone the business hours are in"})
    allowed_origins: str = field(default="", metadata={"help": "comma-separated Origins allowed on /ws; empty: same host only"})
    max_connections_per_user: int = field(default=10, metadata={"help": "open WebSocket connections one account may hold per process (close 4010 beyond)"})

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{Path(self.data_dir).resolve() / 'chatserver.sqlite3'}"

    @property
    def effective_secret(self) -> str:
        return self.secret or DEMO_SECRET

    @property
    def grab_group_set(self) -> frozenset[str]:
        return frozenset(g.strip() for g in self.grab_groups.split(",") if g.strip())

    def validate(self) -> Settings:
        if not self.demo and (not self.secret or self.secret == DEMO_SECRET):
            raise SettingsError(
                "CHATSERVER_SECRET must be set to a private value outside demo mode (--no-demo)"
            )
        if self.secret and len(self.secret) < 32:
            raise SettingsError("CHATSERVER_SECRET must be at least 32 characters (HS256 wants a 256-bit key)")
        if not 0 < self.port < 65536:
            raise SettingsError(f"port {self.port} is out of range")
        if self.max_text_chars < 1 or self.max_frame_bytes < 256:
            raise SettingsError("max_text_chars must be >= 1 and max_frame_bytes >= 256")
        if self.default_capacity < 1:
            raise SettingsError("default_capacity must be at least 1")
        if self.frames_in_flight < 1:
            raise SettingsError("frames_in_flight must be at least 1")
        if not 0 <= self.commit_gather_ms <= 100:
            raise SettingsError("commit_gather_ms must be from 0 to 100")
        if self.assist_workers not in (0, 1):
            raise SettingsError("assist_workers must be 0 (in the hub process) or 1 (one worker process)")
        if not 0 <= self.assist_gather_ms <= 1000:
            raise SettingsError("assist_gather_ms must be from 0 to 1000")
        self.business_hours_windows  # noqa: B018 - parse now so a typo stops the start, not a handoff
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise SettingsError(f"unknown time zone {self.timezone!r}") from None
        return self

    @property
    def business_hours_windows(self) -> dict[str, list[tuple[frozenset[int], datetime.time, datetime.time]]]:
        """Parse business_hours into {group: [(weekdays 0=Mon, start, end)]}; SettingsError if malformed."""
        windows: dict[str, list[tuple[frozenset[int], datetime.time, datetime.time]]] = {}
        for part in filter(None, (p.strip() for p in self.business_hours.split(";"))):
            group, _, spec = part.partition("=")
            for window in filter(None, (w.strip() for w in spec.split(","))):
                try:
                    days, hours = window.split()
                    start_text, end_text = hours.split("-")
                    windows.setdefault(group.strip(), []).append(
                        (_weekdays(days), _clock(start_text), _clock(end_text)))
                except ValueError:
                    raise SettingsError(
                        f"business_hours: cannot read {window!r} for {group.strip()!r}; "
                        'write e.g. "complaints=mon-fri 09:00-17:00"') from None
        return windows

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _weekdays(text: str) -> frozenset[int]:
    days: set[int] = set()
    for item in text.lower().split("+"):
        first, _, last = item.partition("-")
        a, b = _DAYS.index(first), _DAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days)


def _clock(text: str) -> datetime.time:
    if text == "24:00":
        return datetime.time.max
    return datetime.time.fromisoformat(text)


def _env_name(name: str) -> str:
    return "CHATSERVER_" + name.upper()


def _parse(kind: type | str, raw: str) -> Any:
    if kind in (bool, "bool"):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind in (int, "int"):
        return int(raw)
    if kind in (float, "float"):
        return float(raw)
    return raw


def from_env(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from CHATSERVER_* variables, then explicit overrides (CLI flags win)."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        env = environ.get(_env_name(f.name))
        if env is not None:
            try:
                values[f.name] = _parse(f.type, env)
            except ValueError as exc:
                raise SettingsError(f"{_env_name(f.name)}={env!r}: {exc}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, help text from the field metadata, default from the environment."""
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata.get('help', '')} (env {_env_name(f.name)}; default {f.default!r})"
        if f.type in (bool, "bool"):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=_arg_type(f.type), default=None, help=help_text)


def _arg_type(kind: type | str) -> Any:
    return {"int": int, "float": float}.get(kind if isinstance(kind, str) else kind.__name__, str)


def from_args(args: argparse.Namespace) -> Settings:
    names = {f.name for f in dataclasses.fields(Settings)}
    return from_env(**{k: v for k, v in vars(args).items() if k in names})
