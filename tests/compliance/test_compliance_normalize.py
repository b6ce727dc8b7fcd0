"""Normalisation: every evasion folds to the rule form, and the offset map agrees with fold."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance import ComplianceEngine, default_normaliser
from compliance.normalize import CLAUSE_BREAKS, CLAUSE_MARK, clause_between, collapse_repeats

fold = default_normaliser().fold


@pytest.mark.parametrize(
    ("evasive", "plain"),
    [
        ("保\u200b本", "保本"),  # zero-width space
        ("保\u2060\ufeff本", "保本"),  # word joiner, BOM
        ("保😀本", "保本"),  # emoji separator
        ("保 . * 本", "保本"),  # separators and punctuation
        ("ＢＡＯＢＥＮ", "baoben"),  # full width + case
        ("穩賺不賠", "稳赚不赔"),  # traditional
        ("保夲", "保本"),  # look-alike
        ("翻①倍", "翻1倍"),
        ("翻⑴倍", "翻1倍"),
        ("翻❶倍", "翻1倍"),
        ("翻壹倍", "翻一倍"),  # financial numeral
        ("翻\u0663倍", "翻3倍"),  # Arabic-Indic digit
        ("翻\U0001fbf3倍", "翻3倍"),  # segmented digit (astral, slow path)
        ("Ⓐ股", "a股"),
        ("\U0001d41a\U0001d41b", "ab"),  # mathematical bold
        ("保保保本本", "保本"),  # repeated characters
        ("保\u0301本", "保本"),  # combining mark
        ("\ud800保本", "保本"),  # lone surrogate
        ("保\U000e0020本", "保本"),  # invisible tag character (astral, slow path)
        ("保\U000e0101本\U00020000", "保本\U00020000"),  # variation selector supplement
        ("保保\U000e0020保本", "保本"),  # repeat across an invisible character
    ],
)
def test_evasions_fold_to_plain(evasive: str, plain: str) -> None:
    assert fold(evasive) == plain


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(), max_size=40))
def test_offsets_agree_with_fold(text: str) -> None:
    norm = default_normaliser()
    folded, offsets = norm.fold_with_offsets(text)
    assert folded == norm.fold(text)
    assert len(offsets) == len(folded)
    assert offsets == sorted(offsets)
    assert all(0 <= o < len(text) for o in offsets)
    # The engine hands in the uncollapsed fold it already has (fold_pair's marked copy).
    _, marked = norm.fold_pair(text)
    assert norm.fold_with_offsets(text, marked.replace(CLAUSE_MARK, "")) == (folded, offsets)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(), max_size=30))
def test_fold_pair_consistent(text: str) -> None:
    norm = default_normaliser()
    folded, marked = norm.fold_pair(text)
    assert folded == norm.fold(text)


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("这个产品保\u200b本的", "principal_guarantee"),
        ("这个产品 bao ben 的", "principal_guarantee"),
        ("这个产品BaoBen的", "principal_guarantee"),
        ("这个产品 bb 的", "principal_guarantee"),
        ("这个产品宝本的", "principal_guarantee"),
        ("这个产品保ben的", "principal_guarantee"),
        ("稳zhuan不pei", "promise_returns"),
        ("wen zhuan bu pei", "promise_returns"),
        ("这只票稳吻赚不陪", "promise_returns"),
        ("穩賺不賠", "promise_returns"),
        ("ＷＥＮ ＺＨＵＡＮ", "promise_returns"),
        ("收益翻❷倍没问题", "promise_returns"),
        ("稳😀赚😀不😀赔", "promise_returns"),
        ("稳稳稳赚赚不赔", "promise_returns"),
        ("有内.幕.消.息", "insider_info"),
        ("nei mu xiao xi", "insider_info"),
    ],
)
def test_evasions_are_caught(engine: ComplianceEngine, text: str, category: str) -> None:
    assert category in engine.check(text, "advisor").categories


@pytest.mark.parametrize(
    "text",
    [
        "BBC今天报道了市场",
        "abba乐队",
        "这是bbq餐厅",
        "Bob说的",
        "ok没问题",
        "帮我pk一下",
        "Sigma的产品",  # mixed key "ma的" (妈的) must not be the tail of a latin word
    ],
)
def test_initials_only_as_whole_latin_tokens(engine: ComplianceEngine, text: str) -> None:
    assert not engine.check(text, "advisor").hits


@pytest.mark.parametrize(
    "text", ["I made it, thanks", "All in all, fine", "WeChat pay ok", "made in China"]
)
def test_english_words_are_not_pinyin_hits(engine: ComplianceEngine, text: str) -> None:
    assert not engine.check(text, "advisor").hits, engine.check(text, "advisor").hits


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("好坏保本，。！ a\u200b谢"), max_size=30))
def test_fold_clauses_split_the_fold_where_the_original_has_clause_punctuation(text: str) -> None:
    # The engine's clause test reads the marks in ``clauses`` instead of mapping every folded
    # position back to the original: both must say the same for every pair of positions.
    norm = default_normaliser()
    folded, marked, clauses = norm.fold_clauses(text)
    assert (folded, marked) == norm.fold_pair(text)
    if clauses is None:  # a repeat collapsed across punctuation: the engine reads the original
        assert re.search(r"([\u3400-\u9fff])\x1f+\1", collapse_repeats(marked))
        return
    assert clauses.replace(CLAUSE_MARK, "") == folded
    offsets = norm.offsets(text, marked.replace(CLAUSE_MARK, ""))
    for a in range(len(folded)):
        for b in range(a + 1, len(folded)):  # the engine asks about two folded characters
            by_marks = clause_between(clauses, a, b)
            by_original = any(c in CLAUSE_BREAKS for c in text[offsets[a] : offsets[b]])
            assert by_marks == by_original, (text, a, b)


def test_no_fold_expansion_puts_a_latin_letter_next_to_a_han_character() -> None:
    # The engine's latin-edge check trusts a Han neighbour in the folded text (what folds next
    # to it in the original is that character or nothing); an expansion such as "1月" is fine,
    # "a月" would not be.
    def han(c: str) -> bool:
        return "\u3400" <= c <= "\u9fff"

    def latin(c: str) -> bool:
        return "a" <= c <= "z"

    norm = default_normaliser()
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        folded = norm.fold_char(chr(cp))
        for left, right in zip(folded, folded[1:], strict=False):
            assert not (han(left) and latin(right)), hex(cp)
            assert not (latin(left) and han(right)), hex(cp)
