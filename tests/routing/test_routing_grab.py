"""Grab mode: pooled chats, exactly one winning claim, fallback to automatic assignment."""

from __future__ import annotations

import pytest

from routing import (
    AdvisorSpec,
    AdvisorStatus,
    Assigned,
    ChatRequest,
    Offered,
    PoolWithdrawn,
    Queued,
    Router,
    RoutingConfig,
    RoutingError,
)


def grab_router(**kw) -> Router:
    cfg = RoutingConfig(grab_groups=frozenset({"general"}), pool_fallback_after_s=30, **kw)
    r = Router(cfg)
    for name, groups in (("a", {"general"}), ("b", {"general"}), ("t", {"trading"})):
        r.upsert_advisor(AdvisorSpec(name, groups=frozenset(groups)), now=0)
        r.set_status(name, AdvisorStatus.ONLINE, now=0)
    r.upsert_advisor(AdvisorSpec("off", groups=frozenset({"general"})), now=0)
    return r


def test_chat_in_grab_group_is_offered_to_eligible_online_advisors() -> None:
    r = grab_router()
    assert r.submit(ChatRequest("c", "general"), now=1) == [Offered("c", "general", ("a", "b"))]
    assert r.assigned_to("c") is None
    assert r.metrics(2).groups["general"].pool_size == 1
    # Non-grab groups keep automatic assignment.
    assert r.submit(ChatRequest("d", "trading"), now=1) == [Assigned("d", "t", "least_loaded")]


def test_exactly_one_claim_wins() -> None:
    r = grab_router()
    r.submit(ChatRequest("c", "general"), now=1)
    assert r.claim("b", "c", now=2) == [
        PoolWithdrawn("c", "claimed"),
        Assigned("c", "b", "claim"),
    ]
    with pytest.raises(RoutingError) as err:
        r.claim("a", "c", now=2.001)
    assert err.value.code == "already_taken"
    assert r.assigned_to("c") == "b"
    assert r.metrics(3).groups["general"].pool_size == 0


def test_claim_refusals() -> None:
    r = grab_router(default_capacity=1)
    r.submit(ChatRequest("c", "general"), now=1)
    with pytest.raises(RoutingError) as err:
        r.claim("t", "c", now=2)
    assert err.value.code == "not_eligible"
    with pytest.raises(RoutingError) as err:
        r.claim("off", "c", now=2)
    assert err.value.code == "advisor_offline"
    with pytest.raises(RoutingError) as err:
        r.claim("a", "nope", now=2)
    assert err.value.code == "unknown_conversation"
    with pytest.raises(RoutingError) as err:
        r.claim("ghost", "c", now=2)
    assert err.value.code == "unknown_advisor"
    r.claim("a", "c", now=3)
    r.submit(ChatRequest("c2", "general"), now=4)
    with pytest.raises(RoutingError) as err:
        r.claim("a", "c2", now=5)
    assert err.value.code == "at_capacity"
    # Refused claims changed nothing: the chat is still in the pool for b.
    assert r.claim("b", "c2", now=6)[-1] == Assigned("c2", "b", "claim")


def test_unclaimed_chat_falls_back_to_automatic_assignment() -> None:
    r = grab_router()
    r.submit(ChatRequest("c", "general"), now=100)
    assert r.next_deadline() == 130
    assert r.tick(129) == []
    assert r.tick(130) == [PoolWithdrawn("c", "fallback"), Assigned("c", "a", "least_loaded")]
    with pytest.raises(RoutingError) as err:
        r.claim("b", "c", now=131)
    assert err.value.code == "already_taken"


def test_unclaimed_chat_with_nobody_free_is_queued_and_cannot_be_claimed() -> None:
    r = grab_router(default_capacity=1)
    r.set_status("a", AdvisorStatus.AWAY, now=0)
    r.set_status("b", AdvisorStatus.AWAY, now=0)
    assert r.submit(ChatRequest("c", "general"), now=0) == [Offered("c", "general", ())]
    out = r.tick(30)
    assert out[0] == PoolWithdrawn("c", "fallback") and isinstance(out[1], Queued)
    with pytest.raises(RoutingError) as err:
        r.claim("a", "c", now=31)
    assert err.value.code == "not_offered"
    assert r.set_status("a", AdvisorStatus.ONLINE, now=32) == [Assigned("c", "a", "least_loaded")]


def test_vip_in_grab_group_still_goes_to_dedicated_advisor_first() -> None:
    r = grab_router()
    out = r.submit(ChatRequest("v", "general", star=5, dedicated_advisor="b"), now=1)
    assert out == [Assigned("v", "b", "dedicated")]


def test_closing_a_pooled_chat_withdraws_it() -> None:
    r = grab_router()
    r.submit(ChatRequest("c", "general"), now=1)
    assert r.close("c", now=2) == [PoolWithdrawn("c", "closed")]
    assert r.tick(100) == []


def test_claim_needs_the_licence_the_chat_requires() -> None:
    r = grab_router()
    r.upsert_advisor(
        AdvisorSpec("lic", groups=frozenset({"general"}), licences=frozenset({"sac"})), now=0
    )
    r.set_status("lic", AdvisorStatus.ONLINE, now=0)
    out = r.submit(ChatRequest("c", "general", required_licence="sac"), now=1)
    assert out == [Offered("c", "general", ("lic",))]
    with pytest.raises(RoutingError) as err:
        r.claim("a", "c", now=2)
    assert err.value.code == "not_eligible"
    assert r.claim("lic", "c", now=3)[-1] == Assigned("c", "lic", "claim")
