"""Engine behaviour: rule kinds, exceptions and negation scope, spans, window, intent."""

import pytest

from compliance import ComplianceEngine, Rule, RuleSet, Tier, Verdict


def cats(engine: ComplianceEngine, text: str, role: str = "advisor", **kw: object) -> set[str]:
    return {h.category for h in engine.check(text, role, **kw).hits}  # type: ignore[arg-type]


def test_literal_term_blocks(engine: ComplianceEngine) -> None:
    v = engine.check("这个产品稳赚不赔，放心买", "advisor")
    assert v.tier is Tier.BLOCK
    assert "promise_returns" in v.categories
    assert any(h.matched == "稳赚不赔" for h in v.hits)


def test_near_either_order(engine: ComplianceEngine) -> None:
    assert "promise_returns" in cats(engine, "保证您今年的收益")
    assert "promise_returns" in cats(engine, "收益这块我可以保证")


def test_near_respects_distance() -> None:
    rule = Rule.from_dict(
        {
            "id": "N1",
            "category": "promise_returns",
            "tier": "block",
            "near": {"first": ["保证"], "second": ["收益"], "within": 2},
            "description": "测试",
        }
    )
    e = ComplianceEngine(RuleSet([rule]))
    assert e.check("保证有收益", "advisor").hits
    assert not e.check("保证这个东西很久以后会有收益", "advisor").hits


@pytest.mark.parametrize(
    "text",
    [
        "我们不保证收益，投资需谨慎",
        "本公司无法保证收益，过往业绩不代表未来",
        "我们不承诺保本，产品有亏损风险",
        "该产品并非保本产品",
        "两融账户请注意保证金比例",
        "我们不能对收益作任何保证",
        "市场有风险，不存在无风险的投资",
        "这款理财不是保本的，可能亏损本金",
        "您的保本价是10.5元",
        "保险产品和基金不一样",
    ],
)
def test_disclaimers_pass(engine: ComplianceEngine, text: str) -> None:
    assert engine.check(text, "advisor").tier is Tier.PASS, engine.check(text, "advisor").hits


@pytest.mark.parametrize(
    "text",
    ["不用担心，保证收益", "不用怕，这个保本", "不会吧？稳赚的", "没问题，保证收益翻倍"],
)
def test_negation_outside_scope_still_hits(engine: ComplianceEngine, text: str) -> None:
    assert engine.check(text, "advisor").tier is Tier.BLOCK


def test_span_maps_back_through_zero_width_and_width(engine: ComplianceEngine) -> None:
    text = "哈哈，这个保\u200b\u200b本的 ＢＡＯ  ＢＥＮ"
    v = engine.check(text, "advisor")
    spans = [(h.start, h.end, h.matched) for h in v.hits]
    for start, end, matched in spans:
        assert text[start:end] == matched
    assert any(m == "保\u200b\u200b本" for _, _, m in spans)
    assert any(m == "ＢＡＯ  ＢＥＮ" for _, _, m in spans)


def test_split_across_messages(engine: ComplianceEngine) -> None:
    v = engine.check("不赔的，放心", "advisor", previous=["这只票稳赚"])
    hit = next(h for h in v.hits if h.in_previous)
    assert hit.category == "promise_returns"
    assert hit.start == 0 and hit.matched == "不赔"
    # Without the window the current message alone passes.
    assert engine.check("不赔的，放心", "advisor").tier is Tier.PASS


def test_previous_alone_does_not_rehit(engine: ComplianceEngine) -> None:
    v = engine.check("好的，明天联系", "advisor", previous=["这只票稳赚不赔"])
    assert v.tier is Tier.PASS


def test_intent_without_terms(engine: ComplianceEngine) -> None:
    for text in ["跟着我买肯定赚", "这票明天一定会大涨", "年底前翻番是肯定的"]:
        v = engine.check(text, "advisor")
        assert "promise_returns" in v.categories, text
        assert v.tier >= Tier.WARN


def test_intent_negated_passes(engine: ComplianceEngine) -> None:
    assert engine.check("股票不一定会涨，请注意风险", "advisor").tier is Tier.PASS
    assert engine.check("这个产品有一定的收益波动", "advisor").tier is Tier.PASS


def test_roles(engine: ComplianceEngine) -> None:
    # An investor asking about guarantees is not a violation; the advisor saying it is.
    assert engine.check("你们保证收益吗？", "investor").tier is Tier.PASS
    assert engine.check("我们保证收益", "advisor").tier is Tier.BLOCK
    with pytest.raises(ValueError):
        engine.check("hi", "admin")


