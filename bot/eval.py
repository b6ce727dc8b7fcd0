"""Offline evaluation of the bot against labeled queries, next to two simple baselines.
Run `python -m bot.eval [--kb KB.jsonl|.csv] [--queries Q.jsonl] [--json] [--calibrate]`."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from rapidfuzz import fuzz, process

from bot.engine import Bot, BotConfig, BotState
from bot.features import FeatureExtractor
from bot.kb import KBFormatError, KnowledgeBase, load_demo_kb, read_jsonl
from bot.normalize import Normalizer
from bot.rerank import Reranker

# Queries whose position % TUNE_EVERY == 0 are the tuning split; the rest are held out.
TUNE_EVERY = 3
# Eval is about matching; suitability is tested separately, so by default the investor may
# see every product (a query line may set "customer_risk" to exercise the guard).
DEFAULT_CUSTOMER_RISK = "C5"
# A wrong answer costs this many correct ones when thresholds are chosen.
WRONG_ANSWER_COST = 3.0
SUGGEST_DISCOUNT = 0.5


@dataclass(frozen=True, slots=True)
class LabeledQuery:
    query: str
    expected_id: str | None
    customer_risk: str | None = DEFAULT_CUSTOMER_RISK


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one system did with one query: action, answered entry, ranking, seconds taken
    (wall clock, and CPU time of the calling thread, which leaves out time spent descheduled
    on a shared machine)."""

    action: str
    entry_id: str | None
    ranking: tuple[str, ...]
    seconds: float
    cpu_seconds: float = 0.0


def parse_queries(text: str) -> list[LabeledQuery]:
    """JSONL with `query` and `expected_id` (null: the bot should hand over)."""
    queries: list[LabeledQuery] = []
    for number, data in read_jsonl(text):
        if not isinstance(data, dict) or not isinstance(data.get("query"), str):
            raise KBFormatError(number, "each line needs a string 'query'")
        expected = data.get("expected_id")
        if expected is not None and not isinstance(expected, str):
            raise KBFormatError(number, "'expected_id' must be a string or null")
        risk = data.get("customer_risk", DEFAULT_CUSTOMER_RISK)
        queries.append(LabeledQuery(data["query"], expected, risk))
    return queries


# The shipped query set, in this order: the first 408 queries written with the demo KB, then
# 217 written later from the KB's topics (`demo_queries_fresh.jsonl`), then ten files written
# blind to the bot by other writers (`…_fresh2` to `…_fresh11`, 2,021; docs/bot.md). Positions run
# on across the files; 408 is a multiple of TUNE_EVERY, so the first file keeps the split it has
# on its own (the later files' splits shift with the lengths before them).
DEMO_QUERY_FILES: tuple[str, ...] = (
    "data/demo_queries.jsonl",
    "data/demo_queries_fresh.jsonl",
    "data/demo_queries_fresh2.jsonl",
    "data/demo_queries_fresh3.jsonl",
    "data/demo_queries_fresh4.jsonl",
    "data/demo_queries_fresh5.jsonl",
    "data/demo_queries_fresh6.jsonl",
    "data/demo_queries_fresh7.jsonl",
    "data/demo_queries_fresh8.jsonl",
    "data/demo_queries_fresh9.jsonl",
    "data/demo_queries_fresh10.jsonl",
    "data/demo_queries_fresh11.jsonl",
)


def load_demo_queries(files: Sequence[str] = DEMO_QUERY_FILES) -> list[LabeledQuery]:
    queries: list[LabeledQuery] = []
    for name in files:
        path = resources.files("bot").joinpath(name)
        queries += parse_queries(path.read_text(encoding="utf-8"))
    return queries


def tune_split(queries: Sequence[LabeledQuery]) -> list[LabeledQuery]:
    return [q for i, q in enumerate(queries) if i % TUNE_EVERY == 0]


def heldout_split(queries: Sequence[LabeledQuery]) -> list[LabeledQuery]:
    return [q for i, q in enumerate(queries) if i % TUNE_EVERY != 0]


