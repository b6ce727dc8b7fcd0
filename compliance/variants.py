"""Evasion variants of rule terms, generated at engine build time.

Pinyin (baoben, 稳zhuan不pei), pinyin initials (bb) and curated homophones (宝本) of each term.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from pypinyin import Style, lazy_pinyin

EXACT = "exact"
HOMOPHONE = "homophone"
PINYIN = "pinyin"
INITIALS = "initials"

# Mixed Han/pinyin forms grow as 2^n; beyond this length only all-Han and all-pinyin are made.
_MIXED_MAX_LEN = 4
_MAX_SUBSTITUTIONS = 2
# Short all-latin keys collide with English words and other pinyin, so they must stand alone.
_SHORT_LATIN = 6
# Initials that are ordinary chat abbreviations or finance jargon, never generated.
_INITIALS_STOPLIST = frozenset(
    {
        "ok",
        "pk",
        "vip",
        "app",
        "etf",
        "ipo",
        "qq",
        "gg",
        "mm",
        "dd",
        "hh",
        "kk",
        "cc",
        "tt",
        "bs",
        "sb",
        "nb",
        "bt",
        "pe",
        "pb",
        "roe",
        "cpi",
        "gdp",
        "tv",
        "pc",
        "id",
        "kdj",
        "ma",
    }
)


# Short pinyin keys that are also everyday English words (妈的 → "made").
_PINYIN_STOPLIST = frozenset({"made", "dian", "bang", "gang", "pin", "ping", "fan", "ban", "men"})


@dataclass(frozen=True, slots=True)
class Variant:
    """A folded automaton key derived from a rule term.

    ``edges`` says which ends must not touch another latin letter or digit in the original
    text (LEFT, RIGHT or both): "bb" must be a whole word, "ma的" must not be the tail of
    "sigma的".
    """

    key: str
    kind: str
    edges: int


@dataclass(frozen=True, slots=True)
class Homophones:
    chars: dict[str, tuple[str, ...]]
    terms: dict[str, tuple[str, ...]]


@functools.cache
def default_homophones() -> Homophones:
    text = resources.files("compliance").joinpath("data/homophones.json").read_text("utf-8")
    data = json.loads(text)
    chars = {k: tuple(v for v in vs if v != k) for k, vs in data["chars"].items() if len(k) == 1}
    terms = {k: tuple(vs) for k, vs in data["terms"].items()}
    return Homophones(chars, terms)


def _pinyin(text: str, style: Style) -> list[str]:
    """One syllable per character; non-Han characters stay as they are."""
    return lazy_pinyin(text, style=style, errors=list)  # type: ignore[arg-type]


def _is_han(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff"


def _is_latin(ch: str) -> bool:
    return "a" <= ch <= "z"


LEFT = 1
RIGHT = 2


def _edges(key: str) -> int:
    if all(_is_latin(c) for c in key):
        # Long pinyin may sit inside more pinyin (wenzhuanbupeide); short keys collide.
        return LEFT | RIGHT if len(key) < _SHORT_LATIN else 0
    return (LEFT if _is_latin(key[0]) else 0) | (RIGHT if _is_latin(key[-1]) else 0)


def term_variants(
    folded: str,
    *,
    homophones: Homophones | None,
    initials: bool,
    fold: Callable[[str], str],
) -> list[Variant]:
    """All keys for one folded term; the exact form first."""
    seen: set[str] = {folded}
    out = [Variant(folded, EXACT, _edges(folded))]

    def add(key: str, kind: str) -> None:
        key = fold(key)
        if len(key) < 2 or key in seen or key in _PINYIN_STOPLIST:
            return
        seen.add(key)
        out.append(Variant(key, kind, _edges(key)))

    han_forms = [folded]
    if homophones is not None:
        han_forms += _homophone_forms(folded, homophones)
        for form in han_forms[1:]:
            add(form, HOMOPHONE)
    if any(_is_han(c) for c in folded):
        syllables = _pinyin(folded, Style.NORMAL)
        if len(syllables) == len(folded):
            add("".join(syllables), PINYIN)
            if len(folded) <= _MIXED_MAX_LEN:
                for mask in itertools.product((0, 1), repeat=len(folded)):
                    if 0 < sum(mask) < len(folded):
                        add(
                            "".join(
                                s if m else c
                                for c, s, m in zip(folded, syllables, mask, strict=True)
                            ),
                            PINYIN,
                        )
            if initials and all(_is_han(c) for c in folded):
                letters = "".join(_pinyin(folded, Style.FIRST_LETTER))
                if letters not in _INITIALS_STOPLIST and len(letters) >= 2:
                    key = fold(letters)
                    if key not in seen:
                        seen.add(key)
                        out.append(Variant(key, INITIALS, LEFT | RIGHT))
    return out


def _homophone_forms(term: str, homophones: Homophones) -> list[str]:
    forms = list(homophones.terms.get(term, ()))
    if len(term) < 3:
        return forms
    slots = [(i, homophones.chars.get(c, ())) for i, c in enumerate(term)]
    slots = [(i, alts) for i, alts in slots if alts]
    for count in range(1, _MAX_SUBSTITUTIONS + 1):
        for chosen in itertools.combinations(slots, count):
            for replacement in itertools.product(*(alts for _, alts in chosen)):
                chars = list(term)
                for (i, _), alt in zip(chosen, replacement, strict=True):
                    chars[i] = alt
                forms.append("".join(chars))
    return forms
