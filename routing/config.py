"""Routing settings and per-group business hours.

One frozen RoutingConfig is given to the Router; it is validated once, on construction.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from routing.model import MAX_STAR, MIN_STAR, RoutingError

DEFAULT_GROUPS = frozenset({"account", "trading", "margin", "wealth", "complaints", "general"})

# Complaints deliberately have no fallback: they must reach the complaints desk.
DEFAULT_GROUP_FALLBACK: Mapping[str, str] = MappingProxyType(
    {"account": "general", "trading": "general", "margin": "general", "wealth": "general"}
)


@dataclass(frozen=True, slots=True)
class OpeningWindow:
    """Open on `weekdays` (0 = Monday) from `start` inclusive to `end` exclusive.

    A window whose end is not after its start runs past midnight into the next day, e.g.
    22:00-02:00 on Friday is open Friday 22:00 to Saturday 02:00.
    """

    weekdays: frozenset[int]
    start: datetime.time
    end: datetime.time

    def is_open(self, local_time: datetime.time, weekday: int) -> bool:
        if self.start < self.end:
            return weekday in self.weekdays and self.start <= local_time < self.end
        if weekday in self.weekdays and local_time >= self.start:
            return True
        return (weekday - 1) % 7 in self.weekdays and local_time < self.end


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    groups: frozenset[str] = DEFAULT_GROUPS
    default_capacity: int = 5
    group_fallback: Mapping[str, str] = field(default_factory=lambda: DEFAULT_GROUP_FALLBACK)
    fallback_after_s: float = 60.0
    grab_groups: frozenset[str] = frozenset()
    pool_fallback_after_s: float = 30.0
    grace_period_s: float = 60.0
    no_answer_timeout_s: float = 90.0
    aging_s_per_star: float = 120.0
    business_hours: Mapping[str, tuple[OpeningWindow, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    avg_handle_time_s: float = 300.0
    group_licences: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    vip_min_star: int = 4

    def __post_init__(self) -> None:
        if not self.groups:
            raise RoutingError("invalid_config", "at least one group is required")
        if self.default_capacity < 1:
            raise RoutingError("invalid_config", "default_capacity must be at least 1")
        named = (
            set(self.group_fallback)
            | set(self.group_fallback.values())
            | set(self.grab_groups)
            | set(self.business_hours)
            | set(self.group_licences)
        )
        unknown = named - self.groups
        if unknown:
            raise RoutingError("invalid_config", f"groups not in config.groups: {sorted(unknown)}")
        for source, target in self.group_fallback.items():
            if source == target:
                raise RoutingError("invalid_config", f"group {source!r} falls back to itself")
        for name in (
            "fallback_after_s",
            "pool_fallback_after_s",
            "grace_period_s",
            "no_answer_timeout_s",
            "aging_s_per_star",
            "avg_handle_time_s",
        ):
            if not getattr(self, name) > 0:
                raise RoutingError("invalid_config", f"{name} must be positive")
        if not MIN_STAR <= self.vip_min_star <= MAX_STAR + 1:
            raise RoutingError("invalid_config", "vip_min_star must be within 1..6")
        for group, windows in self.business_hours.items():
            for window in windows:
                if not window.weekdays <= frozenset(range(7)):
                    raise RoutingError("invalid_config", f"{group}: weekdays must be 0..6")

    def is_open(self, group: str, local_time: datetime.time, weekday: int) -> bool:
        """A group without configured hours is open around the clock (7x24)."""
        if group not in self.groups:
            raise RoutingError("unknown_group", f"unknown group {group!r}")
        if not 0 <= weekday <= 6:
            raise RoutingError("invalid_weekday", f"weekday must be 0..6 (Monday=0), not {weekday}")
        windows = self.business_hours.get(group)
        if windows is None:
            return True
        return any(window.is_open(local_time, weekday) for window in windows)
