"""Benchmark the compliance engine against a bare pyahocorasick scan in the same run.

``python scripts/bench_compliance.py [--messages N] [--rules N] [--role advisor]
[--corpus hard-negative|service] [--json]``

Two corpora, each measured on its own: ``hard-negative`` glues the shipped eval phrases (dense in
disclaimers that quote the rule terms, so most messages take the slow path); ``service`` is
ordinary advisor/investor chat written for this benchmark, with a minority of messages carrying
rule terms, disclaimers or violations.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import ahocorasick
import ahocorasick_rs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compliance import (  # noqa: E402
    ComplianceEngine,
    Rule,
    RuleSet,
    load_default_rules,
    load_demo_products,
)
from compliance.eval import shipped_cases  # noqa: E402

# Common characters for synthetic rule terms; 3-4 characters, so they rarely match by chance,
# like the long tail of a real firm's extra keyword list.
_POOL = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过"
    "子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体"
    "制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内"
    "数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提"
    "直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计"
)


def synthetic_rules(count: int, rng: random.Random) -> list[Rule]:
    rules = []
    for i in range(count):
        terms = {"".join(rng.choice(_POOL) for _ in range(rng.choice((3, 4)))) for _ in range(3)}
        rules.append(
            Rule.from_dict(
                {
                    "id": f"GEN-{i:05d}",
                    "category": rng.choice(("promise_returns", "inducing_trades", "abuse")),
                    "tier": "warn",
                    "terms": sorted(terms),
                    "description": "基准测试生成的规则",
                }
            )
        )
    return rules


def messages(count: int, rng: random.Random) -> list[str]:
    """Real case phrases glued into 20–200 character messages; 1 in 20 carries a violation,
    the rest are benign (disclaimers, 保证金, service talk), as in a real chat stream."""
    cases = shipped_cases()
    benign = [c["text"] for c in cases if not c["expected"]]
    violating = [c["text"] for c in cases if c["expected"] and not c.get("previous")]
    out = []
    for _ in range(count):
        target = rng.randint(20, 200)
        parts: list[str] = []
        if rng.random() < 0.05:
            parts.append(rng.choice(violating))
        while sum(map(len, parts)) < target:
            parts.append(rng.choice(benign))
        rng.shuffle(parts)
        out.append("".join(parts)[:target])
    return out


# Ordinary service chat, written for this benchmark (not taken from the eval cases).
SERVICE_ADVISOR = (
    "您好，我是您的专属投资顾问小王，有什么可以帮您？",
    "开户需要准备本人身份证和一张本人的银行卡。",
    "手机上下载我们的APP，按提示做视频见证就可以完成开户。",
    "视频见证的时间是交易日九点到晚上十点。",
    "您的账户今天已经开通成功了，明天就可以交易。",
    "两融业务需要资产满五十万并且有半年以上的交易经验。",
    "融资融券的利率目前是年化百分之六点五，按日计息。",
    "您可以在APP的业务办理里面找到两融预约。",
    "基金申购的确认一般是T加一日，赎回到账要看具体产品。",
    "货币基金的收益每天都会有变动，以实际到账为准。",
    "场内基金和场外基金的手续费不一样，我发您费率表看一下。",
    "佣金的话，我帮您申请一下，审批下来会短信通知您。",
    "目前股票交易佣金是万分之二点五，最低五元。",
    "新股申购需要在T减二日前二十个交易日持有市值。",
    "您的风险测评已经过期了，麻烦重新做一下问卷。",
    "风险测评在APP的我的页面里面，大概五分钟就能做完。",
    "转账的话银证转账在交易日九点到下午四点之间都可以。",
    "密码忘了可以在APP上用人脸识别重置。",
    "今天大盘震荡，您持仓的几只股票波动都不大。",
    "这周五有一场线上投资者教育讲座，欢迎参加。",
    "分红已经派发到您的账户了，您可以查一下资金流水。",
    "可转债中签了记得周四之前账户留足资金。",
    "国债逆回购在APP的理财页面可以直接操作。",
    "科创板权限需要五十万资产和两年交易经验。",
    "我把开户流程截图发给您，您照着操作就行。",
    "稍等一下，我帮您查一下这笔委托为什么没成交。",
    "委托没有成交是因为价格没有到，您可以改一下价格。",
    "收盘后的资金要到下一个交易日才能转出。",
    "ETF的申赎清单每天都会在交易所网站公布。",
    "定投可以设置每周或者每月扣款，金额您自己定。",
    "好的，有问题随时联系我，祝您生活愉快。",
    "这个问题我需要请示一下部门同事，稍后回复您。",
    "您说的那份研报我找到了，发到您邮箱了。",
    "港股通需要开通权限，资产要求是五十万。",
    "节假日前一天的逆回购收益会多计几天。",
)
SERVICE_INVESTOR = (
    "你好，我想开个户，需要带什么材料？",
    "开户要多久能弄好？",
    "视频见证一直连不上怎么办？",
    "两融怎么开通，我够条件吗？",
    "融资的利息是怎么算的？",
    "我想问一下佣金能不能再低一点。",
    "现在佣金是多少啊？",
    "基金赎回之后钱什么时候到账？",
    "为什么我的基金份额还没确认？",
    "APP登录不上去了，提示密码错误。",
    "银证转账转不出来，是什么原因？",
    "我昨天买的那只股票今天怎么跌了这么多。",
    "新股怎么申购，要提前准备什么？",
    "可转债中签了要交多少钱？",
    "风险测评要重新做吗？",
    "科创板我能买吗？",
    "我的分红什么时候到账？",
    "定投能不能暂停几个月？",
    "好的谢谢，我去试一下。",
    "收到，明白了。",
    "这周有什么投教活动吗？",
    "逆回购怎么买，最低多少钱？",
    "我换了手机号，要怎么改绑定？",
    "港股通要什么条件？",
    "麻烦帮我查一下这笔委托。",
    "你们周末有人值班吗？",
    "我想把账户销户，流程是什么？",
    "对账单在哪里能下载？",
    "这个ETF和普通基金有什么区别？",
    "行情软件卡住了，刷新不出来。",
)
# The minority that reaches the rules: disclaimers and risk warnings quoting rule terms, and
# violations, as they would turn up in real service chat.
SERVICE_TERMS = (
    "温馨提示：投资有风险，我们不保证收益，请您理性决策。",
    "两融账户要注意维持担保比例，保证金不足会被平仓。",
    "基金过往业绩不代表未来表现，不承诺保本。",
    "这个产品不是保本的，风险等级是R3。",
    "我们没有办法保证收益，只能帮您做好资产配置。",
    "保险产品请通过正规渠道购买，我们这边不代销。",
    "请警惕所谓稳赚不赔的荐股群，那都是骗局。",
    "期货保证金比例交易所会调整，请留意公告。",
)
SERVICE_VIOLATIONS = (
    "跟着我买这只票，保证收益翻倍。",
    "这个产品保本保息，放心买。",
    "下周必涨，赶紧满仓。",
    "亏了算我的，您就放心吧。",
    "加我微信，私下给您推内幕消息。",
    "稳赚不赔的机会，错过就没了。",
    "给我转点辛苦费，我给您推荐牛股。",
    "年化收益百分之三十，绝对没有风险。",
)

# What investors send that the rules must see: their own personal data (masked before it
# reaches advisors and logs), and the odd question quoting a rule term.
SERVICE_INVESTOR_SENSITIVE = (
    "我的手机号是13912345678，麻烦回个电话。",
    "银行卡号6222021234567890128，帮我看看绑上没有。",
    "身份证110105199003071239，开户的时候填错了吗？",
    "你们这个产品保本吗？",
    "听说有稳赚不赔的基金，是真的吗？",
    "两融的保证金比例是多少？",
)


def service_messages(count: int, role: str, rng: random.Random) -> list[str]:
    """Service chat of 20–200 characters. Advisor: about 4% of messages add a disclaimer or
    warning quoting a rule term and about 3% a violation; investor: about 7% add personal data
    or a question quoting a rule term. Everything else is ordinary service talk."""
    if role == "investor":
        pool, terms, violations = SERVICE_INVESTOR, SERVICE_INVESTOR_SENSITIVE, ()
    else:
        pool, terms, violations = SERVICE_ADVISOR, SERVICE_TERMS, SERVICE_VIOLATIONS
    out = []
    for _ in range(count):
        target = rng.randint(20, 200)
        parts: list[str] = []
        draw = rng.random()
        if draw < 0.04 or (draw < 0.07 and not violations):
            parts.append(rng.choice(terms))
        elif draw < 0.07:
            parts.append(rng.choice(violations))
        while sum(map(len, parts)) < target:
            parts.append(rng.choice(pool))
        rng.shuffle(parts)
        out.append("".join(parts)[:target])
    return out


def raw_terms(rules: RuleSet) -> set[str]:
    terms: set[str] = set()
    for rule in rules:
        terms.update(rule.terms)
        if rule.near is not None:
            terms.update(rule.near.first)
            terms.update(rule.near.second)
    return terms


def timed_throughput(fn, items) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(CPU seconds of this process, wall seconds). Ratios use CPU time: the 2-core machine is
    shared, and wall time charges other people's work to whichever loop happened to run."""
    gc.collect()
    start = time.process_time()
    wall = time.perf_counter()
    for item in items:
        fn(item)
    return time.process_time() - start, time.perf_counter() - wall