def score(queries: Sequence[LabeledQuery], outcomes: Sequence[Outcome]) -> dict[str, float]:
    """The figures reported for one system.

    - top1: share of ALL queries where the first thing the investor sees is right: the expected
      entry answered, or offered first in a "did you mean" (suggest), or a hand-over when
      expected_id is null.
    - resolved: share of answerable queries answered directly with the expected entry.
    - mrr10: mean reciprocal rank of the expected entry in the top 10 (answerable queries only;
      suggest and handoff do not change it).
    - handoff_precision / handoff_recall: hand-overs that were expected, over all hand-overs /
      over all null queries. A suggest on a null query is not a hand-over.
    - wrong_answer_rate: share of ALL queries answered with an entry other than expected
      (any answer to a null query is wrong). A suggest is never a wrong answer.
    """
    n = len(queries)
    answerable = [i for i, q in enumerate(queries) if q.expected_id is not None]
    null = [i for i, q in enumerate(queries) if q.expected_id is None]
    top1 = resolved = wrong = handoffs = right_handoffs = suggests = suggest_right = 0
    rr = 0.0
    for q, o in zip(queries, outcomes, strict=True):
        if o.action == "handoff":
            handoffs += 1
        if o.action == "suggest":
            suggests += 1
        if q.expected_id is None:
            if o.action == "handoff":
                top1 += 1
                right_handoffs += 1
            elif o.action == "answer":
                wrong += 1
            continue
        if o.action == "answer":
            if o.entry_id == q.expected_id:
                top1 += 1
                resolved += 1
            else:
                wrong += 1
        elif o.action == "suggest" and o.ranking[:1] == (q.expected_id,):
            top1 += 1
            suggest_right += 1
        if q.expected_id in o.ranking[:10]:
            rr += 1.0 / (o.ranking.index(q.expected_id) + 1)
    latencies = sorted(o.seconds * 1000.0 for o in outcomes)
    cpu = sorted(o.cpu_seconds * 1000.0 for o in outcomes)
    return {
        "queries": float(n),
        "top1": top1 / n if n else 0.0,
        "resolved": resolved / len(answerable) if answerable else 0.0,
        "mrr10": rr / len(answerable) if answerable else 0.0,
        "handoff_precision": right_handoffs / handoffs if handoffs else 0.0,
        "handoff_recall": right_handoffs / len(null) if null else 0.0,
        "wrong_answer_rate": wrong / n if n else 0.0,
        "suggest_rate": suggests / n if n else 0.0,
        "suggest_first_right_rate": suggest_right / n if n else 0.0,
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
        "cpu_p50_ms": _percentile(cpu, 0.50),
        "cpu_p99_ms": _percentile(cpu, 0.99),
    }


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


def objective(figures: dict[str, float]) -> float:
    """What threshold calibration maximises (for the bot and the baselines alike): a right
    answer or right hand-over is worth 1, a right "did you mean" 0.5 (it costs the investor a
    click), a wrong answer -WRONG_ANSWER_COST."""
    return (
        figures["top1"]
        - SUGGEST_DISCOUNT * figures["suggest_first_right_rate"]
        - WRONG_ANSWER_COST * figures["wrong_answer_rate"]
    )


def run_bot(bot: Bot, queries: Sequence[LabeledQuery]) -> list[Outcome]:
    outcomes = []
    for q in queries:
        start = time.perf_counter()
        cpu_start = time.thread_time()
        reply = bot.respond(q.query, BotState(), q.customer_risk)
        cpu = time.thread_time() - cpu_start
        elapsed = time.perf_counter() - start
        if reply.action == "answer":
            ranking: tuple[str, ...] = (reply.entry_id or "",)
        else:
            ranking = tuple(s.entry_id for s in reply.suggestions)
        # The ranking for MRR is the retrieval order, independent of the action taken.
        full = tuple(m.entry.id for m in bot.rank(q.query, limit=10))
        if reply.action == "suggest":
            full = ranking + tuple(e for e in full if e not in ranking)
        outcomes.append(Outcome(reply.action, reply.entry_id, full, elapsed, cpu))
    return outcomes


# --- baselines -------------------------------------------------------------------------


