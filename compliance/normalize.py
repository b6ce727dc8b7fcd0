"""Text normalisation against evasion: one translate table built once, applied once per message.

``fold`` is the fast path (no offsets); ``fold_with_offsets`` gives the same text plus, for each
folded character, its index in the original text, and is only computed when there is a hit.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import sys
import unicodedata
from importlib import resources
from pathlib import Path

import opencc

# Categories whose characters carry no meaning for matching: separators, punctuation,
# symbols (emoji), combining marks, format/zero-width, control, surrogates, private use.
_DROP_PREFIXES = ("Z", "P", "S", "C", "M")
_KEEP_MARKS = ("Mc",)

# Astral ranges worth mapping; other astral code points pass through unchanged.
_ASTRAL_RANGES = (
    (0x1D400, 0x1D800),  # mathematical alphanumeric letters and digits
    (0x1F000, 0x1FB00),  # enclosed alphanumerics, emoji, pictographs
    (0xE0000, 0xE0080),  # tag characters (invisible)
    (0xE0100, 0xE01F0),  # variation selectors supplement
)

# 大写数字: evaders write 壹 for 一; folding to the plain numeral keeps terms like 翻一倍.
_FINANCIAL_NUMERALS = dict(
    zip("壹贰貳叁參肆伍陆陸柒捌玖拾佰仟", "一二二三三四五六六七八九十百千", strict=True)
)

# Clause punctuation: a negator does not reach across it (不用担心，保证收益).
CLAUSE_BREAKS = "，。！？；,.!?;\n…：:\uff0c\u3002\uff01\uff1f\uff1b\uff1a"
CLAUSE_MARK = "\x1f"

HAN_REPEAT = re.compile(r"([\u3400-\u9fff])\1+")
# The same test without the greedy tail: search() stops at the first pair, ~2x faster.
_HAN_PAIR = re.compile(r"([\u3400-\u9fff])\1")
_HAN_FIRST, _HAN_LAST = "\u3400", "\u9fff"
# A Han character, clause marks, the same character: starts with the mark, which re finds with
# a fast literal search.
_PAIR_ACROSS_MARK = re.compile(r"\x1f(?<=([\u3400-\u9fff])\x1f)\x1f*\1")

_OPENCC_DIR = Path(str(opencc.__file__)).parent / "dictionary"


def _load_opencc_chars() -> dict[str, str]:
    """Traditional → simplified for single characters, from opencc's shipped dictionary."""
    mapping: dict[str, str] = {}
    for line in (_OPENCC_DIR / "TSCharacters.txt").read_text("utf-8").splitlines():
        key, _, values = line.partition("\t")
        first = values.split(" ")[0] if values else ""
        if len(key) == 1 and len(first) == 1 and key != first:
            mapping[key] = first
    # Japanese shinjitai (収, 乗) are look-alikes of the traditional form.
    for line in (_OPENCC_DIR / "JPVariants.txt").read_text("utf-8").splitlines():
        key, _, values = line.partition("\t")
        for variant in values.split(" "):
            if len(key) == 1 and len(variant) == 1 and variant != key:
                mapping.setdefault(variant, mapping.get(key, key))
    return mapping


def _load_lookalikes() -> dict[str, str]:
    text = resources.files("compliance").joinpath("data/lookalikes.json").read_text("utf-8")
    data = json.loads(text)
    return {k: v for k, v in data["chars"].items() if len(k) == 1 and len(v) == 1}


