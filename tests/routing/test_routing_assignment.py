"""Least-loaded assignment, capacity, presence, skills, licences and client tiers."""

from __future__ import annotations

from routing import (
    AdvisorSpec,
    AdvisorStatus,
    Assigned,
    ChatRequest,
    Queued,
    Router,
    RoutingConfig,
)


def online(router: Router, advisor_id: str, groups: set[str], now: float = 0.0, **kw) -> None:
    router.upsert_advisor(AdvisorSpec(advisor_id, groups=frozenset(groups), **kw), now)
    router.set_status(advisor_id, AdvisorStatus.ONLINE, now)


def chat(cid: str, group: str = "general", **kw) -> ChatRequest:
    return ChatRequest(cid, group, **kw)


def assigned(decisions: list) -> dict[str, tuple[str, str]]:
    return {
        d.conversation_id: (d.advisor_id, d.reason) for d in decisions if isinstance(d, Assigned)
    }


def test_least_loaded_counts_open_chats_not_chats_ever_received() -> None:
    r = Router(RoutingConfig())
    online(r, "a", {"general"})
    r.submit(chat("first"), now=0)  # a: 1 open
    online(r, "b", {"general"}, now=1)
    assert assigned(r.submit(chat("held"), now=2)) == {"held": ("b", "least_loaded")}
    r.close("first", now=3)  # a: 0 open, 1 handled; b: 1 open
    # a has received as many chats as b but has fewer open now: a wins, every time.
    for i in range(3):
        assert assigned(r.submit(chat(f"x{i}"), now=4 + i)) == {f"x{i}": ("a", "least_loaded")}
        r.close(f"x{i}", now=4.5 + i)
    assert r.metrics(10).advisors["a"].handled_today == 4
    assert r.metrics(10).advisors["b"].open_chats == 1


def test_ties_go_to_longest_idle_since_last_assignment() -> None:
    r = Router(RoutingConfig())
    for name in ("c", "b", "a"):
        online(r, name, {"general"})
    r.submit(chat("1"), now=1)
    first = r.assigned_to("1")
    r.submit(chat("2"), now=2)
    second = r.assigned_to("2")
    r.submit(chat("3"), now=3)
    third = r.assigned_to("3")
    assert {first, second, third} == {"a", "b", "c"}
    for c in ("3", "1", "2"):  # the order of closing must not matter, only assignment time
        r.close(c, now=5)
    r.submit(chat("4"), now=6)
    assert r.assigned_to("4") == first
    r.submit(chat("5"), now=7)
    assert r.assigned_to("5") == second


def test_never_above_capacity_and_override_per_advisor() -> None:
    r = Router(RoutingConfig(default_capacity=2))
    online(r, "a", {"general"})
    online(r, "b", {"general"}, capacity=1)
    decisions = [d for i in range(4) for d in r.submit(chat(f"c{i}"), now=i)]
    owners = [r.assigned_to(f"c{i}") for i in range(4)]
    assert owners.count("a") == 2 and owners.count("b") == 1 and owners.count(None) == 1
    assert isinstance(decisions[-1], Queued) and decisions[-1].position == 1


def test_away_keeps_chats_but_gets_no_new_ones() -> None:
    r = Router(RoutingConfig())
    online(r, "a", {"general"})
    r.submit(chat("1"), now=0)
    assert r.set_status("a", AdvisorStatus.AWAY, now=1) == []
    assert r.assigned_to("1") == "a"
    assert isinstance(r.submit(chat("2"), now=2)[0], Queued)
    # Back online: the queued chat is assigned in the same call.
    assert assigned(r.set_status("a", AdvisorStatus.ONLINE, now=3)) == {"2": ("a", "least_loaded")}


def test_only_advisors_of_the_requested_group_are_used() -> None:
    r = Router(RoutingConfig(group_fallback={}))
    online(r, "acc", {"account"})
    online(r, "trd", {"trading"})
    r.submit(chat("1", "trading"), now=0)
    r.submit(chat("2", "account"), now=0)
    r.submit(chat("3", "margin"), now=0)
    assert r.assigned_to("1") == "trd"
    assert r.assigned_to("2") == "acc"
    assert r.assigned_to("3") is None and r.queue_position("3") == (1, 300.0)


