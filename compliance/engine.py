"""The compliance engine: one Aho–Corasick automaton over folded text, built once, then read-only.

``ComplianceEngine.check`` folds a message once, scans it, and only on a hit maps spans back to
the original text, applies exceptions and negation scope, scores intent and suitability.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import ahocorasick_rs

from compliance.intent import (
    CUES,
    Cue,
    IntentFinding,
    cues_by_class,
    findings_unless,
)
from compliance.normalize import (
    CLAUSE_BREAKS,
    CLAUSE_MARK,
    Normaliser,
    clause_between,
    default_normaliser,
)
from compliance.personal_data import VALIDATORS, digit_fold, mask_digits
from compliance.products import ProductCatalog, customer_level
from compliance.rules import ROLES, Rule, RuleSet, Tier
from compliance.variants import LEFT, RIGHT, default_homophones, term_variants


@dataclass(frozen=True, slots=True)
class Hit:
    """One finding; ``start``/``end`` index the ORIGINAL text of the checked message."""

    rule_id: str
    category: str
    tier: Tier
    start: int
    end: int
    matched: str
    in_previous: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    tier: Tier
    hits: tuple[Hit, ...]
    masked_text: str
    hold: bool

    @property
    def blocked(self) -> bool:
        return self.tier is Tier.BLOCK

    @property
    def categories(self) -> frozenset[str]:
        return frozenset(h.category for h in self.hits)


# A frozen dataclass's __init__ sets each field through object.__setattr__ (~0.9 µs for a
# Verdict); every message gets one, most of them a pass, so that one is built through the slot
# descriptors instead (~0.5 µs), with the same result.
_SET_VERDICT_FIELDS = tuple(
    vars(Verdict)[name].__set__ for name in ("tier", "hits", "masked_text", "hold")
)


def _passed(text: str) -> Verdict:
    """``Verdict(Tier.PASS, (), text, False)``."""
    verdict = object.__new__(Verdict)
    set_tier, set_hits, set_masked, set_hold = _SET_VERDICT_FIELDS
    set_tier(verdict, Tier.PASS)
    set_hits(verdict, ())
    set_masked(verdict, text)
    set_hold(verdict, False)
    return verdict


# Payload kinds stored in the automaton. _REFUTER keys are the refuting predicates of
# _REFUTED_BY: a message none of them occurs in needs no refutation test at all.
_TERM, _FIRST, _SECOND, _EXC, _CUE, _PRODUCT, _REFUTER = range(7)

# Negation scope: a negator directly before the matched term, with at most a few filler words
# between (不承诺保本, 无法对收益作任何保证), and no clause punctuation in the original between.
_NEGATORS = (
    "不",
    "没",
    "无",
    "未",
    "非",
    "别",
    "勿",
    "莫",
    "禁止",
    "严禁",
    "谨防",
    "警惕",
    "防范",
    "杜绝",
    "拒绝",
    "切勿",
    "从未",
    "绝非",
    "并非",
    "远离",
    "小心",
    "识别",
    "揭露",
    "举报",
    "打击",
    "反对",
    "不存在",
    "没有",
    "不是",
    "无法",
    "难以",
    "谁也不",
    "没人",
)
_NOT_NEGATING = (
    "不用担心",
    "不用怕",
    "不用急",
    "不用说",
    "不用多说",
    "不用想",
    "不用犹豫",
    "不必担心",
    "不要担心",
    "不要怕",
    "不要犹豫",
    "不要错过",
    "别担心",
    "别怕",
    "别犹豫",
    "别错过",
    "别人",
    "别的",
    "不错",
    "不少",
    "不过",
    "不仅",
    "不但",
    "不管",
    "不论",
    "不久",
    "不然",
    "不怕",
    "不愧",
    "不妨",
    "不停",
    "不断",
    "不到",
    "不容错过",
    "不可错过",
    "没事",
    "没关系",
    "没问题",
    "没毛病",
    "没跑",
    "没多久",
    "无论",
    "无须担心",
    "无需担心",
    "无忧",
    "无风险",
    "无敌",
    "无限",
    "无比",
    "无数",
    "非常",
    "未来",
    "莫名",
    "不赔",
    "不亏",
    "没得说",
    "不一般",
    "不得了",
    "不可思议",
    "不同",
    "小心点",
    "无非",
    "无疑",
    "毫无疑问",
)
_NEG_WINDOW = 12
_NEGATOR_RE = re.compile(
    "(?=(?:" + "|".join(re.escape(n) for n in sorted(_NEGATORS, key=len, reverse=True)) + "))"
)
# Where a negator could start, nearest to the term first: the LAST character of a plain class in
# the window (greedy ``.*`` then the class, matched in C); each candidate is then confirmed.
_LAST_NEGATOR_FIRST = re.compile(
    "(?s:.*)[" + "".join(sorted({re.escape(n[0]) for n in _NEGATORS})) + "]"
)
_ONE_CHAR_NEGATORS = frozenset(n for n in _NEGATORS if len(n) == 1)
# Idioms by their first two characters, so a candidate is compared with one or two of them
# instead of all of them.
_NOT_NEGATING_BY_PREFIX: dict[str, tuple[str, ...]] = {}
for _idiom in _NOT_NEGATING:
    _NOT_NEGATING_BY_PREFIX[_idiom[:2]] = (*_NOT_NEGATING_BY_PREFIX.get(_idiom[:2], ()), _idiom)
_CLAUSE_BREAKS = frozenset(CLAUSE_BREAKS)
# Negation after the term (保本是不可能的, 稳赚不赔的都是骗子, 刚性兑付已经被打破): up to three
# characters closed by 的 (so 稳赚 inside 稳赚不赔的 is covered too) or a demonstrative, a noun for
# the claim, a few copulas and adverbs, a refuting predicate and sentence particles,
# matched on the folded text right after the term; the engine also wants the clause to end there.
_REFUTED_BY = (
    "不可能",
    "不存在",
    "不现实",
    "不成立",
    "不可信",
    "不靠谱",
    "做不到",
    "行不通",
    "没有的事",
    "没这回事",
    "骗局",
    "骗子",
    "骗人",
    "假的",
    "谎言",
    "忽悠",
    "陷阱",
    "误导",
    "虚假宣传",
    "违规",
    "违法",
    "不合规",
    "被禁止",
    "禁止",
    "不允许",
    "被打破",
    "打破",
    "不复存在",
    "成为历史",
)
_REFUTATION = re.compile(
    "(?:.{0,3}?的|这种|这类|这样的|之类的)?(?:说法|承诺|宣传|产品|话|事情|事)?"
    "(?:是|都是|就是|根本|根本就|完全|纯属|属于|已经|早就|早已|已|都|也|本身|其实|本来就"
    "|肯定|绝对|就|被|全|全都|统统|一律|基本|大多|多半|往往)*"
    "(?:" + "|".join(sorted(_REFUTED_BY, key=len, reverse=True)) + ")"
    "(?:的|了|啊|呀|呢|吧|哦|嘛)*"
)
_TAIL_CHARS = 48  # original characters kept from each previous message for the split window
_PREVIOUS_MESSAGES = 2
# Gate for validated regex rules. The separators the patterns allow (spaces, hyphens, invisible
# code points) are all dropped by folding, and folding turns the decimal digits of every script
# into ASCII, so a number a validator accepts leaves its digits contiguous and ASCII in the
# folded text, and each validator wants a fixed shape: mobile 1[3-9] + 9 digits, bank card
# [3-6] + 15..18 digits (Luhn), ID card [1-8] + 16 digits + digit or x. The gate asks for one of
# those shapes (order numbers and dates of 11+ digits mostly fail it). It starts with a plain
# character class, which re scans for in C (``\d`` costs twice as much: a Unicode lookup per
# character).
_DIGIT_RUN = re.compile(
    r"[0-9](?:(?<=1)[3-9][0-9]{9}|(?<=[3-6])[0-9]{15}|(?<=[1-8])[0-9]{16}[0-9x])"
)
_KEEP_DIGITS = {"luhn": (4, 4), "id_card": (6, 4), "mobile": (3, 4)}
# What a validator is given from a regex match: its digits and x/X (an ASCII match is stripped
# with this table; anything else character by character).
_VALIDATED_ASCII = {c: None for c in range(128) if not chr(c).isdigit() and chr(c) not in "xX"}

_ROLE_INDEX = {role: i for i, role in enumerate(ROLES)}
# Entries kept for every role: they only refine hits of active rules, or are role-free.
_ROLELESS = frozenset({_EXC, _CUE, _PRODUCT, _REFUTER})
# Bit layout of a key mask: flags, then one bit per cue class, then one bit per rule for near
# "first" groups, then one per rule for "second" groups.
_ANY_TERM = 1
_ANY_PRODUCT = 2
_ANY_EXCEPTION = 4
_ANY_REFUTER = 8
_CUE_SHIFT = 4
_CUE_FULL = (1 << len(CUES)) - 1
_FIRST_SHIFT = _CUE_SHIFT + len(CUES)

_SAME_CLAUSE = frozenset({"certain+gain", "gain+assure"})
_INTENT_RULE = {"promise_returns": "INTENT-PROMISE", "inducing_trades": "INTENT-INDUCE"}


@dataclass(frozen=True, slots=True)
class _RegexRule:
    index: int
    pattern: re.Pattern[str]
    validator: str | None


class ComplianceEngine:
    """Immutable after ``__init__``; safe to share between threads and swap atomically."""

    __slots__ = (
        "rules",
        "products",
        "intent_tier",
        "suitability_tier",
        "key_count",
        "_fold",
        "_norm",
        "_automaton",
        "_keys",
        "_key_masks",
        "_key_payloads",
        "_rules",
        "_active",
        "_regex",
        "_regex_by_role",
        "_regex_ungated",
        "_near_count",
        "_near_params",
        "_frozen",
    )

    def __init__(
        self,
        rules: RuleSet | Sequence[Rule],
        products: ProductCatalog | None = None,
        *,
        intent_tier: Tier | None = Tier.WARN,
        suitability_tier: Tier = Tier.WARN,
        normaliser: Normaliser | None = None,
    ) -> None:
        self.rules = rules if isinstance(rules, RuleSet) else RuleSet(rules)
        self.products = products if products is not None else ProductCatalog()
        self.intent_tier = intent_tier
        self.suitability_tier = suitability_tier
        self._norm = normaliser or default_normaliser()
        self._fold = self._norm.fold
        self._rules: tuple[Rule, ...] = tuple(self.rules)
        self._active = MappingProxyType(
            {role: tuple(role in r.roles for r in self._rules) for role in ROLES}
        )
        keys: dict[str, dict[tuple[int, int, int], None]] = {}

        def add(key: str, entry: tuple[int, int, int]) -> None:
            if key:
                keys.setdefault(key, {})[entry] = None

        homophones = default_homophones()
        regex: list[_RegexRule] = []
        for index, rule in enumerate(self._rules):
            groups: list[tuple[int, tuple[str, ...]]] = []
            if rule.terms:
                groups.append((_TERM, rule.terms))
            elif rule.near is not None:
                groups += [(_FIRST, rule.near.first), (_SECOND, rule.near.second)]
            else:
                assert rule.regex is not None
                regex.append(_RegexRule(index, re.compile(rule.regex), rule.validator))
            for kind, terms in groups:
                for term in terms:
                    folded = self._fold(term)
                    for variant in term_variants(
                        folded,
                        homophones=homophones if rule.homophones else None,
                        initials=rule.initials and kind == _TERM,
                        fold=self._fold,
                    ):
                        add(variant.key, (kind, index, variant.edges))
            for exc in rule.exceptions:
                add(self._fold(exc), (_EXC, index, False))
        for cls_index, cls in enumerate(CUES):
            for word in CUES[cls]:
                add(self._fold(word), (_CUE, cls_index, False))
        for p_index, product in enumerate(self.products):
            for name in product.names:
                add(self._fold(name), (_PRODUCT, p_index, False))
        for predicate in _REFUTED_BY:
            # Folding leaves every predicate as it is (tested), so the key matches wherever
            # _REFUTATION's literal can.
            add(self._fold(predicate), (_REFUTER, 0, False))
        active_by_role = [self._active[role] for role in ROLES]
        # Near rules get compact ordinals so key masks stay small ints however many rules exist.
        near_ordinal = {
            index: n for n, index in enumerate(i for i, r in enumerate(self._rules) if r.near)
        }
        self._near_count = len(near_ordinal)
        # (within, ordered) by rule index, read once per near rule a message pairs ((0, False)
        # for the rules without a near pattern: never read).
        self._near_params: tuple[tuple[int, bool], ...] = tuple(
            (r.near.within, r.near.ordered) if r.near is not None else (0, False)
            for r in self._rules
        )
        # Per role, indexed by the automaton's pattern index: the key's mask and its payload.
        masks: list[list[int]] = [[] for _ in ROLES]
        payloads: list[list[_Payload]] = [[] for _ in ROLES]
        for entries in keys.values():
            for role_index, active in enumerate(active_by_role):
                kept = tuple(e for e in entries if e[0] in _ROLELESS or active[e[1]])
                masks[role_index].append(_key_mask(kept, near_ordinal))
                payloads[role_index].append(_key_payload(kept, near_ordinal))
        self._key_masks = tuple(tuple(m) for m in masks)
        # Stored by kind (five tuples indexed by key) so ``expand`` gathers each kind with one
        # comprehension over the matches instead of unpacking every key's payload.
        self._key_payloads = tuple(_by_kind(p) for p in payloads)
        # ahocorasick_rs (Rust) reports every overlapping match as (pattern, start, end) in
        # character offsets, about 4x faster than pyahocorasick's iter over the same keys.
        self._keys = tuple(keys)
        self._automaton = (
            ahocorasick_rs.AhoCorasick(
                self._keys, matchkind=ahocorasick_rs.MatchKind.Standard, store_patterns=False
            )
            if keys
            else None
        )
        self.key_count = len(keys)
        self._regex = tuple(regex)
        if any(rx.validator is not None for rx in regex):
            digit_fold("")  # build its tables now, not on the first message with a number
        self._regex_by_role = tuple(
            tuple(rx for rx in self._regex if self._active[role][rx.index]) for role in ROLES
        )
        # Roles with a regex rule that has no validator, which the digit gate cannot skip.
        self._regex_ungated = tuple(
            any(rx.validator is None for rx in rules) for rules in self._regex_by_role
        )
        self._frozen = True

    def __setattr__(self, name: str, value: object) -> None:
        # The hub shares one engine across tasks and swaps whole engines on rule changes;
        # mutating one in place would race with checks in flight.
        if getattr(self, "_frozen", False):
            raise AttributeError(f"ComplianceEngine is immutable (tried to set {name!r})")
        object.__setattr__(self, name, value)

    # -- public -----------------------------------------------------------------------------

    def check(
        self,
        text: str,
        role: str,
        previous: Sequence[str] = (),
        customer_risk: str | None = None,
    ) -> Verdict:
        """Judge one message. ``previous``: the sender's earlier messages, most recent last."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        level = customer_level(customer_risk) if customer_risk is not None else None
        fold = self._fold
        folded, marked, clauses = self._norm.fold_clauses(text)
        boundary = 0
        scan = folded
        if previous:
            tail = "".join(fold(p[-_TAIL_CHARS:]) for p in previous[-_PREVIOUS_MESSAGES:])
            if tail:
                scan = tail + folded
                boundary = len(tail)
        role_index = _ROLE_INDEX[role]
        automaton = self._automaton
        found_keys = automaton.find_matches_as_indexes(scan, overlapping=True) if automaton else []
        acc = 0
        key_masks = self._key_masks[role_index]
        if boundary:
            # A term entirely inside the previous messages was judged when they were sent.
            for key, _, end in found_keys:
                acc |= key_masks[key] if end > boundary else key_masks[key] & ~_ANY_TERM
        else:
            for key, _, _ in found_keys:
                acc |= key_masks[key]
        cue_mask = (acc >> _CUE_SHIFT) & _CUE_FULL
        near_count = self._near_count
        near_pairs = (acc >> _FIRST_SHIFT) & (acc >> (_FIRST_SHIFT + near_count))
        near_pairs &= (1 << near_count) - 1
        worth = bool(acc & _ANY_TERM) or bool(near_pairs)
        if not worth and role != "investor" and cue_mask:
            worth = _intent_possible(cue_mask, bool(acc & _ANY_PRODUCT), level)
        regex_hits: list[Hit] = []
        masks: list[tuple[int, int, int, int]] = []
        if self._regex_by_role[role_index]:
            gate_open = _DIGIT_RUN.search(folded) is not None
            if gate_open or self._regex_ungated[role_index]:
                self._scan_regex(text, gate_open, role_index, regex_hits, masks)
        if not regex_hits and not worth:
            return _passed(text)
        found = _Found(cue_mask, bool(acc & _ANY_PRODUCT))
        found.expand(
            found_keys,
            self._key_payloads[role_index],
            any_term=bool(acc & _ANY_TERM),
            any_exception=bool(acc & _ANY_EXCEPTION),
            near_pairs=near_pairs,
            intent=role != "investor" and found.intent_possible(level),
            suitability=level is not None and found.any_product,
        )
        hits = _Evaluation(
            self, text, scan, boundary, role, level, marked, clauses, bool(acc & _ANY_REFUTER)
        ).run(found)
        hits.extend(regex_hits)
        if not hits:
            return _passed(text)
        hits = _merge_overlaps(hits)
        tier = max(h.tier for h in hits)
        by_id = self.rules.get
        hold = False
        for h in hits:
            if h.tier is Tier.BLOCK:
                rule = by_id(h.rule_id)
                hold = hold or bool(rule and rule.hold)
        masked = mask_digits(text, masks) if masks else text
        return Verdict(tier, tuple(hits), masked, hold)

    # -- internals --------------------------------------------------------------------------

    def _scan_regex(
        self,
        text: str,
        gate_open: bool,
        role_index: int,
        hits: list[Hit],
        masks: list[tuple[int, int, int, int]],
    ) -> None:
        """Regex rules; validated ones only if the digit gate let the message through."""
        digit_text: str | None = None
        taken: list[tuple[int, int]] = []
        for rx in self._regex_by_role[role_index]:
            if rx.validator is not None:
                if not gate_open:
                    continue
                if digit_text is None:
                    digit_text = digit_fold(text)
                subject = digit_text
            else:
                subject = text
            rule = self._rules[rx.index]
            for m in rx.pattern.finditer(subject):
                start, end = m.span()
                if start == end or any(s < end and start < e for s, e in taken):
                    continue
                if rx.validator is not None:
                    matched = m.group()
                    if matched.isascii():
                        digits = matched.translate(_VALIDATED_ASCII)
                    else:
                        digits = "".join(c for c in matched if c.isdigit() or c in "xX")
                    if not VALIDATORS[rx.validator](digits):
                        continue
                taken.append((start, end))
                hits.append(
                    Hit(rule.id, rule.category, rule.tier, start, end, text[start:end], False)
                )
                if rule.category == "personal_data":
                    head, tail = _KEEP_DIGITS.get(rx.validator or "", (0, 4))
                    masks.append((start, end, head, tail))