def latencies_us(fn, items) -> list[float]:  # type: ignore[no-untyped-def]
    clock = time.perf_counter_ns
    out = []
    for item in items:
        t0 = clock()
        fn(item)
        out.append((clock() - t0) / 1000)
    return out


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def stage_breakdown(engine: ComplianceEngine, msgs: list[str], rounds: int) -> dict[str, float]:
    """CPU µs per message of the stages every check pays, best of ``rounds``: the fold, the
    engine's scan of the folded text (ahocorasick_rs), and pyahocorasick over the SAME keys,
    to show what the scan library is worth; plus the share of messages the personal-data gate
    lets through to the regex rules."""
    from compliance.engine import _DIGIT_RUN

    norm = engine._norm
    rs = engine._automaton
    py = ahocorasick.Automaton()
    for index, key in enumerate(engine._keys):
        py.add_word(key, index)
    py.make_automaton()
    folded = [norm.fold(m) for m in msgs]

    def best(fn, items) -> float:  # type: ignore[no-untyped-def]
        return min(timed_throughput(fn, items)[0] for _ in range(rounds)) / len(items) * 1e6

    # Fresh strings each call, as in check(): ahocorasick_rs caches a str's UTF-8 form on it.
    fold_us = best(norm.fold, msgs)
    rs_us = best(lambda m: rs.find_matches_as_indexes(norm.fold(m), overlapping=True), msgs)
    py_us = best(lambda m: list(py.iter(norm.fold(m))), msgs)
    return {
        "fold_us": round(fold_us, 2),
        "scan_rs_us": round(rs_us - fold_us, 2),
        "scan_pyahocorasick_us": round(py_us - fold_us, 2),
        "digit_gate_share": round(sum(1 for f in folded if _DIGIT_RUN.search(f)) / len(msgs), 3),
    }


