"""Re-routing: disconnect grace period, no-answer auto-transfer, transfer and reassign."""

from __future__ import annotations

import pytest

from routing import (
    AdvisorSpec,
    AdvisorStatus,
    Assigned,
    ChatRequest,
    PositionChanged,
    Queued,
    Router,
    RoutingConfig,
    RoutingError,
    Unassigned,
)


def make(names: dict[str, set[str]], **kw) -> Router:
    cfg = RoutingConfig(grace_period_s=60, no_answer_timeout_s=90, group_fallback={}, **kw)
    r = Router(cfg)
    for name, groups in names.items():
        r.upsert_advisor(AdvisorSpec(name, groups=frozenset(groups)), now=0)
        r.set_status(name, AdvisorStatus.ONLINE, now=0)
    return r


def test_reconnect_within_grace_keeps_chats() -> None:
    r = make({"a": {"general"}, "b": {"general"}})
    r.submit(ChatRequest("c", "general"), now=0)
    owner = r.assigned_to("c")
    r.responded("c", owner, now=1)
    assert r.disconnected(owner, now=10) == []
    assert r.next_deadline() == 70
    assert r.set_status(owner, AdvisorStatus.ONLINE, now=50) == []
    assert r.tick(1000) == []
    assert r.assigned_to("c") == owner


def test_disconnected_advisor_gets_no_new_chats_during_grace() -> None:
    r = make({"a": {"general"}})
    r.disconnected("a", now=0)
    assert isinstance(r.submit(ChatRequest("c", "general"), now=1)[0], Queued)
    assert r.metrics(2).advisors["a"].in_grace


def test_grace_expiry_reroutes_chats_ahead_of_new_ones() -> None:
    r = make({"a": {"general"}, "b": {"general"}}, default_capacity=1)
    r.submit(ChatRequest("old", "general"), now=0)  # -> a
    r.submit(ChatRequest("other", "general"), now=1)  # -> b
    for cid in ("old", "other"):
        r.responded(cid, r.assigned_to(cid), now=2)
    r.submit(ChatRequest("vip_new", "general", star=5), now=3)  # queued
    r.disconnected("a", now=10)
    out = r.tick(70)
    assert out[0] == Unassigned("old", "a", "grace_expired")
    assert out[1] == Queued("old", "general", 1, 300.0)
    assert PositionChanged("vip_new", 2, 600.0) in out
    assert r.metrics(71).advisors["a"].status is AdvisorStatus.OFFLINE
    # The re-routed chat is served before the star-5 chat that was waiting already.
    assert r.close("other", now=80)[0] == Assigned("old", "b", "requeue")


def test_going_offline_reroutes_at_once() -> None:
    r = make({"a": {"general"}, "b": {"general"}})
    r.submit(ChatRequest("c", "general"), now=0)
    owner = r.assigned_to("c")
    other = "b" if owner == "a" else "a"
    out = r.set_status(owner, AdvisorStatus.OFFLINE, now=1)
    assert out == [Unassigned("c", owner, "advisor_offline"), Assigned("c", other, "requeue")]


def test_no_answer_auto_transfers_to_someone_else() -> None:
    r = make({"a": {"general"}, "b": {"general"}})
    r.submit(ChatRequest("c", "general"), now=0)
    first = r.assigned_to("c")
    second = "b" if first == "a" else "a"
    r.submit(ChatRequest("d", "general"), now=1)  # second now carries more load than first
    assert r.assigned_to("d") == second
    assert r.next_deadline() == 90
    out = r.tick(90)
    assert out == [Unassigned("c", first, "no_answer"), Assigned("c", second, "requeue")]


def test_no_answer_goes_back_to_same_advisor_only_if_nobody_else_can() -> None:
    r = make({"a": {"general"}})
    r.submit(ChatRequest("c", "general"), now=0)
    out = r.tick(90)
    assert out == [Unassigned("c", "a", "no_answer"), Assigned("c", "a", "requeue")]
    # The timer restarts for the new assignment; answering stops it.
    assert r.next_deadline() == 180
    r.responded("c", "a", now=100)
    assert r.next_deadline() is None
    assert r.metrics(101).advisors["a"].first_response_avg_s == 10.0


def test_responded_cancels_no_answer_timer_and_records_first_response() -> None:
    r = make({"a": {"general"}})
    r.submit(ChatRequest("c", "general"), now=0)
    r.submit(ChatRequest("d", "general"), now=10)
    r.responded("c", "a", now=4)
    r.responded("c", "a", now=50)  # later replies do not count
    r.responded("d", "a", now=18)
    assert r.metrics(60).advisors["a"].first_response_avg_s == 6.0
    assert r.tick(1000) == []
    with pytest.raises(RoutingError) as err:
        r.responded("c", "someone_else", now=61)
    assert err.value.code == "not_assigned"


def test_transfer_to_advisor() -> None:
    r = make({"a": {"general"}, "spec": {"margin"}})
    r.submit(ChatRequest("c", "general"), now=0)
    out = r.transfer("c", now=5, to_advisor="spec")
    assert out == [Unassigned("c", "a", "transfer"), Assigned("c", "spec", "transfer")]


def test_transfer_to_group_frees_capacity_for_the_queue() -> None:
    r = make({"a": {"general"}, "m": {"margin"}}, default_capacity=1)
    r.submit(ChatRequest("c", "general"), now=0)
    r.submit(ChatRequest("waiting", "general"), now=1)
    out = r.transfer("c", now=5, to_group="margin")
    assert out == [
        Unassigned("c", "a", "transfer"),
        Assigned("c", "m", "requeue"),
        Assigned("waiting", "a", "least_loaded"),
    ]