class Normaliser:
    """Folds text for matching: NFKC, case, width, traditional→simplified, styled digits,
    look-alikes, dropped separators/punctuation/invisible code points, collapsed Han repeats."""

    __slots__ = ("_table", "_marked_table", "_fast", "_fast_marked", "_keep")

    def __init__(self, lookalikes: dict[str, str] | None = None) -> None:
        self._table = _build_table(_load_opencc_chars(), lookalikes or {})
        marked = dict(self._table)
        for ch in CLAUSE_BREAKS:
            marked[ord(ch)] = CLAUSE_MARK
        self._marked_table = marked
        # str.translate with a dict raises and clears KeyError for every unmapped character;
        # a dense list has no misses below its length, which makes the pass ~2x faster.
        self._fast = _dense(self._table)
        self._fast_marked = _dense(marked)
        # 1 where a character survives folding, 0 where it is dropped: offsets come from
        # itertools.compress over this mask, in C, instead of a per-character Python loop.
        self._keep = ["\x01" if v else "\x00" for v in self._fast]

    def fold(self, text: str) -> str:
        table = self._table if _beyond_dense(text) else self._fast
        return collapse_repeats(text.translate(table))

    def fold_pair(self, text: str) -> tuple[str, str]:
        """``(fold(text), marked)`` from one translate pass; ``marked`` is the folded text with
        CLAUSE_MARK where clause punctuation was (before Han repeats are collapsed)."""
        folded, marked, _ = self.fold_clauses(text)
        return folded, marked

    def fold_clauses(self, text: str) -> tuple[str, str, str | None]:
        """``(fold(text), marked, clauses)`` from one translate pass.

        ``marked``: as in ``fold_pair``. ``clauses``: ``fold(text)`` with CLAUSE_MARK where
        clause punctuation was, so that removing the marks gives ``fold(text)`` and splitting
        at them gives the clauses in the folded text's own offsets; None in the rare case of a
        repeat across punctuation (好，好), which collapses across the mark.
        """
        if _beyond_dense(text):
            marked = text.translate(self._marked_table)
        else:
            marked = text.translate(self._fast_marked)
        clauses = collapse_repeats(marked)
        if _PAIR_ACROSS_MARK.search(clauses) is None:
            return clauses.replace(CLAUSE_MARK, ""), marked, clauses
        return collapse_repeats(clauses.replace(CLAUSE_MARK, "")), marked, None

    def fold_with_offsets(self, text: str, pre: str | None = None) -> tuple[str, list[int]]:
        """The same string as ``fold`` and, per folded character, its original index.

        ``pre``: the caller's ``text.translate`` result before repeats are collapsed (the
        marked copy of ``fold_pair`` without its marks), saving one translate pass.
        """
        if pre is None:
            pre = text.translate(self._table if _beyond_dense(text) else self._fast)
        return collapse_repeats(pre), self.offsets(text, pre)

    def offsets(self, text: str, pre: str) -> list[int]:
        """Per character of ``fold(text)``, its index in ``text``; ``pre``: ``text`` translated
        with the fold's table, repeats not collapsed yet (the engine has it from ``fold_pair``).
        """
        if not text or _beyond_dense(text):
            return self._fold_with_offsets_slow(text)[1]
        mask = text.translate(self._keep).encode("latin-1")
        kept = list(itertools.compress(range(len(text)), mask))
        if len(kept) != len(pre):
            return self._fold_with_offsets_slow(text)[1]  # a character expanded (㍿ → 株式会社)
        first = _HAN_PAIR.search(pre)
        if first is None:
            return kept
        # As in collapse_repeats: nothing before the first pair is collapsed; each run keeps the
        # index of its first character.
        offsets = kept[: first.start()]
        last = first.start()
        for m in HAN_REPEAT.finditer(pre, last):
            offsets += kept[last : m.start() + 1]
            last = m.end()
        offsets += kept[last:]
        return offsets

    def _fold_with_offsets_slow(self, text: str) -> tuple[str, list[int]]:
        table = self._table
        chars: list[str] = []
        offsets: list[int] = []
        last = ""
        for index, ch in enumerate(text):
            mapped = table.get(ord(ch), ch)
            if not mapped:
                continue
            for out in mapped:
                if out == last and _HAN_FIRST <= out <= _HAN_LAST:
                    continue
                chars.append(out)
                offsets.append(index)
                last = out
        return "".join(chars), offsets

    def fold_char(self, ch: str) -> str:
        mapped = self._table.get(ord(ch), ch)
        return mapped or ""


_DENSE_END = 0x1FB00
_DENSE_END_CHAR = chr(_DENSE_END)


def collapse_repeats(folded: str) -> str:
    # search() first, then split/join: both stay in C, where sub() with a template expands it
    # in Python for every match (谢谢 is in half of all chat messages). The text before the
    # first pair has no repeat (nor one running into the pair), so only the rest is split.
    first = _HAN_PAIR.search(folded)
    if first is None:
        return folded
    at = first.start()
    return folded[:at] + "".join(HAN_REPEAT.split(folded[at:]))