_CUE_BIT = {name: 1 << i for i, name in enumerate(CUES)}
_CUE_NAMES = tuple(CUES)
# Cue classes that still count when they sit in the previous message (a lead-in to this one).
_CARRIED_CUES = frozenset({"lead", "certain", "urge"})
# Cue-class combinations that can produce an intent finding (see intent.score_intent).
_INTENT_COMBOS = tuple(
    _CUE_BIT[a] | _CUE_BIT[b]
    for a, b in (
        ("certain", "gain"),
        ("gain", "assure"),
        ("lead", "gain"),
        ("lead", "certain"),
        ("lead", "urge"),
        ("urge", "gain"),
        ("urge", "certain"),
    )
)


# Indexed by a message's OR-ed cue-class mask: can those classes form an intent finding?
_INTENT_BY_MASK = tuple(
    any(mask & combo == combo for combo in _INTENT_COMBOS) for mask in range(1 << len(CUES))
)
_RECOMMEND_BIT = _CUE_BIT["recommend"]


def _intent_possible(cue_mask: int, any_product: bool, level: int | None) -> bool:
    """Can the cue classes present produce an intent or a suitability finding?"""
    if _INTENT_BY_MASK[cue_mask]:
        return True
    return level is not None and any_product and bool(cue_mask & _RECOMMEND_BIT)


