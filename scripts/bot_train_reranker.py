"""Train the bot's re-ranker on the KB alone (leave-one-out pseudo-queries) and write its weights.
Reports, per variant, the entry-grouped cross-validated leave-one-out top-1 and the tuning split
of the demo queries; never looks at a held-out part.

    .venv/bin/python scripts/bot_train_reranker.py                      # fit, report, no write
    .venv/bin/python scripts/bot_train_reranker.py --write              # -> rerank_weights.json
    .venv/bin/python scripts/bot_train_reranker.py --kb my_kb.jsonl --out my_weights.json --write
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot import Bot, BotConfig, load_demo_kb  # noqa: E402
from bot.eval import (  # noqa: E402
    LabeledQuery,
    _read_kb,
    load_demo_queries,
    objective,
    reranker_training_lists,
    run_bot,
    score,
    tune_split,
)
from bot.rerank import FEATURE_NAMES, Reranker, TrainingList, fit_reranker  # noqa: E402

# Feature sets tried, each on top of the first-stage score (which anchors the scale). The score
# parts (overlap, ratio, partial, coverage) are left out: the score is an exact linear mix of
# them, so with them the anchor weight would be arbitrary.
VARIANTS: dict[str, tuple[str, ...]] = {
    "new_only": (
        "score",
        "kind_match",
        "kind_clash",
        "bigram_jaccard",
        "length_ratio",
        "shared_rare",
        "missing_rare",
    ),
    "kinds": ("score", "kind_match", "kind_clash"),
    "lexical": ("score", "bigram_jaccard", "length_ratio"),
    "rare_words": ("score", "shared_rare", "missing_rare"),
}


def list_top1(lists: list[TrainingList], model: Reranker | None) -> float:
    """Share of lists whose right entry comes first (after re-scoring with `model`)."""
    hits = 0
    for rows, right in lists:
        if right < 0:
            continue
        scores = [row[0] + (model.adjust(row) if model else 0.0) for row in rows]
        best = max(range(len(rows)), key=lambda i: (scores[i], -i))
        hits += best == right
    return hits / len(lists) if lists else 0.0


def ranking_top1(bot: Bot, queries: list[LabeledQuery]) -> float:
    """Share of answerable queries whose expected entry the bot ranks first (no thresholds)."""
    answerable = [q for q in queries if q.expected_id is not None]
    hits = sum([m.entry.id for m in bot.rank(q.query, 1)] == [q.expected_id] for q in answerable)
    return hits / len(answerable)


def cross_validated_top1(
    lists: list[TrainingList],
    groups: list[int],
    use: tuple[str, ...],
    l2: float,
    depth: int,
    listwise: bool,
) -> float:
    """Leave-one-out top-1 with each fold's model fitted on the other folds (folds by entry,
    so a model never sees another wording of the entry it is scored on)."""
    folds = 5
    hits = 0.0
    for fold in range(folds):
        train = [lst for lst, g in zip(lists, groups, strict=True) if g % folds != fold]
        test = [lst for lst, g in zip(lists, groups, strict=True) if g % folds == fold]
        model = fit_reranker(train, use=use, l2=l2, depth=depth, listwise=listwise)
        hits += list_top1(test, model) * len(test)
    return hits / len(lists)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=Path, help="KB file (.jsonl or .csv); default: demo KB")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="new_only")
    parser.add_argument("--pairwise", action="store_true", help="pairwise loss, not listwise")
    parser.add_argument("--l2", type=float, default=0.01)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("rerank_weights.json"))
    parser.add_argument("--write", action="store_true", help="write the weights to --out")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="shrink the learned adjustment (tuning split)"
    )
    parser.add_argument("--cache", type=Path, help="training lists file: reused if it exists")
    parser.add_argument("--all-variants", action="store_true", help="report every variant")
    args = parser.parse_args()
    kb = _read_kb(args.kb) if args.kb else load_demo_kb()
    base = Bot(kb)
    start = time.perf_counter()
    if args.cache and args.cache.exists():
        lists = [
            (list(map(tuple, rows)), right) for rows, right in json.loads(args.cache.read_text())
        ]
    else:
        lists = reranker_training_lists(base, args.depth)
        if args.cache:
            args.cache.write_text(json.dumps(lists))
    # Group of each list = its entry, for cross-validation folds.
    entry_ids = [
        e.id for e in kb.entries if e.enabled and len(e.all_questions) >= 2
        for _ in e.all_questions
    ]  # fmt: skip
    numbering = {e: i for i, e in enumerate(dict.fromkeys(entry_ids))}
    groups = [numbering[e] for e in entry_ids]
    print(
        json.dumps(
            {
                "pseudo_queries": len(lists),
                "right_in_top_depth": round(sum(r >= 0 for _, r in lists) / len(lists), 4),
                "first_stage_top1": round(list_top1(lists, None), 4),
                "seconds": round(time.perf_counter() - start, 1),
            }
        ),
        flush=True,
    )
    tune = tune_split(load_demo_queries()) if not args.kb else []
    variants = sorted(VARIANTS) if args.all_variants else [args.variant]
    chosen: Reranker | None = None
    for name in variants:
        use = VARIANTS[name]
        model = fit_reranker(
            lists, use=use, l2=args.l2, depth=args.depth, listwise=not args.pairwise
        )
        model = replace(model, weights=tuple(w * args.scale for w in model.weights))
        row: dict[str, object] = {
            "variant": name,
            "l2": args.l2,
            "depth": args.depth,
            "loo_top1_fitted": round(list_top1(lists, model), 4),
            "loo_top1_cv": round(
                cross_validated_top1(lists, groups, use, args.l2, args.depth, not args.pairwise), 4
            ),
            "weights": dict(
                zip(FEATURE_NAMES[1:], (round(w, 3) for w in model.weights), strict=True)
            ),
        }
        if tune:
            for label, reranker in (("off", None), ("on", model)):
                bot = Bot(
                    kb, BotConfig(), normalizer=base.normalizer, extractor=base.extractor,
                    reranker=reranker,
                )  # fmt: skip
                figures = score(tune, run_bot(bot, tune))
                row[f"tune_{label}"] = {
                    "objective": round(objective(figures), 4),
                    "top1": round(figures["top1"], 4),
                    "mrr10": round(figures["mrr10"], 4),
                    "wrong": round(figures["wrong_answer_rate"], 4),
                    "rank_top1": round(ranking_top1(bot, tune), 4),
                }
        print(json.dumps(row, ensure_ascii=False), flush=True)
        if name == args.variant:
            chosen = model
    if args.write and chosen is not None:
        args.out.write_text(chosen.to_json() + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