class Baseline:
    """A retrieval-only system: rank entries, then answer / suggest / hand over by thresholds
    calibrated on the tuning split (same objective as the bot)."""

    name = "baseline"

    def __init__(self, kb: KnowledgeBase, normalizer: Normalizer) -> None:
        self._normalizer = normalizer
        self.answer_threshold = math.inf
        self.suggest_threshold = math.inf
        self.wordings: list[tuple[str, str]] = []
        for e in kb.entries:
            if not e.enabled:
                continue
            for text in e.all_questions:
                norm = normalizer.normalize(text).replace(" ", "")
                if norm:
                    self.wordings.append((e.id, norm))

    def scores(self, normalized: str) -> list[tuple[str, float]]:
        raise NotImplementedError

    def ranked(self, text: str) -> tuple[list[tuple[str, float]], float, float]:
        """Best 10 entries with scores, wall seconds and CPU seconds taken."""
        start = time.perf_counter()
        cpu_start = time.thread_time()
        normalized = self._normalizer.normalize(text)
        best: dict[str, float] = {}
        for entry_id, s in self.scores(normalized):
            if s > best.get(entry_id, -math.inf):
                best[entry_id] = s
        ranking = sorted(best.items(), key=lambda kv: kv[1], reverse=True)[:10]
        cpu = time.thread_time() - cpu_start
        return ranking, time.perf_counter() - start, cpu

    def decide(
        self, ranking: list[tuple[str, float]], seconds: float, cpu_seconds: float = 0.0
    ) -> Outcome:
        ids = tuple(e for e, _ in ranking)
        top = ranking[0][1] if ranking else -math.inf
        if top >= self.answer_threshold:
            return Outcome("answer", ids[0], ids, seconds, cpu_seconds)
        if top >= self.suggest_threshold:
            return Outcome("suggest", None, ids, seconds, cpu_seconds)
        return Outcome("handoff", None, ids, seconds, cpu_seconds)

    def calibrate(self, queries: Sequence[LabeledQuery]) -> None:
        ranked = [self.ranked(q.query) for q in queries]
        tops = sorted({r[0][1] for r, _, _ in ranked if r})
        if not tops:
            return
        grid = sorted({tops[int(i * (len(tops) - 1) / 40)] for i in range(41)} | {math.inf})
        best = (-math.inf, math.inf, math.inf)
        for a in grid:
            for s in grid:
                if s > a:
                    continue
                self.answer_threshold, self.suggest_threshold = a, s
                figures = score(queries, [self.decide(*r) for r in ranked])
                value = objective(figures)
                if value > best[0]:
                    best = (value, a, s)
        self.answer_threshold, self.suggest_threshold = best[1], best[2]

    def run(self, queries: Sequence[LabeledQuery]) -> list[Outcome]:
        return [self.decide(*self.ranked(q.query)) for q in queries]


class RatioBaseline(Baseline):
    """rapidfuzz `fuzz.ratio` of the normalised query against every KB wording."""

    name = "rapidfuzz_ratio"

    def __init__(self, kb: KnowledgeBase, normalizer: Normalizer) -> None:
        super().__init__(kb, normalizer)
        self._texts = [t for _, t in self.wordings]

    def scores(self, normalized: str) -> list[tuple[str, float]]:
        query = normalized.replace(" ", "")
        hits = process.extract(query, self._texts, scorer=fuzz.ratio, limit=40)
        return [(self.wordings[i][0], s / 100.0) for _, s, i in hits]


class BM25Baseline(Baseline):
    """Okapi BM25 (k1=1.5, b=0.75) over jieba tokens of every KB wording."""

    name = "bm25_jieba"

    def __init__(
        self, kb: KnowledgeBase, normalizer: Normalizer, extractor: FeatureExtractor
    ) -> None:
        super().__init__(kb, normalizer)
        self._extractor = extractor
        self._docs = [extractor.words(t) for _, t in self.wordings]
        self._avgdl = sum(len(d) for d in self._docs) / max(1, len(self._docs))
        df: dict[str, int] = {}
        self._postings: dict[str, list[tuple[int, int]]] = {}
        for doc_no, words in enumerate(self._docs):
            counts: dict[str, int] = {}
            for w in words:
                counts[w] = counts.get(w, 0) + 1
            for w, c in counts.items():
                df[w] = df.get(w, 0) + 1
                self._postings.setdefault(w, []).append((doc_no, c))
        n = len(self._docs)
        self._idf = {w: math.log(1 + (n - d + 0.5) / (d + 0.5)) for w, d in df.items()}

    def scores(self, normalized: str) -> list[tuple[str, float]]:
        k1, b = 1.5, 0.75
        acc: dict[int, float] = {}
        # Sorted: a fixed summation order makes scores, ties and so calibration reproducible
        # (set order follows the per-process string hash seed).
        for w in sorted(set(self._extractor.words(normalized))):
            idf = self._idf.get(w)
            if idf is None:
                continue
            for doc, tf in self._postings[w]:
                norm = tf + k1 * (1 - b + b * len(self._docs[doc]) / self._avgdl)
                acc[doc] = acc.get(doc, 0.0) + idf * tf * (k1 + 1) / norm
        return [(self.wordings[d][0], s) for d, s in acc.items()]


# --- report ----------------------------------------------------------------------------


