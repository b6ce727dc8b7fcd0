"""Values the router takes in and hands out: advisors, chat requests, decisions, errors.

Everything here is an immutable value; the router's mutable bookkeeping lives in router.py.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

MIN_STAR = 1
MAX_STAR = 5


class AdvisorStatus(enum.Enum):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


class RoutingError(Exception):
    """A refused request; `code` is stable and meant for machines, the message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class AdvisorSpec:
    """Who an advisor is: skill groups, optional capacity override, licences, 1+1+N team."""

    advisor_id: str
    groups: frozenset[str]
    capacity: int | None = None
    licences: frozenset[str] = frozenset()
    team: str | None = None
    name: str = ""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A chat the bot could not resolve and that now needs a human.

    A customer without a profile is submitted with the defaults: star 1, no dedicated
    advisor, no team. `created_at` (when the customer asked for a human) defaults to the
    `now` of submit; an earlier value keeps a resubmitted chat's place after a hub restart.
    """

    conversation_id: str
    group: str
    star: int = MIN_STAR
    dedicated_advisor: str | None = None
    team: str | None = None
    required_licence: str | None = None
    created_at: float | None = None
    offline_message: bool = False


@dataclass(frozen=True, slots=True)
class Assigned:
    conversation_id: str
    advisor_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Queued:
    conversation_id: str
    group: str
    position: int
    eta_s: float


@dataclass(frozen=True, slots=True)
class PositionChanged:
    conversation_id: str
    position: int
    eta_s: float


@dataclass(frozen=True, slots=True)
class Offered:
    conversation_id: str
    group: str
    advisor_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PoolWithdrawn:
    conversation_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Unassigned:
    conversation_id: str
    advisor_id: str
    reason: str


Decision = Assigned | Queued | PositionChanged | Offered | PoolWithdrawn | Unassigned


@dataclass(frozen=True, slots=True)
class AdvisorMetrics:
    advisor_id: str
    status: AdvisorStatus
    in_grace: bool
    open_chats: int
    capacity: int
    first_response_avg_s: float | None
    handled_today: int


@dataclass(frozen=True, slots=True)
class GroupMetrics:
    group: str
    queue_length: int
    longest_wait_s: float
    pool_size: int
    online_advisors: int
    online_capacity: int


@dataclass(frozen=True, slots=True)
class RoutingMetrics:
    advisors: dict[str, AdvisorMetrics]
    groups: dict[str, GroupMetrics]