def test_hold_on_four_eyes_rule(engine: ComplianceEngine) -> None:
    v = engine.check("我有内幕消息，明天涨停", "advisor")
    assert v.tier is Tier.BLOCK and v.hold


def test_suitability(engine: ComplianceEngine) -> None:
    v = engine.check("建议您配置一点科创50ETF", "advisor", customer_risk="C2")
    assert [h.category for h in v.hits] == ["suitability"]
    assert v.hits[0].matched == "科创50ETF" and v.tier is Tier.WARN
    assert engine.check("建议您配置一点科创50ETF", "advisor", customer_risk="C4").tier is Tier.PASS
    assert (
        engine.check("科创50ETF风险较高，不建议您购买", "advisor", customer_risk="C2").tier
        is Tier.PASS
    )
    assert engine.check("建议您配置一点科创50ETF", "advisor").tier is Tier.PASS
    with pytest.raises(ValueError):
        engine.check("x", "advisor", customer_risk="C9")


def test_split_near_rule_across_messages(engine: ComplianceEngine) -> None:
    v = engine.check("收益，您放心", "advisor", previous=["这只基金保证"])
    hit = next(h for h in v.hits if h.rule_id == "PR-001")
    assert hit.in_previous and hit.start == 0 and hit.matched == "收益"


def test_split_with_evasion_in_both_parts(engine: ComplianceEngine) -> None:
    v = engine.check("ben的", "advisor", previous=["我们这个是bao"])
    assert "principal_guarantee" in v.categories


def test_window_uses_only_recent_messages(engine: ComplianceEngine) -> None:
    v = engine.check("本的", "advisor", previous=["这个保", "好的", "嗯"])
    assert v.tier is Tier.PASS


def test_engine_is_immutable_and_shareable(engine: ComplianceEngine) -> None:
    with pytest.raises(AttributeError):
        engine.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="immutable"):
        engine.rules = RuleSet([])
    first = engine.check("稳赚不赔", "advisor")
    assert engine.check("稳赚不赔", "advisor") == first


def test_exception_terms() -> None:
    rule = Rule.from_dict(
        {
            "id": "E1",
            "category": "principal_guarantee",
            "tier": "block",
            "terms": ["保本"],
            "exceptions": ["保本价"],
            "description": "测试",
        }
    )
    e = ComplianceEngine(RuleSet([rule]))
    assert not e.check("您的保本价是10元", "advisor").hits
    assert e.check("这个保本，保本价也低", "advisor").hits


def test_empty_ruleset_leaves_only_the_builtin_intent_scorer() -> None:
    e = ComplianceEngine(RuleSet([]))
    assert {h.rule_id for h in e.check("稳赚不赔", "advisor").hits} == {"INTENT-PROMISE"}
    quiet = ComplianceEngine(RuleSet([]), intent_tier=None)
    assert quiet.check("稳赚不赔，跟着我买肯定赚", "advisor").tier is Tier.PASS


def test_verdict_hits_carry_rule_fields(engine: ComplianceEngine) -> None:
    v = engine.check("保证收益", "advisor")
    h = next(h for h in v.hits if h.rule_id == "PR-001")
    assert (h.category, h.tier, h.start, h.end, h.matched, h.in_previous) == (
        "promise_returns",
        Tier.BLOCK,
        0,
        4,
        "保证收益",
        False,
    )


@pytest.mark.parametrize(
    "text",
    ["明天一定给您回复收益情况", "肯定的，收益每天都会更新", "您放心，我们一定会尽快处理"],
)
def test_intent_needs_certainty_about_the_gain(engine: ComplianceEngine, text: str) -> None:
    # Certainty about something else, or in another clause, is not a promise of returns.
    assert engine.check(text, "advisor").tier is Tier.PASS


def test_intent_is_only_for_advisor_and_bot(engine: ComplianceEngine) -> None:
    assert engine.check("这票下周一定会大涨吗", "investor").tier is Tier.PASS
    assert "promise_returns" in engine.check("这票下周一定会大涨", "bot").categories