def evaluate(
    kb: KnowledgeBase,
    queries: Sequence[LabeledQuery],
    config: BotConfig | None = None,
    bot: Bot | None = None,
) -> dict[str, Any]:
    """All figures: the bot on all and held-out queries, and both baselines."""
    bot = bot or Bot(kb, config)
    heldout_positions = [i for i in range(len(queries)) if i % TUNE_EVERY != 0]
    heldout = [queries[i] for i in heldout_positions]
    outcomes = run_bot(bot, queries)
    report: dict[str, Any] = score(queries, outcomes)
    report["heldout"] = score(heldout, [outcomes[i] for i in heldout_positions])
    report["split"] = {
        "tune": len(queries) - len(heldout),
        "heldout": len(heldout),
        "rule": f"position % {TUNE_EVERY} == 0 is tuning",
    }
    report["thresholds"] = {
        "answer": bot.config.answer_threshold,
        "suggest": bot.config.suggest_threshold,
    }
    normalizer = bot.normalizer
    baselines: list[Baseline] = [
        RatioBaseline(kb, normalizer),
        BM25Baseline(kb, normalizer, bot.extractor),
    ]
    report["baselines"] = {}
    for baseline in baselines:
        baseline.calibrate(tune_split(queries))
        b_outcomes = baseline.run(queries)
        figures: dict[str, Any] = score(queries, b_outcomes)
        figures["heldout"] = score(heldout, [b_outcomes[i] for i in heldout_positions])
        figures["thresholds"] = {
            "answer": baseline.answer_threshold,
            "suggest": baseline.suggest_threshold,
        }
        report["baselines"][baseline.name] = figures
    return report


def calibrate_bot(
    bot: Bot, queries: Sequence[LabeledQuery], steps: int = 29
) -> tuple[BotConfig, dict[str, float]]:
    """Grid-search the margin bonus and the answer/suggest thresholds on `queries` for the
    objective; returns the best config and its figures."""
    best: tuple[float, BotConfig, dict[str, float]] = (-math.inf, bot.config, {})
    grid = [round(0.2 + 0.7 * i / (steps - 1), 4) for i in range(steps)]
    for margin in (0.0, 0.5, 1.0, 1.5, 2.0):
        weights = replace(bot.config.weights, margin=margin)
        with_margin = bot.with_config(replace(bot.config, weights=weights))
        for a in grid:
            for s in grid:
                if s > a:
                    continue
                config = replace(with_margin.config, answer_threshold=a, suggest_threshold=s)
                figures = score(queries, run_bot(with_margin.with_config(config), queries))
                value = objective(figures)
                if value > best[0]:
                    best = (value, config, figures)
    return best[1], best[2]


