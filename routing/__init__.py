"""Routing engine: decides which human advisor serves each chat the bot could not answer.

A pure library: the hub feeds `Router` events with the current time and carries out the
decisions it returns. See docs/routing.md.
"""

from routing.config import DEFAULT_GROUP_FALLBACK, DEFAULT_GROUPS, OpeningWindow, RoutingConfig
from routing.model import (
    AdvisorMetrics,
    AdvisorSpec,
    AdvisorStatus,
    Assigned,
    ChatRequest,
    Decision,
    GroupMetrics,
    Offered,
    PoolWithdrawn,
    PositionChanged,
    Queued,
    RoutingError,
    RoutingMetrics,
    Unassigned,
)
from routing.router import Router

__all__ = [
    "DEFAULT_GROUPS",
    "DEFAULT_GROUP_FALLBACK",
    "AdvisorMetrics",
    "AdvisorSpec",
    "AdvisorStatus",
    "Assigned",
    "ChatRequest",
    "Decision",
    "GroupMetrics",
    "Offered",
    "OpeningWindow",
    "PoolWithdrawn",
    "PositionChanged",
    "Queued",
    "Router",
    "RoutingConfig",
    "RoutingError",
    "RoutingMetrics",
    "Unassigned",
]