@pytest.mark.parametrize("ordered", [True, False])
def test_ordered_near_wants_first_before_second(ordered: bool) -> None:
    rule = Rule.from_dict(
        {
            "id": "N2",
            "category": "promise_returns",
            "tier": "block",
            "near": {"first": ["亏了"], "second": ["我负责"], "within": 4, "ordered": ordered},
            "description": "测试",
        }
    )
    e = ComplianceEngine(RuleSet([rule]))
    assert e.check("亏了我负责", "advisor").hits
    # The other order pairs only when the rule is not ordered.
    assert bool(e.check("我负责的账户亏了", "advisor").hits) is not ordered
    assert not e.check("亏了不少钱，最后我负责", "advisor").hits  # too far apart


@pytest.mark.parametrize(
    "text",
    [
        "保本是不可能的",
        "保证收益是不存在的。",
        "说能稳赚不赔的，基本都是骗子。",
        "刚兑早就打破了，现在都是净值型产品。",
        "保本这种说法根本不成立",
        "承诺收益的宣传都是误导",
        # Look-alikes of the loss-cover and no-risk rules.
        "如果跌了，我负责第一时间通知您",
        "亏损的原因我来补充一下",
        "收益和风险是对等的，没有风险就没有收益",
        "客户没有风险测评结果的话不能买",
        "亏损由投资者自行承担",
    ],
)
def test_negation_after_the_term_and_lookalikes_pass(engine: ComplianceEngine, text: str) -> None:
    assert engine.check(text, "advisor").tier is Tier.PASS, text


def test_refuting_predicates_are_automaton_keys_as_written() -> None:
    # check() skips every refutation test when no _REFUTER key matched the scanned text; that
    # is sound only if each key is the very literal _REFUTATION looks for, i.e. folding leaves
    # the predicate as it is.
    from compliance.engine import _REFUTED_BY
    from compliance.normalize import default_normaliser

    fold = default_normaliser().fold
    assert [p for p in _REFUTED_BY if fold(p) != p] == []


def test_refutation_in_the_previous_message_does_not_refute_this_one(
    engine: ComplianceEngine,
) -> None:
    # The predicate key is found in the window (so the shortcut lets the test run); the
    # refutation must still follow the term in this message.
    assert engine.check("保本", "advisor", previous=("都是骗子",)).tier is Tier.BLOCK
    assert engine.check("保本是骗人的", "advisor", previous=("你好",)).tier is Tier.PASS


@pytest.mark.parametrize(
    "text",
    [
        "当然保本",
        "保本是肯定的",
        "保本，不可能亏",  # the predicate does not close the clause: a promise, not a refutation
        "这个产品保本，绝对不是骗局",
        "保本的，不存在问题",
    ],
)
def test_claims_without_refutation_still_block(engine: ComplianceEngine, text: str) -> None:
    assert engine.check(text, "advisor").tier is Tier.BLOCK, text


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("万一跌了我来赔，您怕什么", "promise_returns"),
        ("赔了我负责", "promise_returns"),
        ("亏损的钱由我个人承担", "promise_returns"),
        ("年化收益百分之二十，绝对没有风险", "promise_returns"),
        ("这只基金一点风险都没有", "principal_guarantee"),
    ],
)
def test_loss_cover_and_no_risk_paraphrases(
    engine: ComplianceEngine, text: str, category: str
) -> None:
    v = engine.check(text, "advisor")
    assert v.tier is Tier.BLOCK and category in v.categories, text


@pytest.mark.parametrize(
    ("text", "tier"),
    [
        # 好，好 collapses to one 好 across the comma, so the clause marks no longer line up with
        # the scan; the comma after 不 must still end the negator's reach.
        ("好，好不，保证收益", Tier.BLOCK),
        ("好，好不保证收益", Tier.PASS),
    ],
)
def test_clause_breaks_after_a_repeat_collapsed_across_punctuation(
    engine: ComplianceEngine, text: str, tier: Tier
) -> None:
    assert engine.check(text, "advisor").tier is tier, text


def test_a_pass_built_through_the_slots_is_an_ordinary_frozen_verdict(
    engine: ComplianceEngine,
) -> None:
    from dataclasses import FrozenInstanceError

    v = engine.check("您好，开户需要带身份证。", "advisor")
    assert v == Verdict(Tier.PASS, (), "您好，开户需要带身份证。", False)
    assert hash(v) == hash(Verdict(Tier.PASS, (), "您好，开户需要带身份证。", False))
    with pytest.raises(FrozenInstanceError):
        v.tier = Tier.BLOCK  # type: ignore[misc]
