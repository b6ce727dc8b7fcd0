"""Promissory intent without the literal terms (跟着我买肯定赚, 下周必涨, 翻倍没问题).

Cue words are found by the engine's automaton; this module scores their order and distance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

# Cue classes. Each word is folded by the engine before it becomes an automaton key.
CUES: dict[str, tuple[str, ...]] = {
    "certain": (
        "肯定",
        "一定",
        "绝对",
        "百分百",
        "百分之百",
        "保准",
        "铁定",
        "妥妥",
        "必然",
        "必定",
        "准能",
        "包你",
        "包您",
        "板上钉钉",
        "十拿九稳",
        "毫无疑问",
        "闭眼",
        "闭着眼",
        "一准",
        "指定",
        "必须会",
        "稳稳",
        "稳了",
        "绝逼",
        "铁板钉钉",
        "注定",
        "一准儿",
        "保管",
        "打包票",
        "拍胸脯",
        "我保证",
        "向你保证",
        "跟你保证",
        "100%",
        "一万个放心",
    ),
    "gain": (
        "赚",
        "涨",
        "翻倍",
        "翻番",
        "翻一番",
        "回本",
        "盈利",
        "拉升",
        "涨停",
        "大涨",
        "吃肉",
        "起飞",
        "暴涨",
        "获利",
        "挣",
        "上涨",
        "走高",
        "新高",
        "赚钱",
        "反弹",
        "解套",
        "发财",
        "连板",
        "主升浪",
        "暴富",
        "赢",
        "有肉",
        "收益",
        "回报",
        "盈",
        "翻身",
        "拉涨停",
        "吃大肉",
        "涨上去",
        "冲高",
        "见涨",
        "回血",
        "上扬",
        "飙升",
        "飙",
        "翻1倍",
        "翻2倍",
        "翻3倍",
        "翻一倍",
        "翻两倍",
        "翻三倍",
        "翻几倍",
        "翻十倍",
    ),
    "assure": (
        "没问题",
        "没跑",
        "跑不了",
        "稳了",
        "妥了",
        "是肯定的",
        "是一定的",
        "板上钉钉",
        "不用担心",
        "放心",
        "没悬念",
        "十拿九稳",
        "不会亏",
        "亏不了",
        "错不了",
        "稳稳的",
    ),
    "lead": (
        "跟着我",
        "跟我买",
        "听我的",
        "照我说的",
        "按我说的",
        "跟我做",
        "跟我操作",
        "信我",
        "相信我",
        "跟着老师",
        "听老师的",
        "跟紧我",
        "跟上我",
        "跟我走",
        "我带你",
        "带你赚",
    ),
    "urge": (
        "赶紧",
        "抓紧",
        "马上买",
        "立刻买",
        "速度上车",
        "快上车",
        "上车",
        "满仓",
        "梭哈",
        "全仓",
        "重仓",
        "allin",
        "别犹豫",
        "机不可失",
        "错过就没了",
        "最后机会",
        "今天必须买",
        "快买",
        "赶快买",
        "抓紧买入",
        "立即买入",
        "马上进",
        "冲",
        "抄底",
    ),
    "recommend": (
        "推荐",
        "建议",
        "买",
        "购买",
        "申购",
        "认购",
        "入手",
        "上车",
        "配置",
        "可以考虑",
        "值得",
        "不错",
        "适合您",
        "适合你",
        "首选",
        "加仓",
        "定投",
        "试试",
        "安排",
        "布局",
    ),
    # Ordinary phrases that contain a cue word but promise nothing; they cancel the cue.
    "neutral": (
        "一定的",
        "一定程度",
        "有一定",
        "获得一定",
        "一定比例",
        "一定风险",
        "一定要注意",
        "一定要",
        "涨跌",
        "涨幅",
        "包括",
        "红包",
        "钱包",
        "绝对收益策略",
        "绝对收益型",
        "绝对收益产品",
        "绝对收益目标",
        "肯定不",
        "一定不",
        "不一定",
        "指定账户",
        "指定银行",
        "收益率",
        "涨跌幅",
        "收益凭证",
        "上涨空间有限",
        "放心吧我帮您",
        "收益波动",
        "回报率",
    ),
    "unsuitable": (
        "不适合",
        "不匹配",
        "超出您的",
        "超出你的",
        "高于您的",
        "高于你的",
        "风险等级较高",
        "不建议",
        "不推荐",
        "请先做风险测评",
        "重新测评",
        "超过您的风险",
        "不符合",
    ),
}

CERTAIN_GAIN_GAP = 5
# What may stand between a certainty cue and the gain it asserts: modal verbs, degree words and
# the addressee (一定会大涨, 肯定能给您赚). Anything else means the certainty is about something
# else (明天一定给您回复收益情况).
GAP_FILLER = frozenset("会能要可以是够让给帮带您你们大幅上都也还再就的得地有买进入持拿着")
GAIN_ASSURE_GAP = 4
LEAD_GAP = 12
URGE_GAP = 10


class Cue(NamedTuple):
    """A cue word found in the folded text at [start, end); ``negated`` if a disclaimer scopes it.

    A named tuple rather than a frozen dataclass: the engine makes a few per message on its hot
    path, and a tuple is built in C (a frozen dataclass pays one ``object.__setattr__`` a field).
    """

    cls: str
    start: int
    end: int
    negated: bool


class IntentFinding(NamedTuple):
    """A promise or pressure pattern over folded positions [start, end). A named tuple for the
    reason Cue is one: a few are made per message, and a frozen dataclass costs ~0.9 µs each."""

    category: str
    start: int
    end: int
    reason: str


# The cues that count, by class: certain, gain, assure, lead, urge (each in text order).
CueClasses = tuple[list[Cue], list[Cue], list[Cue], list[Cue], list[Cue]]


def cues_by_class(cues: Sequence[Cue]) -> CueClasses:
    """The cues that count, sorted by class in their order: certain, gain, assure, lead, urge.

    Negated cues do not count, and a neutral phrase overlapping a certainty or gain cue cancels
    it (一定的, 收益率).
    """
    classes: CueClasses = ([], [], [], [], [])
    neutral: list[Cue] = []
    for c in cues:
        slot = _CLASS_SLOT.get(c.cls)
        if slot is not None:
            if not c.negated:
                classes[slot].append(c)
        elif c.cls == "neutral":
            neutral.append(c)
    if neutral:
        for counted in classes[:2]:  # certain, gain
            counted[:] = [
                c for c in counted if not any(n.start < c.end and c.start < n.end for n in neutral)
            ]
    return classes


_CLASS_SLOT = {"certain": 0, "gain": 1, "assure": 2, "lead": 3, "urge": 4}


def without(classes: CueClasses, dropped: set[Cue]) -> CueClasses:
    """The sorted cues minus ``dropped`` (cues found negated): what ``cues_by_class`` gives for
    the same cues with those marked negated."""
    certain, gain, assure, lead, urge = ([c for c in cues if c not in dropped] for cues in classes)
    return certain, gain, assure, lead, urge


def paired_cues(cues: Sequence[Cue], text: str) -> set[Cue]:
    """Every cue that forms at least one of ``score_intent``'s patterns with another cue.

    Whether a cue is negated can only change the findings if the cue is in such a pair, so the
    engine works out negation scope for these cues alone; an empty set means ``score_intent``
    finds nothing.
    """
    return paired_in(cues_by_class(cues), text)


def paired_in(classes: CueClasses, text: str) -> set[Cue]:
    """``paired_cues`` over cues already sorted by ``cues_by_class``."""
    certain, gain, assure, lead, urge = classes
    out: set[Cue] = set()
    _followed_by(out, certain, gain, CERTAIN_GAIN_GAP, text)
    _followed_by(out, gain, assure, GAIN_ASSURE_GAP, text)
    for ld in lead:
        for g in gain + certain:
            if 0 <= g.start - ld.end <= LEAD_GAP:
                out.add(ld)
                out.add(g)
        for u in urge:
            if abs(u.start - ld.end) <= LEAD_GAP:
                out.add(ld)
                out.add(u)
    for u in urge:
        for g in gain + certain:
            if 0 <= g.start - u.end <= URGE_GAP or 0 <= u.start - g.end <= URGE_GAP:
                out.add(u)
                out.add(g)
    return out


def _followed_by(
    out: set[Cue], firsts: Sequence[Cue], seconds: Sequence[Cue], gap: int, text: str
) -> None:
    """Add each first cue followed within `gap` characters, only fillers between, by a second."""
    for a in firsts:
        for b in seconds:
            if 0 <= b.start - a.end <= gap and GAP_FILLER.issuperset(text[a.end : b.start]):
                out.add(a)
                out.add(b)


def score_intent(cues: Sequence[Cue], text: str) -> list[IntentFinding]:
    """Ordered cue patterns that signal a promise of returns or pressure to trade.

    ``text`` is the folded text the cue positions index.
    """
    return findings_in(cues_by_class(cues), text)


def findings_in(classes: CueClasses, text: str) -> list[IntentFinding]:
    """``score_intent`` over cues already sorted by ``cues_by_class``: the engine sorts them
    once, and drops the negated ones from these lists instead of sorting again."""
    certain, gain, assure, lead, urge = classes
    found: list[IntentFinding] = []
    for c in certain:
        for g in gain:
            if 0 <= g.start - c.end <= CERTAIN_GAIN_GAP and GAP_FILLER.issuperset(
                text[c.end : g.start]
            ):
                found.append(IntentFinding("promise_returns", c.start, g.end, "certain+gain"))
                break
    for g in gain:
        for a in assure:
            if 0 <= a.start - g.end <= GAIN_ASSURE_GAP and GAP_FILLER.issuperset(
                text[g.end : a.start]
            ):
                found.append(IntentFinding("promise_returns", g.start, a.end, "gain+assure"))
                break
    for ld in lead:
        for g in gain + certain:
            if 0 <= g.start - ld.end <= LEAD_GAP:
                found.append(IntentFinding("promise_returns", ld.start, g.end, "lead+gain"))
                break
        for u in urge:
            if abs(u.start - ld.end) <= LEAD_GAP:
                found.append(
                    IntentFinding(
                        "inducing_trades", min(ld.start, u.start), max(ld.end, u.end), "lead+urge"
                    )
                )
                break
    for u in urge:
        for g in gain + certain:
            if 0 <= g.start - u.end <= URGE_GAP or 0 <= u.start - g.end <= URGE_GAP:
                found.append(
                    IntentFinding(
                        "inducing_trades", min(u.start, g.start), max(u.end, g.end), "urge+gain"
                    )
                )
                break
    return found


def findings_unless(
    classes: CueClasses, text: str, cancelled: Callable[[Cue], bool]
) -> list[IntentFinding]:
    """``findings_in(without(classes, {c for c in paired_in(classes, text) if cancelled(c)}),
    text)`` in one pass: a cue's ``cancelled`` (negation scope, which the engine works out
    per position) is asked only when the cue is about to complete a pattern, so the pairs are
    not searched twice and cues that never pair are never asked about.

    Same result because a cancelled cue takes part in no pattern: where ``findings_in`` takes
    the first live partner in order, this skips cancelled partners and drops a first cue
    that turns out cancelled.
    """
    certain, gain, assure, lead, urge = classes
    found: list[IntentFinding] = []
    if gain:
        _promises_unless(certain, gain, CERTAIN_GAIN_GAP, "certain+gain", text, cancelled, found)
        if assure:
            _promises_unless(gain, assure, GAIN_ASSURE_GAP, "gain+assure", text, cancelled, found)
    gains = gain + certain if lead or urge else gain
    for ld in lead:
        dead: bool | None = None
        for g in gains:
            if 0 <= g.start - ld.end <= LEAD_GAP:
                if dead is None:
                    dead = cancelled(ld)
                if dead:
                    break
                if cancelled(g):
                    continue
                found.append(IntentFinding("promise_returns", ld.start, g.end, "lead+gain"))
                break
        if dead:
            continue
        for u in urge:
            if abs(u.start - ld.end) <= LEAD_GAP:
                if dead is None:
                    dead = cancelled(ld)
                if dead:
                    break
                if cancelled(u):
                    continue
                found.append(
                    IntentFinding(
                        "inducing_trades", min(ld.start, u.start), max(ld.end, u.end), "lead+urge"
                    )
                )
                break
    for u in urge:
        for g in gains:
            if 0 <= g.start - u.end <= URGE_GAP or 0 <= u.start - g.end <= URGE_GAP:
                if cancelled(u):
                    break
                if cancelled(g):
                    continue
                found.append(
                    IntentFinding(
                        "inducing_trades", min(u.start, g.start), max(u.end, g.end), "urge+gain"
                    )
                )
                break
    return found


def _promises_unless(
    firsts: Sequence[Cue], seconds: Sequence[Cue], gap: int, pattern: str, text: str,
    cancelled: Callable[[Cue], bool], found: list[IntentFinding],
) -> None:
    """Each first cue with the first live second cue after it, at most `gap` filler characters
    on: a promise of returns (certain+gain, gain+assure), for findings_unless."""
    for f in firsts:
        for s in seconds:
            if 0 <= s.start - f.end <= gap and GAP_FILLER.issuperset(text[f.end : s.start]):
                if cancelled(f):
                    break
                if cancelled(s):
                    continue
                found.append(IntentFinding("promise_returns", f.start, s.end, pattern))
                break
