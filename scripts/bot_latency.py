"""Per-message latency of `Bot.respond` on a query set, and a reply dump to prove that a speed
change left every answer as it was. Figures are per message, in CPU time of this thread
(`time.thread_time`) and wall-clock time, over several passes.

    .venv/bin/python scripts/bot_latency.py                        # demo KB and demo queries
    .venv/bin/python scripts/bot_latency.py --dump before.jsonl    # replies, ranks, intents
    .venv/bin/python scripts/bot_latency.py --dump big.jsonl --entries 10000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bot import Bot, BotState, KnowledgeBase, load_demo_kb  # noqa: E402
from bot.eval import load_demo_queries, parse_queries  # noqa: E402


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, int(q * len(sorted_values) + 0.999999) - 1))
    return sorted_values[index]


def dump(bot: Bot, texts: list[str], path: Path) -> None:
    """Everything the bot decides for each text, with scores to full precision."""
    with path.open("w", encoding="utf-8") as out:
        for text in texts:
            reply = bot.respond(text, BotState(), "C3")
            row = {
                "text": text,
                "action": reply.action,
                "entry": reply.entry_id,
                "confidence": reply.confidence,
                "reason": reply.handoff_reason,
                "intent": reply.intent,
                "suggestions": [(s.entry_id, s.confidence) for s in reply.suggestions],
                "rank": [(m.entry.id, m.score, m.wording, m.coverage) for m in bot.rank(text)],
                "assist": [(s.entry_id, s.confidence, s.suitable) for s in bot.suggest(text)],
                "classify": bot.classify_intent(text),
            }
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=Path, action="append", help="labeled query JSONL")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--slowest", type=int, default=10)
    parser.add_argument("--dump", type=Path, help="write replies instead of timing")
    parser.add_argument("--entries", type=int, default=0, help="grow the KB like bench_bot.py")
    args = parser.parse_args()

    kb = load_demo_kb()
    texts = [q.query for q in load_demo_queries()]
    for path in args.queries or []:
        texts += [q.query for q in parse_queries(path.read_text(encoding="utf-8"))]
    bot = Bot(kb)
    if args.entries:
        from bench_bot import generated_entries

        extra = generated_entries(max(0, args.entries - len(kb)))
        bot = bot.with_kb(KnowledgeBase((*kb.entries, *extra)))
        texts += [q for e in extra[:: max(1, len(extra) // 300)] for q in e.similar_questions]
    if args.dump:
        # KB wordings too: they exercise the confident-answer path the queries rarely reach.
        texts += [q for e in kb.entries for q in e.all_questions]
        dump(bot, texts, args.dump)
        return 0

    cpu = [[0.0] * args.passes for _ in texts]
    wall = [[0.0] * args.passes for _ in texts]
    for p in range(args.passes):
        for i, text in enumerate(texts):
            w0 = time.perf_counter()
            c0 = time.thread_time()
            bot.respond(text, BotState(), "C5")
            cpu[i][p] = (time.thread_time() - c0) * 1000.0
            wall[i][p] = (time.perf_counter() - w0) * 1000.0
    for p in range(args.passes):
        c = sorted(row[p] for row in cpu)
        w = sorted(row[p] for row in wall)
        print(
            f"pass {p}: cpu p50 {percentile(c, 0.5):.3f} p99 {percentile(c, 0.99):.3f} "
            f"max {c[-1]:.3f} | wall p50 {percentile(w, 0.5):.3f} p99 {percentile(w, 0.99):.3f} "
            f"max {w[-1]:.3f} ms"
        )
    # A message is slow if it is slow in most passes (median), not once (descheduled).
    median = sorted(((sorted(row)[len(row) // 2], i) for i, row in enumerate(cpu)), reverse=True)
    print(f"slowest by median cpu ms over {args.passes} passes:")
    for ms, i in median[: args.slowest]:
        print(f"  {ms:.3f}  {texts[i][:40]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
