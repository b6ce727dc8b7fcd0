"""Rule validation, JSONL round trip and the shipped rule set."""

import json

import pytest

from compliance import CATEGORIES, Rule, RuleError, RuleSet, Tier, load_default_rules


def base(**kw: object) -> dict[str, object]:
    d: dict[str, object] = {
        "id": "T-1",
        "category": "promise_returns",
        "tier": "block",
        "terms": ["稳赚"],
        "description": "测试规则",
    }
    d.update(kw)
    return d


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"tier": "severe"}, "unknown tier"),
        ({"tier": "pass"}, "tier must be"),
        ({"category": "spam"}, "unknown category"),
        ({"terms": []}, "empty"),
        ({"terms": [""]}, "empty or non-string"),
        ({"terms": ["稳"]}, "fewer than 2"),
        ({"terms": ["。。"]}, "fewer than 2"),
        ({"terms": "稳赚"}, "list of strings"),
        ({"terms": None, "regex": "(unclosed"}, "bad regex"),
        ({"terms": None, "regex": "a*"}, "empty string"),
        ({"terms": None, "near": {"first": ["保证"], "second": ["收益"], "within": 0}}, ">= 1"),
        ({"terms": None, "near": {"first": [], "second": ["收益"], "within": 3}}, "empty"),
        ({"terms": None, "near": ["保证"]}, "near must be"),
        (
            {
                "terms": None,
                "near": {"first": ["亏"], "second": ["我赔"], "within": 2, "ordered": 1},
            },
            "near.ordered must be true or false",
        ),
        ({"regex": "x+"}, "exactly one"),
        ({"roles": ["admin"]}, "roles"),
        ({"description": ""}, "description"),
        ({"id": ""}, "id"),
        ({"validator": "luhn"}, "validator"),
    ],
)
def test_invalid_rules_rejected_with_reason(patch: dict[str, object], reason: str) -> None:
    with pytest.raises(RuleError) as info:
        Rule.from_dict(base(**patch))
    assert reason in str(info.value)
    assert info.value.rule_id == (patch.get("id", "T-1") or "")


def test_from_jsonl_reports_line_number() -> None:
    good = json.dumps(base(), ensure_ascii=False)
    bad = json.dumps(base(id="T-2", tier="nope"), ensure_ascii=False)
    with pytest.raises(RuleError) as info:
        RuleSet.from_jsonl(good + "\n\n" + bad + "\n")
    assert info.value.line == 3 and info.value.rule_id == "T-2"
    with pytest.raises(RuleError) as info:
        RuleSet.from_jsonl("{not json\n")
    assert info.value.line == 1


def test_duplicate_ids_rejected() -> None:
    rule = Rule.from_dict(base())
    with pytest.raises(RuleError, match="duplicate"):
        RuleSet([rule, rule])


def test_round_trip() -> None:
    rules = load_default_rules()
    again = RuleSet.from_jsonl(rules.to_jsonl())
    assert [r.to_dict() for r in again] == [r.to_dict() for r in rules]
    assert list(again) == list(rules)


def test_shipped_rules_cover_every_category_and_kind() -> None:
    rules = load_default_rules()
    assert len(rules) >= 150
    assert {r.category for r in rules} == set(CATEGORIES)
    assert {r.kind for r in rules} == {"terms", "near", "regex"}
    assert all(r.description for r in rules)
    assert {r.tier for r in rules} == {Tier.INFO, Tier.WARN, Tier.BLOCK}
    assert any(r.hold for r in rules)


def test_tier_is_ordered() -> None:
    assert Tier.PASS < Tier.INFO < Tier.WARN < Tier.BLOCK
    assert max([Tier.INFO, Tier.BLOCK, Tier.WARN]) is Tier.BLOCK


def test_ordered_near_round_trips() -> None:
    near = {"first": ["亏了"], "second": ["我负责"], "within": 1, "ordered": True}
    rule = Rule.from_dict(base(terms=None, near=near))
    assert rule.near is not None and rule.near.ordered
    assert rule.to_dict()["near"] == near
    # Unordered rules keep their old form (no "ordered" key), so stored rule sets do not change.
    plain = Rule.from_dict(base(terms=None, near={**near, "ordered": False}))
    assert "ordered" not in plain.to_dict()["near"]