def leave_one_out(bot: Bot, limit: int = 10) -> dict[str, Any]:
    """KB-only check of how well each entry is described: for every wording of an entry with
    at least two, index the KB without that wording and ask it. Returns the share found first
    (`top1`), MRR@10, the entries none of whose left-out wordings came first, and the most
    frequent confusions (expected → found first). Needs no labeled queries."""
    found_first = total = 0
    rr = 0.0
    per_entry: dict[str, list[int]] = {}
    confusions: dict[tuple[str, str], int] = {}
    for entry_id, wording, kb in left_out_kbs(bot.kb):
        ranking = [m.entry.id for m in bot.with_kb(kb).rank(wording)]
        total += 1
        hit = per_entry.setdefault(entry_id, [0, 0])
        hit[1] += 1
        if entry_id in ranking[:limit]:
            rr += 1.0 / (ranking.index(entry_id) + 1)
        if ranking[:1] == [entry_id]:
            found_first += 1
            hit[0] += 1
        elif ranking:
            pair = (entry_id, ranking[0])
            confusions[pair] = confusions.get(pair, 0) + 1
    top = sorted(confusions.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return {
        "wordings": total,
        "top1": found_first / total if total else 0.0,
        "mrr10": rr / total if total else 0.0,
        "entries_never_first": sorted(e for e, (hits, _) in per_entry.items() if hits == 0),
        "confusions": [{"expected": a, "found": b, "count": c} for (a, b), c in top],
    }


def left_out_kbs(kb: KnowledgeBase) -> Iterator[tuple[str, str, KnowledgeBase]]:
    """(entry id, wording, KB without that wording) for every wording of every enabled entry
    with at least two: the leave-one-out pseudo-queries."""
    for entry in kb.entries:
        wordings = entry.all_questions
        if not entry.enabled or len(wordings) < 2:
            continue
        for i, wording in enumerate(wordings):
            rest = wordings[:i] + wordings[i + 1 :]
            without = replace(entry, question=rest[0], similar_questions=tuple(rest[1:]))
            yield entry.id, wording, kb.with_entry(without)


def reranker_training_lists(bot: Bot, depth: int) -> list[tuple[list[tuple[float, ...]], int]]:
    """Re-ranker training data from the KB alone: for each leave-one-out pseudo-query, the
    feature rows of the first stage's top `depth` entries (no re-ranker) and the position of
    the left-out wording's entry among them (-1 when it is not there)."""
    plain = Bot(bot.kb, bot.config, normalizer=bot.normalizer, extractor=bot.extractor)
    lists = []
    for entry_id, wording, kb in left_out_kbs(bot.kb):
        index = plain.with_kb(kb).index
        query = index.analyze(plain.normalize(wording))
        matches = index.search_query(query, limit=depth) if query.normalized else []
        ids = [m.entry.id for m in matches]
        right = ids.index(entry_id) if entry_id in ids else -1
        lists.append((index.candidate_features(query, matches), right))
    return lists


_ROWS = (
    ("top1", "top-1 (first reply right)"),
    ("resolved", "answered directly, correct"),
    ("mrr10", "MRR@10"),
    ("handoff_precision", "handoff precision"),
    ("handoff_recall", "handoff recall"),
    ("wrong_answer_rate", "wrong-answer rate"),
    ("suggest_rate", "suggest rate"),
    ("p50_ms", "p50 latency ms"),
    ("p99_ms", "p99 latency ms"),
    ("cpu_p50_ms", "p50 CPU ms"),
    ("cpu_p99_ms", "p99 CPU ms"),
)


def format_report(report: dict[str, Any]) -> str:
    columns: list[tuple[str, dict[str, Any]]] = [
        ("bot (all)", report),
        ("bot (held-out)", report["heldout"]),
    ]
    for name, figures in report["baselines"].items():
        columns.append((f"{name} (all)", figures))
    lines = [
        f"queries: {int(report['queries'])} (tuning {report['split']['tune']}, "
        f"held-out {report['split']['heldout']}; {report['split']['rule']})",
        f"bot thresholds: answer {report['thresholds']['answer']}, "
        f"suggest {report['thresholds']['suggest']}",
        "",
        f"{'figure':30}" + "".join(f"{name:>24}" for name, _ in columns),
    ]
    for key, label in _ROWS:
        cells = "".join(f"{figures[key]:>24.3f}" for _, figures in columns)
        lines.append(f"{label:30}{cells}")
    return "\n".join(lines)


def _read_kb(path: Path) -> KnowledgeBase:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        return KnowledgeBase.from_csv(text)
    return KnowledgeBase.from_jsonl(text)


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.eval", description=__doc__)
    parser.add_argument("--kb", type=Path, help="KB file (.jsonl or .csv); default: demo KB")
    parser.add_argument("--queries", type=Path, help="labeled queries JSONL; default: demo set")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="grid-search the bot's thresholds on the tuning split and print them",
    )
    parser.add_argument(
        "--leave-one-out",
        action="store_true",
        help="KB only: ask each wording against the KB without it; print JSON",
    )
    parser.add_argument(
        "--reranker", type=Path, help="re-ranker weights (scripts/bot_train_reranker.py)"
    )
    parser.add_argument("--answer-threshold", type=float, help="override BotConfig's")
    parser.add_argument("--suggest-threshold", type=float, help="override BotConfig's")
    parser.add_argument("--margin", type=float, help="override the confidence margin bonus")
    args = parser.parse_args(argv)
    try:
        kb = _read_kb(args.kb) if args.kb else load_demo_kb()
        queries = (
            parse_queries(args.queries.read_text(encoding="utf-8"))
            if args.queries
            else load_demo_queries()
        )
    except (OSError, KBFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not queries:
        print("error: no queries", file=sys.stderr)
        return 2
    config = BotConfig()
    if args.answer_threshold is not None:
        config = replace(config, answer_threshold=args.answer_threshold)
    if args.suggest_threshold is not None:
        config = replace(config, suggest_threshold=args.suggest_threshold)
    if args.margin is not None:
        config = replace(config, weights=replace(config.weights, margin=args.margin))
    try:
        reranker = (
            Reranker.from_json(args.reranker.read_text(encoding="utf-8")) if args.reranker else None
        )
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: re-ranker weights: {exc}", file=sys.stderr)
        return 2
    bot = Bot(kb, config, reranker=reranker)
    if args.leave_one_out:
        out(json.dumps(leave_one_out(bot), ensure_ascii=False))
        return 0
    if args.calibrate:
        config, figures = calibrate_bot(bot, tune_split(queries))
        chosen = {
            "answer_threshold": config.answer_threshold,
            "suggest_threshold": config.suggest_threshold,
            "margin": config.weights.margin,
        }
        out(json.dumps({**chosen, "tuning_split": figures}))
        return 0
    report = evaluate(kb, queries, bot=bot)
    out(json.dumps(report, ensure_ascii=False) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