def _key_mask(entries: tuple[tuple[int, int, int], ...], near_ordinal: dict[int, int]) -> int:
    """One int summarising a key for a role: OR-ed over a message, it tells ``check`` whether
    anything needs a closer look (see _ANY_TERM, _CUE_SHIFT, _FIRST_SHIFT)."""
    mask = 0
    for kind, index, _ in entries:
        if kind == _TERM:
            mask |= _ANY_TERM
        elif kind == _PRODUCT:
            mask |= _ANY_PRODUCT
        elif kind == _EXC:
            mask |= _ANY_EXCEPTION
        elif kind == _REFUTER:
            mask |= _ANY_REFUTER
        elif kind == _CUE:
            mask |= 1 << (_CUE_SHIFT + index)
        elif kind == _FIRST:
            mask |= 1 << (_FIRST_SHIFT + near_ordinal[index])
        elif kind == _SECOND:
            mask |= 1 << (_FIRST_SHIFT + len(near_ordinal) + near_ordinal[index])
    return mask


# Per key and role, its entries grouped by kind so a scan does no per-entry dispatch:
# terms (rule, latin edges), the OR of its near halves' rule bits, near halves (kind, rule,
# edges, the rule's bit in a message's near_pairs), the rules the key is an exception of (a
# frozenset, or None), names of its intent cue classes, of its suitability cue classes
# (recommend, unsuitable: only read when a customer level and a product make suitability
# possible), products.
_Payload = tuple[
    tuple[tuple[int, int], ...],
    int,
    tuple[tuple[int, int, int, int], ...],
    frozenset[int] | None,
    tuple[str, ...],
    tuple[str, ...],
    tuple[int, ...],
]