def test_licence_required_by_group_or_request() -> None:
    cfg = RoutingConfig(group_licences={"margin": "margin_qual"}, group_fallback={})
    r = Router(cfg)
    online(r, "plain", {"general"})
    online(r, "licensed", {"margin", "general"}, licences=frozenset({"margin_qual", "sac"}))
    r.submit(chat("m", "margin"), now=0)
    assert r.assigned_to("m") == "licensed"
    # A general chat that needs the investment-advice licence skips the unlicensed advisor
    # even though it is less loaded.
    r.submit(chat("g", "general", required_licence="sac"), now=1)
    assert r.assigned_to("g") == "licensed"
    r.submit(chat("h", "general", required_licence="nobody_has_it"), now=2)
    assert r.assigned_to("h") is None


def test_vip_goes_to_dedicated_advisor_then_team_then_pool() -> None:
    r = Router(RoutingConfig(default_capacity=1))
    online(r, "pool1", {"wealth"})
    online(r, "mate", {"trading"}, team="t1")
    online(r, "mine", {"trading"}, team="t1")
    vip = {"star": 5, "dedicated_advisor": "mine", "team": "t1"}
    assert assigned(r.submit(chat("v1", "wealth", **vip), now=0)) == {"v1": ("mine", "dedicated")}
    # Dedicated is full -> a team member, even outside the group.
    assert assigned(r.submit(chat("v2", "wealth", **vip), now=1)) == {"v2": ("mate", "team")}
    # Team full -> the group.
    assert assigned(r.submit(chat("v3", "wealth", **vip), now=2)) == {
        "v3": ("pool1", "least_loaded")
    }


def test_low_star_ignores_dedicated_advisor() -> None:
    r = Router(RoutingConfig())
    online(r, "mine", {"general"})
    online(r, "other", {"general"})
    r.submit(chat("warm", "general"), now=0)  # makes "mine" or "other" busier
    busy = r.assigned_to("warm")
    idle = "other" if busy == "mine" else "mine"
    r.submit(chat("c", "general", star=3, dedicated_advisor=busy), now=1)
    assert r.assigned_to("c") == idle


def test_vip_dedicated_advisor_picks_its_client_from_the_queue_when_free() -> None:
    r = Router(RoutingConfig(default_capacity=1))
    online(r, "mine", {"wealth"})
    r.submit(chat("busy", "wealth"), now=0)
    r.submit(chat("vip", "wealth", star=4, dedicated_advisor="mine"), now=1)
    assert r.queue_position("vip") is not None
    assert assigned(r.close("busy", now=2)) == {"vip": ("mine", "dedicated")}


def test_skill_fallback_to_wider_group_after_timeout() -> None:
    cfg = RoutingConfig(group_fallback={"margin": "general"}, fallback_after_s=60)
    r = Router(cfg)
    online(r, "gen", {"general"})
    [q] = r.submit(chat("m", "margin"), now=100)
    assert isinstance(q, Queued)
    assert r.next_deadline() == 160
    assert r.tick(159.9) == []
    assert assigned(r.tick(160)) == {"m": ("gen", "fallback")}


def test_fallback_chains_and_queues_in_wider_group_when_everyone_is_busy() -> None:
    cfg = RoutingConfig(
        default_capacity=1,
        group_fallback={"margin": "trading", "trading": "general"},
        fallback_after_s=10,
    )
    r = Router(cfg)
    online(r, "gen", {"general"})
    r.submit(chat("g", "general"), now=0)  # gen is now full
    r.submit(chat("m", "margin"), now=0)
    r.tick(10)  # widened to trading: nobody there
    r.tick(20)  # widened to general: gen is full, so it waits in general's lane too
    assert r.assigned_to("m") is None
    assert r.next_deadline() is not None  # only the no-answer timer of "g" is left
    assert assigned(r.close("g", now=21)) == {"m": ("gen", "fallback")}


def test_resubmitted_chat_with_old_created_at_falls_back_immediately() -> None:
    r = Router(RoutingConfig(group_fallback={"margin": "general"}, fallback_after_s=60))
    online(r, "gen", {"general"})
    r.submit(chat("m", "margin", created_at=0.0), now=500)
    assert r.assigned_to("m") == "gen"
