"""Hostile input: huge, empty, control characters, lone surrogates, every Unicode category."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance import ComplianceEngine, Tier


@pytest.mark.parametrize(
    "text", ["", " ", "\x00", "\ud800", "\udfff保本", "\x1b[31m", "\u202e保本"]
)
def test_odd_text_does_not_crash(engine: ComplianceEngine, text: str) -> None:
    v = engine.check(text, "advisor", previous=[text])
    assert v.masked_text == text or "*" in v.masked_text


def test_violation_survives_control_and_surrogates(engine: ComplianceEngine) -> None:
    assert engine.check("保\x00\ud800本", "advisor").tier is Tier.BLOCK
    assert engine.check("\u202e稳赚不赔\u202c", "advisor").tier is Tier.BLOCK


def test_huge_message(engine: ComplianceEngine) -> None:
    text = "您好，这是普通的服务内容。" * 8000 + "这个稳赚不赔" + "谢谢" * 100
    assert len(text) > 100_000
    start = time.perf_counter()
    v = engine.check(text, "advisor")
    assert time.perf_counter() - start < 5
    hit = next(h for h in v.hits if h.matched == "稳赚不赔")
    assert text[hit.start : hit.end] == "稳赚不赔"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(), max_size=60), st.sampled_from(["advisor", "investor"]))
def test_any_unicode_is_handled(engine: ComplianceEngine, text: str, role: str) -> None:
    v = engine.check(text, role, previous=[text[::-1]])
    for h in v.hits:
        assert text[h.start : h.end] == h.matched
        assert 0 <= h.start <= h.end <= len(text)


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.characters(), max_size=20), st.text(alphabet=st.characters(), max_size=20)
)
def test_violation_embedded_in_noise_is_never_lost(
    engine: ComplianceEngine, before: str, after: str
) -> None:
    # A clause break before the phrase keeps any random negator out of its scope.
    v = engine.check(before + "。这个稳赚不赔。" + after, "advisor")
    assert v.tier is Tier.BLOCK