def clause_between(clauses: str, a: int, b: int) -> bool:
    """Clause punctuation between folded characters ``a`` and ``b`` (a < b), read from the
    clause-marked fold (``fold_clauses``) without an offset map.

    Folded character b sits in ``clauses`` at b plus the marks before it: the least such
    position, found by counting marks (in C) until it stops moving, then past any marks. A mark
    lies between a and b when the b - a characters before that position are not all folded
    characters.
    """
    at = b
    while (moved := b + clauses.count(CLAUSE_MARK, 0, at)) != at:
        at = moved
    while at < len(clauses) and clauses[at] == CLAUSE_MARK:
        at += 1
    return clauses.find(CLAUSE_MARK, at - (b - a), at) != -1


def _beyond_dense(text: str) -> bool:
    """Does ``text`` hold a code point the dense tables do not cover (tags, CJK ext. B)?

    ``max(text)`` costs as much as the translate itself, so first ask CPython's compact string
    layout: only strings with 4 bytes per character can hold astral code points.
    """
    # Compact UCS-2 takes 2n+74 bytes, UCS-4 4n+76: the bound separates them, and a
    # string that is not compact only gets larger, falling through to the exact check.
    if sys.getsizeof(text) < 3 * len(text) + 75:
        return False
    return bool(text) and max(text) >= _DENSE_END_CHAR


def _dense(table: dict[int, str | None]) -> list[str | None]:
    """The table as a list indexed by code point up to _DENSE_END (identity where unmapped)."""
    dense: list[str | None] = []
    for cp in range(_DENSE_END):
        if cp in table:
            dense.append(table[cp])
        elif 0xD800 <= cp <= 0xDFFF:
            dense.append(None)
        else:
            dense.append(chr(cp))
    return dense


def _build_table(opencc: dict[str, str], lookalikes: dict[str, str]) -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    code_points = list(range(0x10000)) + [cp for lo, hi in _ASTRAL_RANGES for cp in range(lo, hi)]
    code_points += [ord(k) for k in opencc if ord(k) >= 0x10000]
    # Decimal digits of every script (all of them below U+20000), so a number in any of them
    # folds to ASCII digits.
    code_points += [
        cp
        for cp in range(0x10000, 0x20000)
        if unicodedata.category(chr(cp)) == "Nd"
        and not any(lo <= cp < hi for lo, hi in _ASTRAL_RANGES)
    ]
    for cp in code_points:
        ch = chr(cp)
        folded = _fold_one(ch, opencc, lookalikes)
        if folded != ch:
            table[cp] = folded or None
    return table


def _fold_one(ch: str, opencc: dict[str, str], lookalikes: dict[str, str]) -> str:
    category = unicodedata.category(ch)
    if category == "Cs":
        return ""
    if category == "Nd":
        # Decimal digits of any script (٣, ३, ๓, 𝟑) → ASCII digits, as full width already is.
        return str(unicodedata.decimal(ch))
    if category == "No":
        # Circled/parenthesised/dingbat digits (①, ⑴, ❶, ⓫) → ASCII digits.
        value = unicodedata.numeric(ch, None)
        if value is not None and value == int(value) and 0 <= value <= 100:
            nfkc = unicodedata.normalize("NFKC", ch)
            if not any("\u3400" <= c <= "\u9fff" for c in nfkc):
                return str(int(value))
    out: list[str] = []
    for c in unicodedata.normalize("NFKC", ch).lower():
        cat = unicodedata.category(c)
        if cat.startswith(_DROP_PREFIXES) and cat not in _KEEP_MARKS:
            continue
        c = opencc.get(c, c)
        c = lookalikes.get(c, c)
        c = _FINANCIAL_NUMERALS.get(c, c)
        out.append(c)
    return "".join(out)


@functools.cache
def default_normaliser() -> Normaliser:
    """The shared normaliser (immutable; built once per process, ~0.3 s)."""
    return Normaliser(_load_lookalikes())
