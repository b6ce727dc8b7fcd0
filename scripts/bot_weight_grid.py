"""Try values of one bot scoring weight on data that may be tuned on: the tuning split of the
demo queries (and of any `--tune-file`) and the KB's own leave-one-out pseudo-queries. Never
looks at a held-out part.

    .venv/bin/python scripts/bot_weight_grid.py --weight entry_cover --values 0.2 0.25 0.3
    .venv/bin/python scripts/bot_weight_grid.py --weight ratio --values 0.1 0.12 \
        --tune-file my_queries.jsonl --no-loo
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot import Bot, BotConfig, load_demo_kb  # noqa: E402
from bot.eval import (  # noqa: E402
    leave_one_out,
    load_demo_queries,
    objective,
    parse_queries,
    run_bot,
    score,
    tune_split,
)
from bot.index import ScoringWeights  # noqa: E402


def main() -> int:
    names = [f.name for f in fields(ScoringWeights) if f.type in ("float", float)]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weight", required=True, choices=names)
    parser.add_argument("--values", required=True, nargs="+", type=float)
    parser.add_argument("--no-loo", action="store_true", help="skip leave-one-out (~1 min each)")
    parser.add_argument(
        "--tune-file", type=Path, action="append", help="another query file: its tuning split too"
    )
    args = parser.parse_args()
    kb = load_demo_kb()
    base = Bot(kb)
    tune = tune_split(load_demo_queries())
    for path in args.tune_file or []:
        tune += tune_split(parse_queries(path.read_text(encoding="utf-8")))
    for value in args.values:
        weights = replace(base.config.weights, **{args.weight: value})
        bot = Bot(
            kb,
            replace(BotConfig(), weights=weights),
            normalizer=base.normalizer,
            extractor=base.extractor,
        )
        figures = score(tune, run_bot(bot, tune))
        row = {
            args.weight: value,
            "tune_objective": round(objective(figures), 4),
            "tune_top1": round(figures["top1"], 4),
            "tune_mrr10": round(figures["mrr10"], 4),
        }
        if not args.no_loo:
            loo = leave_one_out(bot)
            row["loo_top1"] = round(loo["top1"], 4)
            row["loo_mrr10"] = round(loo["mrr10"], 4)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
