"""Personal data: validators (Luhn, ID checksum), detection and masking in masked_text."""

from hypothesis import given, settings
from hypothesis import strategies as st

from compliance import ComplianceEngine, Tier, default_normaliser
from compliance.personal_data import (
    bank_card_valid,
    digit_fold,
    digit_fold_table,
    id_card_valid,
    luhn_valid,
)


def luhn_complete(prefix: str) -> str:
    """Append the Luhn check digit to ``prefix``."""
    for check in "0123456789":
        digits = prefix + check
        total = 0
        for i, ch in enumerate(reversed(digits)):
            v = int(ch) * (2 if i % 2 else 1)
            total += v - 9 if v > 9 else v
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


def id_complete(first17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return first17 + "10X98765432"[total % 11]


def test_validators() -> None:
    card = luhn_complete("622202000000000000")
    assert luhn_valid(card) and bank_card_valid(card)
    assert not luhn_valid(card[:-1] + str((int(card[-1]) + 1) % 10))
    ident = id_complete("11010519900307123")
    assert id_card_valid(ident)
    assert not id_card_valid(ident[:-1] + ("0" if ident[-1] != "0" else "1"))
    assert not id_card_valid("11010519901307123" + "1")  # month 13


def test_bank_card_masked(engine: ComplianceEngine) -> None:
    card = luhn_complete("622202123456789012")
    v = engine.check(f"我的卡号是{card}，帮我看看", "investor")
    assert v.tier is Tier.INFO
    assert [h.category for h in v.hits] == ["personal_data"]
    assert v.masked_text == f"我的卡号是{card[:4]}{'*' * (len(card) - 8)}{card[-4:]}，帮我看看"
    hit = v.hits[0]
    assert hit.matched == card and v.masked_text[hit.start : hit.end].startswith("6222")


def test_spaced_card_keeps_separators(engine: ComplianceEngine) -> None:
    card = luhn_complete("621700001000000")
    spaced = " ".join(card[i : i + 4] for i in range(0, 16, 4))
    v = engine.check(f"卡号 {spaced}", "investor")
    assert v.masked_text == f"卡号 {card[:4]} **** **** {card[12:]}"


def test_luhn_failure_is_not_masked(engine: ComplianceEngine) -> None:
    card = luhn_complete("622202123456789012")
    bad = card[:-1] + str((int(card[-1]) + 1) % 10)
    v = engine.check(f"流水号{bad}", "investor")
    assert v.tier is Tier.PASS and v.masked_text == f"流水号{bad}"


def test_id_card_and_phone(engine: ComplianceEngine) -> None:
    ident = id_complete("44030519851212001")
    v = engine.check(f"身份证{ident}，电话138-1234-5678", "investor")
    assert {h.rule_id for h in v.hits} == {"PD-001", "PD-002"}
    assert ident not in v.masked_text and "5678" in v.masked_text
    assert v.masked_text.startswith("身份证440305********")
    assert "138-****-5678" in v.masked_text


def test_styled_digit_phone(engine: ComplianceEngine) -> None:
    v = engine.check("手机①③⑨①②③④⑤⑥⑦⑧", "investor")
    assert v.categories == {"personal_data"}
    assert v.masked_text == "手机①③⑨****⑤⑥⑦⑧"


def test_numbers_that_are_not_personal_data(engine: ComplianceEngine) -> None:
    for text in ["订单号20240312000183726", "股票代码600519", "金额12345678.90元", "热线95521"]:
        assert engine.check(text, "investor").tier is Tier.PASS, text


def test_digit_gate_lets_through_every_real_number(engine: ComplianceEngine) -> None:
    # The gate before the regex rules wants 11 ASCII digits in a row after folding, or a digit
    # folding leaves non-ASCII: separators, zero-width characters, full-width and Arabic-Indic
    # digits must all still reach the validators.
    arabic_indic = "".join(chr(0x660 + int(c)) for c in "13912345678")
    for text in [
        f"我的电话{arabic_indic}",
        "电话 139 1234 5678 谢谢",
        "电话139\u200b1\u200b2\u200b3\u200b4\u200b5\u200b6\u200b7\u200b8",
        "电话１３９１２３４５６７８",
    ]:
        v = engine.check(text, "investor")
        assert [h.rule_id for h in v.hits] == ["PD-001"], text
        assert v.masked_text.count("*") == 4, text


def test_digit_gate_wants_a_validator_shape() -> None:
    # The gate in front of the validated regex rules: only digit runs that one of the three
    # validators could accept (mobile 1[3-9]+9, card [3-6]+15.., ID [1-8]+16+check) get
    # through; long order numbers and dates do not. Digits of other scripts fold to ASCII first.
    from compliance.engine import _DIGIT_RUN

    fold = default_normaliser().fold
    for text in ["订单号20231105123456789", "时间20240312000000", "股票600519", "12345678901"]:
        assert _DIGIT_RUN.search(fold(text)) is None, text
    for text in [
        "电话13912345678",
        "卡号6222021234567890128",
        "身份证11010519900307123x",
        "电话" + "".join(chr(0x660 + int(c)) for c in "13912345678"),  # Arabic-Indic
        "电话"
        + "".join(chr(0x966 + int(c)) if c != " " else " " for c in "139 1234 5678"),  # Devanagari
        "电话" + "".join(chr(0x1D7CE + int(c)) for c in "13912345678"),  # mathematical
        "电话" + "".join(chr(0x1FBF0 + int(c)) for c in "13912345678"),  # segmented, astral
    ]:
        assert _DIGIT_RUN.search(fold(text)) is not None, text


def test_phone_with_separator_after_first_digit(engine: ComplianceEngine) -> None:
    for text in ["电话1-391-234-5678", "手机 1 3912345678 谢谢", "电话1 39 1234 5678"]:
        v = engine.check(text, "investor")
        assert [h.rule_id for h in v.hits] == ["PD-001"], text
        assert v.masked_text.count("*") == 4, text
    # Still a mobile shape only: 1 followed by 0-2 is no mobile number.
    assert engine.check("编号1-201-234-5678", "investor").tier is Tier.PASS


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(), max_size=20))
def test_digit_fold_skips_only_texts_it_would_not_change(text: str) -> None:
    assert digit_fold(text) == text.translate(digit_fold_table())
