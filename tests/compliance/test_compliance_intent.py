"""The intent scorer's pairing: the engine works out negation only for cues ``paired_cues`` names."""

from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.intent import (
    Cue,
    cues_by_class,
    findings_in,
    findings_unless,
    paired_cues,
    score_intent,
    without,
)

TEXT = "会能要我们一定会大涨的明天给您回复收益情况跟着我买赶紧上车没问题"

_cues = st.lists(
    st.builds(
        lambda cls, start, length: Cue(cls, start, min(start + length, len(TEXT)), False),
        st.sampled_from(("certain", "gain", "assure", "lead", "urge", "neutral", "recommend")),
        st.integers(0, len(TEXT) - 1),
        st.integers(1, 4),
    ),
    max_size=12,
    unique=True,
)


def _negate(cues: list[Cue], which: set[int]) -> list[Cue]:
    return [c._replace(negated=True) if i in which else c for i, c in enumerate(cues)]


@settings(max_examples=1500, deadline=None)
@given(_cues, st.sets(st.integers(0, 11)))
def test_negating_an_unpaired_cue_never_changes_the_findings(
    cues: list[Cue], negated: set[int]
) -> None:
    paired = paired_cues(cues, TEXT)
    only_paired = {i for i in negated if i < len(cues) and cues[i] in paired}
    assert score_intent(_negate(cues, negated), TEXT) == score_intent(
        _negate(cues, only_paired), TEXT
    )
    assert bool(paired) == bool(score_intent(cues, TEXT))


@settings(max_examples=1500, deadline=None)
@given(_cues, st.sets(st.integers(0, 11)))
def test_dropping_negated_cues_from_the_sorted_lists_scores_like_negating_them(
    cues: list[Cue], negated: set[int]
) -> None:
    # The engine sorts the cues once, then drops the paired ones it found negated.
    dropped = {c for i, c in enumerate(cues) if i in negated and c.cls != "neutral"}
    which = {i for i, c in enumerate(cues) if c in dropped}
    assert findings_in(without(cues_by_class(cues), dropped), TEXT) == score_intent(
        _negate(cues, which), TEXT
    )


# Fillers only, and cues packed into its first characters, so that a cue often has several
# partners in reach and skipping a cancelled one (or dropping a cancelled first cue) matters.
FILLER_TEXT = ("会能要可以是够让给帮带您你们" * 3)[: len(TEXT)]
_packed_cues = st.lists(
    st.builds(
        lambda cls, start, length: Cue(cls, start, start + length, False),
        st.sampled_from(("certain", "gain", "assure", "lead", "urge", "neutral")),
        st.integers(0, 12),
        st.integers(1, 2),
    ),
    max_size=10,
    unique=True,
)


@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(
        st.tuples(_cues, st.just(TEXT)),
        st.tuples(_packed_cues, st.just(FILLER_TEXT)),
    ),
    st.sets(st.integers(0, 11)),
)
def test_asking_about_cancellation_while_pairing_finds_what_dropping_the_cancelled_does(
    cues_and_text: tuple[list[Cue], str], cancelled: set[int]
) -> None:
    cues, text = cues_and_text
    # The engine's path: findings_unless asks whether a cue is cancelled (negation scope) only
    # when it is about to complete a pattern, instead of asking for every paired cue first.
    dead = {c for i, c in enumerate(cues) if i in cancelled}
    asked: list[Cue] = []

    def is_cancelled(cue: Cue) -> bool:
        asked.append(cue)
        return cue in dead

    classes = cues_by_class(cues)
    paired = paired_cues(cues, text)
    assert findings_unless(classes, text, is_cancelled) == findings_in(
        without(classes, {c for c in paired if c in dead}), text
    )
    assert set(asked) <= paired


def test_a_gain_far_from_any_certainty_is_not_paired() -> None:
    certain = Cue("certain", 5, 7, False)  # 一定, then 会 (filler), then 大涨
    near_gain = Cue("gain", 8, 10, False)
    far_gain = Cue("gain", 17, 19, False)  # 收益, in another sentence
    neutral = Cue("neutral", 30, 32, False)
    assert paired_cues([certain, near_gain, far_gain, neutral], TEXT) == {certain, near_gain}
    assert paired_cues([certain, far_gain], TEXT) == set()
    assert score_intent([certain, far_gain], TEXT) == []


def test_a_neutral_phrase_over_the_certainty_leaves_nothing_to_pair() -> None:
    certain = Cue("certain", 5, 7, False)
    gain = Cue("gain", 8, 10, False)
    assert paired_cues([certain, gain, Cue("neutral", 5, 8, False)], TEXT) == set()