_PayloadsByKind = tuple[
    tuple[tuple[tuple[int, int], ...], ...],
    tuple[int, ...],
    tuple[tuple[tuple[int, int, int, int], ...], ...],
    tuple[frozenset[int] | None, ...],
    tuple[tuple[str, ...], ...],
    tuple[tuple[str, ...], ...],
    tuple[tuple[int, ...], ...],
]

_SUITABILITY_CUES = frozenset({"recommend", "unsuitable"})


def _by_kind(payloads: list[_Payload]) -> _PayloadsByKind:
    if not payloads:
        return (), (), (), (), (), (), ()
    terms, near_bits, near, exceptions, cues, suitability, products = zip(*payloads, strict=True)
    return (
        tuple(terms),
        tuple(near_bits),
        tuple(near),
        tuple(exceptions),
        tuple(cues),
        tuple(suitability),
        tuple(products),
    )


def _key_payload(
    entries: tuple[tuple[int, int, int], ...], near_ordinal: dict[int, int]
) -> _Payload:
    near = tuple(
        (kind, index, token, 1 << near_ordinal[index])
        for kind, index, token in entries
        if kind in (_FIRST, _SECOND)
    )
    cues = [_CUE_NAMES[index] for kind, index, _ in entries if kind == _CUE]
    return (
        tuple((index, token) for kind, index, token in entries if kind == _TERM),
        functools.reduce(operator.or_, (bit for *_, bit in near), 0),
        near,
        frozenset(index for kind, index, _ in entries if kind == _EXC) or None,
        tuple(name for name in cues if name not in _SUITABILITY_CUES),
        tuple(name for name in cues if name in _SUITABILITY_CUES),
        tuple(index for kind, index, _ in entries if kind == _PRODUCT),
    )