def test_transfer_to_offline_or_full_or_unlicensed_advisor_is_refused() -> None:
    r = make({"a": {"general"}, "b": {"general"}}, default_capacity=1)
    r.upsert_advisor(AdvisorSpec("off", groups=frozenset({"general"})), now=0)
    r.submit(ChatRequest("c", "general"), now=0)
    r.submit(ChatRequest("d", "general"), now=0)
    codes = {}
    for kwargs in (
        {"to_advisor": "off"},
        {"to_advisor": "ghost"},
        {"to_group": "nowhere"},
        {},
        {"to_advisor": r.assigned_to("d")},
        {"to_advisor": r.assigned_to("c")},
    ):
        with pytest.raises(RoutingError) as err:
            r.transfer("c", now=1, **kwargs)
        codes[str(kwargs)] = err.value.code
    assert list(codes.values()) == [
        "advisor_offline",
        "unknown_advisor",
        "unknown_group",
        "invalid_transfer",
        "at_capacity",
        "invalid_transfer",
    ]
    r.disconnected("b", now=2)
    with pytest.raises(RoutingError) as err:
        r.transfer("c", now=3, to_advisor="b")
    assert err.value.code == "advisor_offline"
    r2 = Router(RoutingConfig(group_licences={"margin": "mq"}))
    r2.upsert_advisor(AdvisorSpec("g", frozenset({"general"})), 0)
    r2.upsert_advisor(AdvisorSpec("m", frozenset({"margin"}), licences=frozenset({"mq"})), 0)
    r2.set_status("g", AdvisorStatus.ONLINE, 0)
    r2.submit(ChatRequest("x", "margin"), 0)
    with pytest.raises(RoutingError) as err:
        r2.transfer("x", now=1, to_advisor="g")
    assert err.value.code == "not_eligible"
    assert r2.assigned_to("x") is None


def test_supervisor_reassign_may_exceed_capacity() -> None:
    r = make({"a": {"general"}, "b": {"general"}}, default_capacity=1)
    r.submit(ChatRequest("c", "general"), now=0)
    r.submit(ChatRequest("d", "general"), now=0)
    target = r.assigned_to("d")
    source = r.assigned_to("c")
    out = r.reassign("c", target, now=1)
    assert out == [Unassigned("c", source, "reassign"), Assigned("c", target, "reassign")]
    assert r.metrics(2).advisors[target].open_chats == 2
    # Over capacity: gets nothing new until back under it.
    r.submit(ChatRequest("e", "general"), now=3)
    assert r.assigned_to("e") == source
    assert r.reassign("c", target, now=4) == []
    r.upsert_advisor(AdvisorSpec("off", groups=frozenset({"general"})), now=5)
    with pytest.raises(RoutingError) as err:
        r.reassign("c", "off", now=6)
    assert err.value.code == "advisor_offline"


def test_reassign_a_queued_chat() -> None:
    r = make({"a": {"general"}}, default_capacity=1)
    r.submit(ChatRequest("c", "general"), now=0)
    r.submit(ChatRequest("q", "general"), now=0)
    r.set_status("a", AdvisorStatus.AWAY, now=1)
    assert r.reassign("q", "a", now=2) == [Assigned("q", "a", "reassign")]


def test_restore_assignment_after_restart() -> None:
    r = Router(RoutingConfig(default_capacity=1, grace_period_s=60, group_fallback={}))
    for name in ("a", "b"):
        r.upsert_advisor(AdvisorSpec(name, groups=frozenset({"general"})), now=0)
    assert r.restore_assignment("old", "a", now=0) == []
    assert r.assigned_to("old") == "a"
    assert r.metrics(0).advisors["a"].open_chats == 1
    assert r.metrics(0).advisors["a"].in_grace
    # a reconnects in time: keeps the chat, and it counts against a's capacity.
    r.set_status("a", AdvisorStatus.ONLINE, now=10)
    r.set_status("b", AdvisorStatus.ONLINE, now=10)
    r.submit(ChatRequest("new", "general"), now=11)
    assert r.assigned_to("new") == "b"
    assert r.tick(1000) == [
        Unassigned("new", "b", "no_answer"),
        Assigned("new", "b", "requeue"),
    ]  # the restored chat counts as answered: no no-answer timer for it
    with pytest.raises(RoutingError) as err:
        r.restore_assignment("old", "b", now=12)
    assert err.value.code == "duplicate_conversation"
    with pytest.raises(RoutingError) as err:
        r.restore_assignment("x", "ghost", now=12)
    assert err.value.code == "unknown_advisor"


def test_restored_chat_is_rerouted_if_advisor_never_returns() -> None:
    r = Router(RoutingConfig(grace_period_s=60, group_fallback={}))
    for name in ("a", "b"):
        r.upsert_advisor(AdvisorSpec(name, groups=frozenset({"general", "margin"})), now=0)
    request = ChatRequest("old", "margin", star=4, created_at=-500.0)
    r.restore_assignment("old", "a", now=0, request=request)
    r.set_status("b", AdvisorStatus.ONLINE, now=1)
    assert r.next_deadline() == 60
    assert r.tick(60) == [Unassigned("old", "a", "grace_expired"), Assigned("old", "b", "requeue")]
