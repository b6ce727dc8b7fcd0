"""Benchmark the bot at KB scale: latency per message and index memory, next to a baseline.
The KB is the demo KB plus generated product/branch/bank entries; run `--json` for figures."""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rapidfuzz import fuzz, process  # noqa: E402

from bot import Bot, BotState, KBEntry, KnowledgeBase, load_demo_kb  # noqa: E402
from bot.eval import DEMO_QUERY_FILES, load_demo_queries  # noqa: E402
from bot.rerank import Reranker  # noqa: E402

FUND_HOUSES = (
    "华夏 易方达 南方 嘉实 博时 广发 汇添富 富国 招商 工银 建信 鹏华 银华 国泰 大成 景顺 中欧 兴全"
    " 交银 天弘 万家 诺安 长城 海富通 融通 申万 东方红 前海开源 中银 平安".split()
)
THEMES = (
    "成长 价值 消费 医药 科技 新能源 红利 蓝筹 稳健 优选 精选 先锋 创新 核心 均衡 品质 睿选"
    " 沪深300 中证500 中证1000 创业板 科创50 半导体 军工 白酒 银行 证券 黄金 纳斯达克 恒生"
    " 信用债 纯债 短债 增强 配置 回报 领先 远见 安享 添利".split()
)
KINDS = (
    ("混合A", "R3"),
    ("混合C", "R3"),
    ("股票A", "R4"),
    ("指数C", "R4"),
    ("债券A", "R2"),
    ("货币A", "R1"),
    ("QDII", "R5"),
    ("ETF联接", "R4"),
)
FUND_QUESTIONS = (
    ("{n}的申购费率是多少", ("{n}买入手续费", "{n}申购费打折吗", "买{n}收多少钱")),
    ("{n}赎回多久到账", ("{n}卖出后几天到账", "{n}赎回到账时间", "{n}赎回钱什么时候到")),
    ("{n}的风险等级是什么", ("{n}风险高吗", "{n}是什么风险的产品", "{n}适合什么人")),
)
CITIES = (
    "北京 上海 广州 深圳 杭州 南京 苏州 成都 重庆 武汉 西安 长沙 郑州 济南 青岛 天津 厦门 福州"
    " 合肥 宁波 无锡 东莞 佛山 昆明 南宁 贵阳 太原 石家庄 沈阳 大连 长春 哈尔滨".split()
)
STREETS = "人民路 解放路 中山路 建设路 南京路 长江路 黄河路 世纪大道 金融街 滨江路".split()
BANKS = (
    "工商银行 农业银行 中国银行 建设银行 交通银行 招商银行 浦发银行 中信银行 兴业银行 民生银行"
    " 光大银行 平安银行 华夏银行 广发银行 邮储银行 北京银行 上海银行 宁波银行".split()
)


def generated_entries(count: int, seed: int = 7) -> list[KBEntry]:
    """Realistic-looking product, branch and bank entries (answers are placeholders)."""
    rng = random.Random(seed)
    entries: list[KBEntry] = []
    funds = [f"{h}{t}{k}" for h in FUND_HOUSES for t in THEMES for k, _ in KINDS]
    risk_of = {f"{h}{t}{k}": r for h in FUND_HOUSES for t in THEMES for k, r in KINDS}
    rng.shuffle(funds)
    branches = [f"{c}{s}营业部" for c in CITIES for s in STREETS]
    n = 0
    while len(entries) < count:
        roll = n % 10
        if roll < 8:
            name = funds[(n // 3) % len(funds)]
            question, similar = FUND_QUESTIONS[n % 3]
            entries.append(
                KBEntry(
                    id=f"gen_fund_{n}",
                    question=question.format(n=name),
                    answer=f"{name}相关说明以基金合同和招募说明书为准。",
                    similar_questions=tuple(s.format(n=name) for s in similar),
                    category="wealth",
                    risk_level=risk_of[name],
                )
            )
        elif roll == 8:
            branch = branches[n % len(branches)]
            entries.append(
                KBEntry(
                    id=f"gen_branch_{n}",
                    question=f"{branch}地址在哪里",
                    answer=f"{branch}的地址和电话请以APP营业部查询为准。",
                    similar_questions=(f"{branch}怎么走", f"{branch}电话多少", f"{branch}几点上班"),
                    category="general",
                )
            )
        else:
            bank = BANKS[n % len(BANKS)]
            variant = n // len(BANKS)
            entries.append(
                KBEntry(
                    id=f"gen_bank_{n}",
                    question=f"{bank}银证转账限额是多少（{variant}）",
                    answer=f"{bank}的转账限额以银行规定为准。",
                    similar_questions=(
                        f"{bank}转账上限{variant}",
                        f"{bank}一次能转多少{variant}",
                        f"用{bank}入金限额{variant}",
                    ),
                    category="transfer",
                )
            )
        n += 1
    return entries


def percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, max(0, int(q * len(sorted_ms) + 0.999999) - 1))]


def rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=10_000, help="KB size (default 10000)")
    parser.add_argument("--queries", type=int, default=3000, help="messages timed")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--reranker", type=Path, help="re-ranker weights (scripts/bot_train_reranker.py)"
    )
    args = parser.parse_args()
    reranker = (
        Reranker.from_json(args.reranker.read_text(encoding="utf-8")) if args.reranker else None
    )

    demo = load_demo_kb()
    extra = generated_entries(max(0, args.entries - len(demo)))
    kb = KnowledgeBase((*demo.entries, *extra))
    small = Bot(demo, reranker=reranker)  # loads jieba once; the big index below reuses it

    gc.collect()
    rss_before = rss_mb()
    build_start = time.perf_counter()
    bot = small.with_kb(kb)
    build_s = time.perf_counter() - build_start
    gc.collect()
    rss_after = rss_mb()
    # A second, traced build: tracemalloc counts the Python objects the index keeps alive.
    tracemalloc.start()
    traced_before = tracemalloc.get_traced_memory()[0]
    traced_bot = small.with_kb(kb)
    gc.collect()
    index_traced_mb = (tracemalloc.get_traced_memory()[0] - traced_before) / 2**20
    tracemalloc.stop()
    del traced_bot
    gc.collect()

    rng = random.Random(11)
    # The first demo query file only, so the message mix matches earlier runs.
    texts = [q.query for q in load_demo_queries(DEMO_QUERY_FILES[:1])]
    generated_queries: list[tuple[str, str]] = []
    for e in rng.sample(extra, min(len(extra), 300)):
        text = rng.choice(e.similar_questions).replace("多少", "多少啊")
        generated_queries.append((text, e.id))
        texts.append(text)
    messages = [texts[i % len(texts)] for i in range(args.queries)]
    rng.shuffle(messages)

    for text in messages[:200]:  # warm caches (pinyin memo) like a running hub would
        bot.respond(text, BotState(), "C3")
    bot_ms: list[float] = []
    # CPU time of this thread per message: on a shared, overloaded machine wall-clock tails
    # are mostly time spent descheduled, which says nothing about the bot.
    bot_cpu_ms: list[tuple[float, str]] = []
    start_all = time.perf_counter()
    for text in messages:
        t0 = time.perf_counter()
        c0 = time.thread_time()
        bot.respond(text, BotState(), "C3")
        bot_cpu_ms.append(((time.thread_time() - c0) * 1000.0, text))
        bot_ms.append((time.perf_counter() - t0) * 1000.0)
    bot_total = time.perf_counter() - start_all

    # Baseline: rapidfuzz ratio of the normalised message against every wording.
    normalizer = bot.normalizer
    wordings = [
        normalizer.normalize(q).replace(" ", "") for e in kb.entries for q in e.all_questions
    ]
    base_ms: list[float] = []
    base_cpu_ms: list[float] = []
    base_messages = messages[: max(200, args.queries // 5)]
    start_base = time.perf_counter()
    for text in base_messages:
        t0 = time.perf_counter()
        c0 = time.thread_time()
        process.extractOne(normalizer.normalize(text).replace(" ", ""), wordings, scorer=fuzz.ratio)
        base_cpu_ms.append((time.thread_time() - c0) * 1000.0)
        base_ms.append((time.perf_counter() - t0) * 1000.0)
    base_total = time.perf_counter() - start_base

    # Sanity check that speed did not cost accuracy at scale: generated wordings must still
    # find their own entry first among 10,000.
    generated_top1 = sum(
        1 for text, entry_id in generated_queries if bot.rank(text, 1)[0].entry.id == entry_id
    ) / max(1, len(generated_queries))
    bot_ms.sort()
    base_ms.sort()
    base_cpu_ms.sort()
    bot_cpu_ms.sort()
    cpu_only = [c for c, _ in bot_cpu_ms]
    figures = {
        "entries": len(kb),
        "wordings": bot.index_size,
        "queries": len(messages),
        "qps": len(messages) / bot_total,
        "p50_ms": percentile(bot_ms, 0.50),
        "p99_ms": percentile(bot_ms, 0.99),
        "max_ms": bot_ms[-1],
        "cpu_p50_ms": percentile(cpu_only, 0.50),
        "cpu_p99_ms": percentile(cpu_only, 0.99),
        "slowest_cpu": [(round(c, 2), t[:30]) for c, t in bot_cpu_ms[-5:]],
        "baseline": "rapidfuzz fuzz.ratio over all wordings (process.extractOne)",
        "baseline_qps": len(base_messages) / base_total,
        "baseline_p50_ms": percentile(base_ms, 0.50),
        "baseline_p99_ms": percentile(base_ms, 0.99),
        "baseline_cpu_p50_ms": percentile(base_cpu_ms, 0.50),
        "baseline_cpu_p99_ms": percentile(base_cpu_ms, 0.99),
        "generated_top1": generated_top1,
        "index_rss_mb": rss_after - rss_before,
        "index_traced_mb": index_traced_mb,
        "index_build_s": build_s,
        "python": platform.python_version(),
        "nproc": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:18} {value:.3f}" if isinstance(value, float) else f"{key:18} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