_NO_RULES: frozenset[int] = frozenset()
# Cue(...) runs the named tuple's __new__ in Python; this builds the same tuple in C (a few are
# made for every message that could carry intent).
_new_cue = functools.partial(tuple.__new__, Cue)


def _excepted_at(
    exceptions: list[tuple[frozenset[int], int, int]], start: int, end: int
) -> frozenset[int]:
    """The rules whose exceptions overlap the span [start, end)."""
    out = _NO_RULES
    for excepted, es, ee in exceptions:
        if es < end and start < ee:
            out = out | excepted
    return out


class _Found:
    """What the automaton found in one scan, grouped by payload kind."""

    __slots__ = (
        "terms",
        "firsts",
        "seconds",
        "exceptions",
        "cues",
        "cue_mask",
        "products",
        "any_product",
    )

    def __init__(self, cue_mask: int, any_product: bool) -> None:
        # One entry per matched key with terms: its (rule, latin edges) pairs and the span. Many
        # rules and variants share a key, and negation scope is a property of the span, so the
        # evaluation works per span rather than per rule.
        self.terms: list[tuple[tuple[tuple[int, int], ...], int, int]] = []
        self.firsts: dict[int, list[tuple[int, int, int]]] = {}
        self.seconds: dict[int, list[tuple[int, int, int]]] = {}
        # (rules the matched key is an exception of, start, end), one entry per matched key.
        self.exceptions: list[tuple[frozenset[int], int, int]] = []
        self.cues: list[Cue] = []
        self.cue_mask = cue_mask
        self.any_product = any_product
        self.products: list[tuple[int, int, int]] = []

    def expand(
        self,
        found_keys: list[tuple[int, int, int]],
        key_payloads: _PayloadsByKind,
        *,
        any_term: bool,
        any_exception: bool,
        near_pairs: int,
        intent: bool,
        suitability: bool,
    ) -> None:
        """Group the scan's payloads, each kind only if the key masks say it is there and can
        matter: exceptions only with a term or a near pair to cancel, near halves only of rules
        with both halves here, cues only if intent or suitability can come of them, products
        and suitability cues only if suitability can."""
        (
            key_terms,
            key_near_bits,
            key_near,
            key_exceptions,
            key_cues,
            key_suitability,
            key_products,
        ) = key_payloads
        if any_term:
            self.terms = [
                (t, start, end) for key, start, end in found_keys if (t := key_terms[key])
            ]
        if any_exception and (any_term or near_pairs):
            self.exceptions = [
                (x, start, end)
                for key, start, end in found_keys
                if (x := key_exceptions[key]) is not None
            ]
        if near_pairs:
            firsts, seconds = self.firsts, self.seconds
            for key, start, end in found_keys:
                if not near_pairs & key_near_bits[key]:
                    continue
                for kind, index, token, bit in key_near[key]:
                    if not near_pairs & bit:
                        continue  # the rule's other half is not in this message
                    spans = firsts if kind == _FIRST else seconds
                    spans.setdefault(index, []).append((start, end, token))
        if intent:
            self.cues = [
                _new_cue((name, start, end, False))
                for key, start, end in found_keys
                for name in key_cues[key]
            ]
            if suitability:
                self.cues += [
                    _new_cue((name, start, end, False))
                    for key, start, end in found_keys
                    for name in key_suitability[key]
                ]
                self.products = [
                    (index, start, end)
                    for key, start, end in found_keys
                    for index in key_products[key]
                ]

    def intent_possible(self, level: int | None) -> bool:
        return _intent_possible(self.cue_mask, self.any_product, level)


