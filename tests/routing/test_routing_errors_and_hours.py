"""Bad input (each RoutingError code), business hours, metrics and the default profile."""

from __future__ import annotations

import datetime

import pytest

from routing import (
    AdvisorSpec,
    AdvisorStatus,
    Assigned,
    ChatRequest,
    OpeningWindow,
    Router,
    RoutingConfig,
    RoutingError,
)


def code_of(call) -> str:
    with pytest.raises(RoutingError) as err:
        call()
    assert err.value.message
    return err.value.code


def test_bad_input_codes() -> None:
    r = Router(RoutingConfig(group_licences={"margin": "mq"}))
    r.upsert_advisor(AdvisorSpec("a", frozenset({"general"})), now=0)
    spec = AdvisorSpec
    assert code_of(lambda: r.upsert_advisor(spec("x", frozenset({"nowhere"})), 0)) == (
        "unknown_group"
    )
    assert code_of(lambda: r.upsert_advisor(spec("x", frozenset({"general"}), capacity=0), 0)) == (
        "invalid_capacity"
    )
    assert code_of(lambda: r.upsert_advisor(spec("x", frozenset({"margin"})), 0)) == (
        "missing_licence"
    )
    assert code_of(lambda: r.set_capacity("a", -1, 0)) == "invalid_capacity"
    assert code_of(lambda: r.set_capacity("a", 0, 0)) == "invalid_capacity"
    assert code_of(lambda: r.set_capacity("ghost", 3, 0)) == "unknown_advisor"
    assert code_of(lambda: r.set_status("ghost", AdvisorStatus.ONLINE, 0)) == "unknown_advisor"
    assert code_of(lambda: r.set_status("a", "online", 0)) == "invalid_status"  # type: ignore[arg-type]
    assert code_of(lambda: r.disconnected("ghost", 0)) == "unknown_advisor"
    assert code_of(lambda: r.submit(ChatRequest("c", "nowhere"), 0)) == "unknown_group"
    assert code_of(lambda: r.submit(ChatRequest("c", "general", star=0), 0)) == "invalid_star"
    assert code_of(lambda: r.submit(ChatRequest("c", "general", star=6), 0)) == "invalid_star"
    r.submit(ChatRequest("c", "general"), 0)
    assert code_of(lambda: r.submit(ChatRequest("c", "general"), 0)) == "duplicate_conversation"
    assert code_of(lambda: r.close("nope", 0)) == "unknown_conversation"
    assert code_of(lambda: r.transfer("nope", 0, to_group="general")) == "unknown_conversation"
    assert code_of(lambda: r.reassign("nope", "a", 0)) == "unknown_conversation"
    assert code_of(lambda: r.reassign("c", "ghost", 0)) == "unknown_advisor"
    assert code_of(lambda: r.responded("nope", "a", 0)) == "unknown_conversation"
    assert code_of(lambda: r.is_open("nowhere", datetime.time(9), 0)) == "unknown_group"
    assert code_of(lambda: r.is_open("general", datetime.time(9), 7)) == "invalid_weekday"
    # Nothing refused above left a trace.
    assert r.queue_position("c") == (1, 300.0)
    assert r.metrics(1).advisors["a"].capacity == 5


def test_invalid_config() -> None:
    assert code_of(lambda: RoutingConfig(default_capacity=0)) == "invalid_config"
    assert code_of(lambda: RoutingConfig(group_fallback={"margin": "mars"})) == "invalid_config"
    assert code_of(lambda: RoutingConfig(group_fallback={"margin": "margin"})) == "invalid_config"
    assert code_of(lambda: RoutingConfig(aging_s_per_star=0)) == "invalid_config"
    assert code_of(lambda: RoutingConfig(grab_groups=frozenset({"x"}))) == "invalid_config"


def test_customer_without_profile_is_star_one_without_dedicated_advisor() -> None:
    request = ChatRequest("anon", "general")
    assert request.star == 1 and request.dedicated_advisor is None and request.team is None
    r = Router(RoutingConfig(default_capacity=1))
    r.upsert_advisor(AdvisorSpec("a", frozenset({"general"})), 0)
    r.set_status("a", AdvisorStatus.ONLINE, 0)
    r.submit(ChatRequest("busy", "general"), 0)
    r.submit(request, now=1)
    r.submit(ChatRequest("known", "general", star=2), now=2)
    assert r.queue_position("known")[0] == 1 and r.queue_position("anon")[0] == 2


def test_dedicated_advisor_not_known_yet_falls_back_to_group() -> None:
    r = Router(RoutingConfig())
    r.upsert_advisor(AdvisorSpec("a", frozenset({"general"})), 0)
    r.set_status("a", AdvisorStatus.ONLINE, 0)
    out = r.submit(ChatRequest("v", "general", star=5, dedicated_advisor="later"), 1)
    assert out == [Assigned("v", "a", "least_loaded")]


def test_business_hours_per_group() -> None:
    weekdays = frozenset(range(5))
    cfg = RoutingConfig(
        business_hours={
            "account": (OpeningWindow(weekdays, datetime.time(9), datetime.time(17)),),
            # Overnight desk: Friday 22:00 to Saturday 02:00.
            "trading": (OpeningWindow(frozenset({4}), datetime.time(22), datetime.time(2)),),
            "complaints": (),
        }
    )
    r = Router(cfg)
    assert r.is_open("account", datetime.time(9, 0), 0)
    assert r.is_open("account", datetime.time(16, 59), 4)
    assert not r.is_open("account", datetime.time(17, 0), 4)
    assert not r.is_open("account", datetime.time(8, 59), 2)
    assert not r.is_open("account", datetime.time(10), 5)  # Saturday
    assert r.is_open("trading", datetime.time(23), 4)
    assert r.is_open("trading", datetime.time(1, 59), 5)
    assert not r.is_open("trading", datetime.time(2), 5)
    assert not r.is_open("trading", datetime.time(23), 3)
    assert not r.is_open("complaints", datetime.time(12), 2)  # no windows: closed
    assert r.is_open("general", datetime.time(3), 6)  # not configured: 7x24


def test_metrics_per_group_and_advisor() -> None:
    r = Router(RoutingConfig(default_capacity=1, group_fallback={}))
    r.upsert_advisor(AdvisorSpec("a", frozenset({"general", "wealth"}), capacity=2), 0)
    r.upsert_advisor(AdvisorSpec("b", frozenset({"wealth"})), 0)
    r.set_status("a", AdvisorStatus.ONLINE, 0)
    for i, cid in enumerate(["g1", "g2", "g3", "g4"]):
        r.submit(ChatRequest(cid, "general"), now=10 * i)
    m = r.metrics(100)
    assert m.groups["general"].queue_length == 2
    assert m.groups["general"].longest_wait_s == 80.0
    assert m.groups["general"].online_advisors == 1
    assert m.groups["wealth"].online_capacity == 2
    a = m.advisors["a"]
    assert (a.status, a.open_chats, a.capacity, a.handled_today) == (AdvisorStatus.ONLINE, 2, 2, 0)
    assert m.advisors["b"].status is AdvisorStatus.OFFLINE
    r.close("g1", 101)
    r.close("g2", 102)
    assert r.metrics(103).advisors["a"].handled_today == 2
    r.reset_day(104)
    assert r.metrics(105).advisors["a"].handled_today == 0
    assert r.metrics(105).groups["general"].queue_length == 0
