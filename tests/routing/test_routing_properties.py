"""Random event sequences against the router, checked after every event by an independent model.

The model is rebuilt only from the decisions the router returns (what the hub sees), so the
invariants below test the router's output, not its internal bookkeeping.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from routing import (
    AdvisorSpec,
    AdvisorStatus,
    Assigned,
    ChatRequest,
    Decision,
    Offered,
    PoolWithdrawn,
    PositionChanged,
    Queued,
    Router,
    RoutingConfig,
    RoutingError,
    Unassigned,
)

ADVISORS = ["a1", "a2", "a3", "a4", "a5"]
GROUPS = ["general", "margin", "account", "trading"]
LICENCES = {"margin": "mq"}
CONFIG = RoutingConfig(
    default_capacity=2,
    group_fallback={"margin": "general", "trading": "general"},
    fallback_after_s=50,
    grab_groups=frozenset({"account"}),
    pool_fallback_after_s=30,
    grace_period_s=40,
    no_answer_timeout_s=70,
    aging_s_per_star=20,
    group_licences=LICENCES,
)


class RouterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.router = Router(CONFIG)
        self.now = 0.0
        self.specs: dict[str, AdvisorSpec] = {}
        self.capacity: dict[str, int] = {}
        self.status: dict[str, AdvisorStatus] = {}
        self.grace_until: dict[str, float] = {}
        self.open: Counter[str] = Counter()
        self.requests: dict[str, ChatRequest] = {}
        self.group: dict[str, str] = {}
        self.assigned: dict[str, str] = {}
        self.queued: set[str] = set()
        self.pooled: set[str] = set()
        # The last position the hub was told for each queued chat (Queued / PositionChanged).
        self.reported: dict[str, int] = {}
        self.next_chat = 0

    # ------------------------------------------------------------ bookkeeping

    def present(self, aid: str) -> bool:
        return self.status.get(aid) is AdvisorStatus.ONLINE and aid not in self.grace_until

    def apply(self, decisions: list[Decision]) -> None:
        for i, d in enumerate(decisions):
            cid = d.conversation_id
            if isinstance(d, Assigned):
                assert cid not in self.assigned, f"{cid} assigned twice"
                assert cid not in self.pooled, f"{cid} assigned while still in the pool"
                self.assigned[cid] = d.advisor_id
                self.open[d.advisor_id] += 1
                self.queued.discard(cid)
                licence = self.requests[cid].required_licence or LICENCES.get(self.group[cid])
                assert licence is None or licence in self.specs[d.advisor_id].licences
                self.reported.pop(cid, None)
                if d.reason != "reassign":
                    assert self.present(d.advisor_id), f"{cid} given to absent {d.advisor_id}"
                    assert self.open[d.advisor_id] <= self.capacity[d.advisor_id], "over capacity"
            elif isinstance(d, Unassigned):
                assert self.assigned.pop(cid) == d.advisor_id
                self.open[d.advisor_id] -= 1
                rest = decisions[i + 1 :]
                assert any(
                    isinstance(n, Assigned | Queued | Offered) and n.conversation_id == cid
                    for n in rest
                ), "Unassigned not followed by what happens next"
            elif isinstance(d, Queued):
                # A queued chat transferred to another group is queued again there.
                assert cid not in self.assigned
                self.reported[cid] = d.position
                self.queued.add(cid)
            elif isinstance(d, Offered):
                self.pooled.add(cid)
            elif isinstance(d, PoolWithdrawn):
                self.pooled.remove(cid)
            elif isinstance(d, PositionChanged):
                assert cid in self.queued
                self.reported[cid] = d.position

    def forget(self, cid: str) -> None:
        owner = self.assigned.pop(cid, None)
        if owner is not None:
            self.open[owner] -= 1
        self.queued.discard(cid)
        self.reported.pop(cid, None)
        self.requests.pop(cid)
        self.group.pop(cid)

    def step(self, seconds: float = 1.0) -> None:
        self.now += seconds

    # ------------------------------------------------------------------ rules

    @initialize(
        teams=st.lists(st.sampled_from([None, "t1", "t2"]), min_size=5, max_size=5),
        groups=st.lists(
            st.frozensets(st.sampled_from(GROUPS), min_size=1, max_size=2), min_size=5, max_size=5
        ),
        licensed=st.lists(st.booleans(), min_size=5, max_size=5),
    )
    def staff(self, teams, groups, licensed) -> None:
        """Most sequences start with everyone online so that chats actually get assigned."""
        for aid, team, advisor_groups, lic in zip(ADVISORS, teams, groups, licensed, strict=True):
            self.upsert(aid, advisor_groups, None, lic, team)
            self.set_status(aid, AdvisorStatus.ONLINE)

    @rule(
        aid=st.sampled_from(ADVISORS),
        groups=st.frozensets(st.sampled_from(GROUPS), min_size=1, max_size=3),
        capacity=st.one_of(st.none(), st.integers(1, 3)),
        licensed=st.booleans(),
        team=st.sampled_from([None, "t1", "t2"]),
    )
    def upsert(self, aid, groups, capacity, licensed, team) -> None:
        if "margin" in groups:
            licensed = True
        spec = AdvisorSpec(
            aid, groups, capacity, frozenset({"mq"}) if licensed else frozenset(), team
        )
        self.step()
        decisions = self.router.upsert_advisor(spec, self.now)
        self.specs[aid] = spec
        self.capacity[aid] = capacity if capacity is not None else CONFIG.default_capacity
        self.status.setdefault(aid, AdvisorStatus.OFFLINE)
        self.apply(decisions)

    @rule(
        aid=st.sampled_from(ADVISORS),
        status=st.sampled_from([AdvisorStatus.ONLINE, *AdvisorStatus]),
    )
    def set_status(self, aid, status) -> None:
        if aid not in self.specs:
            return
        self.step()
        decisions = self.router.set_status(aid, status, self.now)
        self.status[aid] = status
        self.grace_until.pop(aid, None)
        self.apply(decisions)

    @rule(aid=st.sampled_from(ADVISORS))
    def disconnect(self, aid) -> None:
        if aid not in self.specs:
            return
        self.step()
        self.apply(self.router.disconnected(aid, self.now))
        if self.status[aid] is not AdvisorStatus.OFFLINE and aid not in self.grace_until:
            self.grace_until[aid] = self.now + CONFIG.grace_period_s

    @rule(aid=st.sampled_from(ADVISORS), capacity=st.integers(1, 3))
    def set_capacity(self, aid, capacity) -> None:
        if aid not in self.specs:
            return
        self.step()
        decisions = self.router.set_capacity(aid, capacity, self.now)
        self.capacity[aid] = capacity
        self.apply(decisions)

    @rule(
        group=st.sampled_from(GROUPS),
        star=st.integers(1, 5),
        dedicated=st.sampled_from([None, *ADVISORS]),
        team=st.sampled_from([None, "t1", "t2"]),
        needs_licence=st.booleans(),
        waited=st.sampled_from([0.0, 0.0, 30.0, 200.0]),
    )
    def submit(self, group, star, dedicated, team, needs_licence, waited) -> None:
        cid = f"c{self.next_chat}"
        self.next_chat += 1
        self.step()
        request = ChatRequest(
            cid,
            group,
            star=star,
            dedicated_advisor=dedicated,
            team=team,
            required_licence="mq" if needs_licence else None,
            created_at=self.now - waited,
        )
        self.requests[cid] = request
        self.group[cid] = group
        self.apply(self.router.submit(request, self.now))

    @rule(data=st.data())
    def close(self, data) -> None:
        if not self.requests:
            return
        cid = data.draw(st.sampled_from(sorted(self.requests)))
        self.step()
        decisions = self.router.close(cid, self.now)
        self.forget(cid)
        self.pooled.discard(cid)
        self.apply([d for d in decisions if not isinstance(d, PoolWithdrawn)])

    @rule(data=st.data(), aid=st.sampled_from(ADVISORS))
    def claim(self, data, aid) -> None:
        if not self.requests or aid not in self.specs:
            return
        # Aim mostly at pooled chats, sometimes at any chat (taken, queued) to test refusals.
        targets = self.pooled if self.pooled and data.draw(st.booleans()) else self.requests
        cid = data.draw(st.sampled_from(sorted(targets)))
        self.step()
        try:
            decisions = self.router.claim(aid, cid, self.now)
        except RoutingError as err:
            assert cid not in self.pooled or err.code in {
                "advisor_offline",
                "not_eligible",
                "at_capacity",
            }, err.code
            if cid in self.assigned:
                assert err.code == "already_taken"
            return
        self.apply(decisions)

    @rule(
        data=st.data(),
        to_advisor=st.sampled_from([None, *ADVISORS]),
        to_group=st.sampled_from([None, *GROUPS]),
    )
    def transfer(self, data, to_advisor, to_group) -> None:
        if not self.requests:
            return
        cid = data.draw(st.sampled_from(sorted(self.requests)))
        self.step()
        try:
            decisions = self.router.transfer(
                cid, self.now, to_advisor=to_advisor, to_group=to_group
            )
        except RoutingError as err:
            if (
                to_advisor is not None
                and to_advisor in self.specs
                and err.code == "advisor_offline"
            ):
                assert not self.present(to_advisor)
            return
        if to_group is not None:
            self.group[cid] = to_group
        self.apply(decisions)

    @rule(data=st.data(), aid=st.sampled_from(ADVISORS))
    def reassign(self, data, aid) -> None:
        if not self.requests:
            return
        cid = data.draw(st.sampled_from(sorted(self.requests)))
        self.step()
        try:
            decisions = self.router.reassign(cid, aid, self.now)
        except RoutingError:
            return
        self.apply(decisions)

    @rule(data=st.data())
    def respond(self, data) -> None:
        if not self.assigned:
            return
        cid = data.draw(st.sampled_from(sorted(self.assigned)))
        self.step()
        self.router.responded(cid, self.assigned[cid], self.now)

    @rule(seconds=st.sampled_from([1.0, 10.0, 35.0, 60.0, 120.0]))
    def tick(self, seconds) -> None:
        self.step(seconds)
        decisions = self.router.tick(self.now)
        for aid, until in list(self.grace_until.items()):
            if until <= self.now:
                del self.grace_until[aid]
                self.status[aid] = AdvisorStatus.OFFLINE
        self.apply(decisions)
        later = self.router.next_deadline()
        assert later is None or later > self.now

    # ------------------------------------------------------------- invariants

    @invariant()
    def router_agrees_with_decisions(self) -> None:
        for cid in self.requests:
            assert self.router.assigned_to(cid) == self.assigned.get(cid)
            assert (self.router.queue_position(cid) is not None) == (cid in self.queued)
        assert not (self.queued & self.pooled)
        for cid in self.requests:
            assert (cid in self.assigned) + (cid in self.queued) + (cid in self.pooled) == 1

    @invariant()
    def positions_are_a_permutation(self) -> None:
        by_group: dict[str, list[int]] = {}
        for cid in self.queued:
            position = self.router.queue_position(cid)
            assert position is not None
            by_group.setdefault(self.group[cid], []).append(position[0])
            assert self.reported[cid] == position[0], f"{cid} moved without PositionChanged"
        for positions in by_group.values():
            assert sorted(positions) == list(range(1, len(positions) + 1))

    @invariant()
    def no_queued_chat_waits_while_an_eligible_advisor_has_room(self) -> None:
        for cid in self.queued:
            request = self.requests[cid]
            group = self.group[cid]
            licence = request.required_licence or LICENCES.get(group)
            vip = request.star >= CONFIG.vip_min_star
            for aid, spec in self.specs.items():
                if not self.present(aid) or self.open[aid] >= self.capacity[aid]:
                    continue
                if licence is not None and licence not in spec.licences:
                    continue
                in_group = group in spec.groups
                personal = vip and (
                    request.dedicated_advisor == aid
                    or (request.team is not None and request.team == spec.team)
                )
                assert not (in_group or personal), f"{cid} waits while {aid} has room"

    @invariant()
    def open_counts_match_metrics(self) -> None:
        metrics = self.router.metrics(self.now)
        for aid in self.specs:
            assert metrics.advisors[aid].open_chats == self.open[aid]
            assert metrics.advisors[aid].capacity == self.capacity[aid]


RouterMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_routing_random_event_sequences = RouterMachine.TestCase