def path_split(check, items, rounds: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Where the engine's time goes by path through ``check``: the share of messages and CPU µs
    a check (best of ``rounds``) for those that return after the scan and the key masks (or
    with regex hits only) with nothing found ("early"), those evaluated that still pass
    ("evaluated_pass": every term, near pair and cue cancelled), and those flagged; and, per
    message of each path, what the evaluation did (counted in a separate, untimed pass): term
    spans, near rules with both halves, cues, exception tests, negation and refutation queries
    (memoised ones included), clause tests, intent scorings and offset maps built."""
    from unittest import mock

    from compliance import engine as engine_module
    from compliance.normalize import Normaliser

    evaluation = engine_module._Evaluation
    counts: dict[str, int] = {}

    def counting(name, real):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            counts[name] = counts.get(name, 0) + 1
            return real(*args, **kwargs)

        return wrapper

    real_run = evaluation.run

    def run(self, found):  # type: ignore[no-untyped-def]
        counts["evaluated"] = 1
        counts["term_spans"] = len(found.terms)
        counts["near_rules"] = sum(1 for index in found.firsts if index in found.seconds)
        counts["cues"] = len(found.cues)
        return real_run(self, found)

    patches = [
        mock.patch.object(evaluation, "run", run),
        mock.patch.object(
            engine_module, "_excepted_at", counting("exception_tests", engine_module._excepted_at)
        ),
        mock.patch.object(
            evaluation, "_negated", counting("negation_queries", evaluation._negated)
        ),
        mock.patch.object(
            evaluation, "_refuted", counting("refutation_queries", evaluation._refuted)
        ),
        mock.patch.object(
            evaluation, "_clause_break", counting("clause_tests", evaluation._clause_break)
        ),
        mock.patch.object(
            evaluation,
            "_intent_and_suitability",
            counting("intent_scorings", evaluation._intent_and_suitability),
        ),
        mock.patch.object(Normaliser, "offsets", counting("offset_maps", Normaliser.offsets)),
    ]
    paths = ("early", "evaluated_pass", "flagged")
    groups: dict[str, list] = {path: [] for path in paths}  # type: ignore[type-arg]
    totals: dict[str, dict[str, int]] = {path: {} for path in paths}
    for patch in patches:
        patch.start()
    try:
        for item in items:
            counts.clear()
            hits = check(item).hits
            path = "flagged" if hits else "evaluated_pass" if counts.get("evaluated") else "early"
            groups[path].append(item)
            for name, value in counts.items():
                totals[path][name] = totals[path].get(name, 0) + value
    finally:
        for patch in reversed(patches):
            patch.stop()
    out: dict[str, object] = {}
    for path, group in groups.items():
        out[f"path_{path}_share"] = round(len(group) / len(items), 3)
        if group:
            cpu = min(timed_throughput(check, group)[0] for _ in range(rounds))
            out[f"path_{path}_us"] = round(cpu / len(group) * 1e6, 2)
            out[f"path_{path}_per_message"] = {
                name: round(total / len(group), 3)
                for name, total in sorted(totals[path].items())
                if name != "evaluated"
            }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rules", type=int, default=2000, help="total rules (shipped + generated)")
    parser.add_argument("--role", default="advisor", choices=("advisor", "investor", "bot"))
    parser.add_argument("--window", action="store_true", help="pass the previous message too")
    parser.add_argument(
        "--corpus",
        default="hard-negative",
        choices=("hard-negative", "service"),
        help="hard-negative: glued eval phrases; service: ordinary chat with ~7%% rule terms",
    )
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds (best kept)")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also time the stages: fold, the engine's automaton scan, the same keys in "
        "pyahocorasick, and the share of messages that pass the personal-data gate",
    )
    parser.add_argument(
        "--paths",
        action="store_true",
        help="also split the messages by their path through check (returned early, evaluated "
        "and passed, flagged) and time each group",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(7)

    shipped = load_default_rules()
    rules = RuleSet([*shipped, *synthetic_rules(max(0, args.rules - len(shipped)), rng)])
    t0 = time.perf_counter()
    engine = ComplianceEngine(rules, products=load_demo_products())
    build_s = time.perf_counter() - t0

    bare = ahocorasick.Automaton()
    for term in raw_terms(rules):
        bare.add_word(term, term)
    bare.make_automaton()

    if args.corpus == "service":
        msgs = service_messages(args.messages, args.role, rng)
    else:
        msgs = messages(args.messages, rng)
    role = args.role
    if args.window:
        pairs = list(zip(msgs, [msgs[-1], *msgs[:-1]], strict=True))

        def engine_check(m: tuple[str, str]) -> object:
            return engine.check(m[0], role, previous=(m[1],))

        items: list = pairs  # type: ignore[type-arg]
        bare_items: list = msgs  # type: ignore[type-arg]
    else:

        def engine_check(m: str) -> object:  # type: ignore[misc]
            return engine.check(m, role)

        items = msgs
        bare_items = msgs

    def bare_check(m: str) -> object:
        return list(bare.iter(m))

    # Warm up both paths (import caches, automaton pages) before measuring.
    for m in items[:2000]:
        engine_check(m)
    for m in bare_items[:2000]:
        bare_check(m)
    # Alternate the two loops and keep each one's best round: noise from the shared machine
    # only ever adds time, so the minimum is the closest to the code's own cost.
    engine_s = bare_s = engine_wall = bare_wall = float("inf")
    for _ in range(args.rounds):
        cpu, wall = timed_throughput(engine_check, items)
        engine_s, engine_wall = min(engine_s, cpu), min(engine_wall, wall)
        cpu, wall = timed_throughput(bare_check, bare_items)
        bare_s, bare_wall = min(bare_s, cpu), min(bare_wall, wall)
    engine_lat = latencies_us(engine_check, items)
    bare_lat = latencies_us(bare_check, bare_items)
    flagged = sum(1 for m in items if engine_check(m).hits)  # type: ignore[attr-defined]

    result = {
        "rules": len(rules),
        "automaton_keys": engine.key_count,
        "build_s": round(build_s, 3),
        "messages": len(msgs),
        "mean_chars": round(sum(map(len, msgs)) / len(msgs), 1),
        "corpus": args.corpus,
        "role": role,
        "window": args.window,
        "flagged_share": round(flagged / len(msgs), 3),
        "checks_per_s": round(len(msgs) / engine_s),
        "p50_us": round(statistics.median(engine_lat), 2),
        "p99_us": round(p99(engine_lat), 2),
        "bare_checks_per_s": round(len(msgs) / bare_s),
        "bare_p99_us": round(p99(bare_lat), 2),
        "time_ratio": round(engine_s / bare_s, 2),
        "wall_checks_per_s": round(len(msgs) / engine_wall),
        "bare_wall_checks_per_s": round(len(msgs) / bare_wall),
        "wall_time_ratio": round(engine_wall / bare_wall, 2),
        "load_avg_1m": round(os.getloadavg()[0], 1),
        "rounds": args.rounds,
        "python": platform.python_version(),
        "nproc": os.cpu_count(),
    }
    if args.breakdown:
        result.update(stage_breakdown(engine, msgs, args.rounds))
        # The engine scans with ahocorasick_rs; the same bare scan in that library, for a
        # ratio that does not credit the engine with the faster scan library.
        bare_rs = ahocorasick_rs.AhoCorasick(sorted(raw_terms(rules)))
        bare_rs_s = min(
            timed_throughput(
                lambda m: bare_rs.find_matches_as_indexes(m, overlapping=True), bare_items
            )[0]
            for _ in range(args.rounds)
        )
        result["bare_rs_checks_per_s"] = round(len(msgs) / bare_rs_s)
        result["time_ratio_vs_bare_rs"] = round(engine_s / bare_rs_s, 2)
    if args.paths:
        result.update(path_split(engine_check, items, args.rounds))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:18s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