class _Evaluation:
    """Per-call working state for one message: exceptions, negation, spans, intent."""

    __slots__ = (
        "engine",
        "text",
        "scan",
        "boundary",
        "role",
        "level",
        "marked",
        "clauses",
        "refutable",
        "_offsets",
        "_negated_at",
        "_refuted_at",
    )

    def __init__(
        self,
        engine: ComplianceEngine,
        text: str,
        scan: str,
        boundary: int,
        role: str,
        level: int | None,
        marked: str,
        clauses: str | None,
        refutable: bool,
    ) -> None:
        self.engine = engine
        # Whether a refuting predicate occurs anywhere in the scanned text: _REFUTATION needs
        # one after the term, so without any the answer is no.
        self.refutable = refutable
        self.marked = marked
        self.clauses = clauses
        self.text = text
        self.scan = scan
        self.boundary = boundary
        self.role = role
        self.level = level
        self._offsets: list[int] | None = None
        # Many rules (and their variants) hit at the same place; scope is a property of the place.
        self._negated_at: dict[int, bool] = {}
        self._refuted_at: dict[int, bool] = {}

    @property
    def offsets(self) -> list[int]:
        if self._offsets is None:
            # The clause-marked translate already holds the uncollapsed fold: reuse it.
            offsets = self.engine._norm.offsets(self.text, self.marked.replace(CLAUSE_MARK, ""))
            # Defensive: the lazy map must describe the string that was scanned.
            if len(offsets) != len(self.scan) - self.boundary:
                raise AssertionError("fold and its offset map disagree")
            self._offsets = offsets
        return self._offsets

    def run(self, found: _Found) -> list[Hit]:
        rules = self.engine._rules
        terms, firsts, seconds = found.terms, found.firsts, found.seconds
        exceptions, cues, products = found.exceptions, found.cues, found.products
        hits: list[Hit] = []
        seen: set[tuple[str, int, int]] = set()

        def emit(rule: Rule, start: int, end: int) -> None:
            hit = self._hit(rule.id, rule.category, rule.tier, start, end)
            if hit is not None and (hit.rule_id, hit.start, hit.end) not in seen:
                seen.add((hit.rule_id, hit.start, hit.end))
                hits.append(hit)

        boundary = self.boundary
        negated, refuted = self._negated, self._refuted
        for key_terms, start, end in terms:
            if end <= boundary:
                continue
            excepted = _excepted_at(exceptions, start, end) if exceptions else _NO_RULES
            scoped: bool | None = None  # negated or refuted: the same for every rule here
            for index, token in key_terms:
                if index in excepted:
                    continue
                if token and not self._latin_edges_ok(start, end, token):
                    continue
                if scoped is None:
                    scoped = negated(start) or refuted(end)
                if scoped:
                    break
                emit(rules[index], start, end)
        near_params = self.engine._near_params
        for index, first_spans in firsts.items():
            second_spans = seconds.get(index)
            if not second_spans:
                continue
            within, ordered = near_params[index]
            for fs, fe, ftok in first_spans:
                matched = False
                for ss, se, stok in second_spans:
                    if (fs == ss and fe == se) or (fe <= boundary and se <= boundary):
                        continue
                    if ordered and ss < fe:
                        continue
                    # The gap between the two halves: max(fs, ss) - min(fe, se).
                    if (fs if fs > ss else ss) - (fe if fe < se else se) > within:
                        continue
                    if self._suppressed(index, fs, fe, ftok, exceptions) or self._suppressed(
                        index, ss, se, stok, exceptions
                    ):
                        continue
                    emit(rules[index], min(fs, ss), max(fe, se))
                    matched = True
                    break
                if matched:
                    break
        if self.role != "investor" and found.intent_possible(self.level):
            self._intent_and_suitability(cues, products, hits, emit_seen=seen)
        return hits

    # -- pieces ---------------------------------------------------------------------------

    def _suppressed(
        self,
        index: int,
        start: int,
        end: int,
        token: int,
        exceptions: list[tuple[frozenset[int], int, int]],
    ) -> bool:
        for excepted, es, ee in exceptions:
            if es < end and start < ee and index in excepted:
                return True
        if token and not self._latin_edges_ok(start, end, token):
            return True
        return self._negated(start) or self._refuted(end)

    def _latin_edges_ok(self, start: int, end: int, edges: int) -> bool:
        """The checked ends of a latin key do not run on into other latin letters or digits."""
        # Most latin keys sit between Han characters or at an end of the message, which the scan
        # answers without the offset map: what folds next to a Han character in the scan is that
        # character or nothing (no fold expansion puts a latin letter next to a Han character;
        # tested), and nothing before the first folded character or after the last folds to
        # anything.
        scan, boundary = self.scan, self.boundary
        if edges & LEFT and (start == boundary or _is_han(scan[start - 1])):
            edges &= ~LEFT
        if edges & RIGHT and end > boundary and (end == len(scan) or _is_han(scan[end])):
            edges &= ~RIGHT
        if not edges:
            return True
        offsets = self.offsets
        text = self.text
        fold_char = self.engine._norm.fold_char
        if edges & LEFT and start >= self.boundary:
            first = offsets[start - self.boundary]
            before = fold_char(text[first - 1]) if first > 0 else ""
            if before[-1:].isascii() and before[-1:].isalnum():
                return False
        if edges & RIGHT:
            last = offsets[end - 1 - self.boundary]
            after = fold_char(text[last + 1]) if last + 1 < len(text) else ""
            if after[:1].isascii() and after[:1].isalnum():
                return False
        return True

    def _negated(self, start: int) -> bool:
        """Is the term at ``start`` inside the scope of a negator (a disclaimer)?

        The nearest negator within ``_NEG_WINDOW`` folded characters before the term counts if
        no clause punctuation separates them in the original and it is not an idiom that
        negates nothing here (不用担心, 不过, 没问题, 无风险) or an A-not-A question (是不是).
        """
        known = self._negated_at.get(start)
        if known is not None:
            return known
        scan = self.scan
        lo = self.boundary if start >= self.boundary else 0
        if lo < start - _NEG_WINDOW:
            lo = start - _NEG_WINDOW
        if start > lo and scan[start - 1] in _ONE_CHAR_NEGATORS:
            # The most common disclaimer (不保证, 非保本): the nearest candidate, and no idiom or
            # A-not-A question fits between it and the term; only the clause test is left.
            result = not self._clause_break(start - 1, start)
            self._negated_at[start] = result
            return result
        result = False
        # Candidates nearest first: each search ends where the last candidate started.
        end = start
        while (m := _LAST_NEGATOR_FIRST.match(scan, lo, end)) is not None:
            pos = end = m.end() - 1
            # Same tests as on the slice scan[lo:start]: the negator and any idiom must end
            # before the term, and an A-not-A question needs a character on both sides. A
            # one-character negator always fits before the term.
            if scan[pos] not in _ONE_CHAR_NEGATORS and _NEGATOR_RE.match(scan, pos, start) is None:
                continue
            idioms = _NOT_NEGATING_BY_PREFIX.get(scan[pos : pos + 2])
            if idioms is not None and scan.startswith(idioms, pos, start):
                continue
            if lo < pos < start - 1 and scan[pos - 1] == scan[pos + 1]:
                continue
            result = not self._clause_break(pos, start)
            break
        self._negated_at[start] = result
        return result

    def _refuted(self, end: int) -> bool:
        """Is the term ending at ``end`` refuted by what follows it in its clause?

        Negation after the term: 保本是不可能的, 稳赚不赔的都是骗子, 刚性兑付已经被打破. The
        refuting predicate must close the clause (or the message), so 保本，不可能亏 (a promise)
        is not taken for a refutation.
        """
        if end <= self.boundary or not self.refutable:
            return False
        known = self._refuted_at.get(end)
        if known is not None:
            return known
        m = _REFUTATION.match(self.scan, end)
        result = False
        if m is not None:
            after = m.end()
            result = after == len(self.scan) or self._clause_break(after - 1, after)
        self._refuted_at[end] = result
        return result

    def _clause_break(self, start: int, end: int) -> bool:
        """Clause punctuation in the original text between folded positions start and end."""
        if start < self.boundary:
            return True
        a, b = start - self.boundary, end - self.boundary
        clauses = self.clauses
        if clauses is not None:
            return clause_between(clauses, a, b)
        # A repeat collapsed across punctuation (好，好): read the original text.
        offsets = self.offsets
        o_start = offsets[a]
        o_end = offsets[b] if b < len(offsets) else len(self.text)
        return any(c in _CLAUSE_BREAKS for c in self.text[o_start:o_end])

    def _hit(self, rule_id: str, category: str, tier: Tier, start: int, end: int) -> Hit | None:
        """Map a folded span of the scan string back to the original text of this message."""
        if end <= self.boundary:
            return None
        in_previous = start < self.boundary
        offsets = self.offsets
        first = offsets[max(start - self.boundary, 0)]
        last = offsets[end - 1 - self.boundary]
        return Hit(
            rule_id, category, tier, first, last + 1, self.text[first : last + 1], in_previous
        )

    def _intent_and_suitability(
        self,
        raw_cues: list[Cue],
        products: list[tuple[int, int, int]],
        hits: list[Hit],
        emit_seen: set[tuple[str, int, int]],
    ) -> None:
        boundary = self.boundary
        kept = (
            raw_cues
            if not boundary
            else [c for c in raw_cues if c.end > boundary or c.cls in _CARRIED_CUES]
        )
        # Negation scope is costly; only work it out for cues that could take part in a
        # finding: those about to complete an intent pattern (findings_unless asks), and
        # recommendations when suitability is checked. Neutral and unsuitable cues count
        # negated or not.
        negated, refuted = self._negated, self._refuted
        engine = self.engine
        findings: list[IntentFinding] = []
        if engine.intent_tier is not None:
            findings = findings_unless(
                cues_by_class(kept), self.scan, lambda c: negated(c.start) or refuted(c.end)
            )
        for finding in findings:
            if finding.end <= self.boundary:
                continue
            # Certainty and gain in different clauses are about different things (肯定的，收益…).
            if finding.reason in _SAME_CLAUSE and self._clause_break(
                max(finding.start, self.boundary), finding.end - 1
            ):
                continue
            # An intent finding duplicates a literal hit of the same category over the same text.
            if any(
                h.category == finding.category and h.start <= self._orig(finding.start)
                for h in hits
                if h.end >= self._orig_end(finding.end)
            ):
                continue
            assert engine.intent_tier is not None
            hit = self._hit(
                _INTENT_RULE[finding.category],
                finding.category,
                engine.intent_tier,
                finding.start,
                finding.end,
            )
            if hit is not None and (hit.rule_id, hit.start, hit.end) not in emit_seen:
                emit_seen.add((hit.rule_id, hit.start, hit.end))
                hits.append(hit)
        if self.level is None or not products:
            return
        current = [c for c in kept if c.start >= self.boundary]
        recommends = [c for c in current if c.cls == "recommend"]
        if not recommends or any(negated(c.start) or refuted(c.end) for c in recommends):
            return
        if any(c.cls == "unsuitable" for c in current):
            return
        for p_index, start, end in products:
            if start < self.boundary:
                continue
            product = engine.products[p_index]
            if product.risk > self.level:
                hit = self._hit(
                    f"SUIT-R{product.risk}-C{self.level}",
                    "suitability",
                    engine.suitability_tier,
                    start,
                    end,
                )
                if hit is not None and (hit.rule_id, hit.start, hit.end) not in emit_seen:
                    emit_seen.add((hit.rule_id, hit.start, hit.end))
                    hits.append(hit)

    def _orig(self, start: int) -> int:
        return self.offsets[max(start - self.boundary, 0)]

    def _orig_end(self, end: int) -> int:
        return self.offsets[end - 1 - self.boundary] + 1


def _is_han(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff"


def _merge_overlaps(hits: list[Hit]) -> list[Hit]:
    """One hit per rule per region: overlapping spans of the same rule become their union."""
    hits.sort(key=lambda h: (h.rule_id, h.start, -h.end))
    merged: list[Hit] = []
    for h in hits:
        last = merged[-1] if merged else None
        if last is not None and last.rule_id == h.rule_id and h.start < last.end:
            if h.end > last.end:
                # Extend the span; keep matched consistent with the new span.
                text_end = last.matched + h.matched[last.end - h.start :]
                merged[-1] = Hit(
                    last.rule_id,
                    last.category,
                    last.tier,
                    last.start,
                    h.end,
                    text_end,
                    last.in_previous or h.in_previous,
                )
            continue
        merged.append(h)
    merged.sort(key=lambda h: (h.start, -h.tier, h.rule_id))
    return merged


def engine_summary(engine: ComplianceEngine) -> dict[str, Any]:
    """Figures for logs and the admin UI."""
    return {
        "rules": len(engine.rules),
        "keys": engine.key_count,
        "products": len(engine.products),
    }
