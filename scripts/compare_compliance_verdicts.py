"""Prove an engine change keeps every verdict: dump verdicts from one version, compare another.

``python scripts/compare_compliance_verdicts.py --dump before.pickle`` (run with the old code,
e.g. ``git archive <commit> compliance scripts | tar -x -C /tmp/old`` and the copy of this script
there), then ``python scripts/compare_compliance_verdicts.py --against before.pickle`` with the
new code. Inputs: every shipped and held-out case (with its own, C1 and no customer risk) and
12,000 hard-negative plus 4,000 service benchmark messages per role, each alone and every third
one again with the previous message and customer risk C2; through the shipped engine and the
2,000-rule benchmark engine. A verdict is its tier, hold, masked text and every hit.
"""

from __future__ import annotations

import argparse
import pickle
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_compliance import messages, service_messages, synthetic_rules  # noqa: E402

from compliance import (  # noqa: E402
    ComplianceEngine,
    RuleSet,
    Verdict,
    load_default_rules,
    load_demo_products,
)
from compliance.eval import load_cases  # noqa: E402

_DATA = Path(__file__).resolve().parents[1] / "compliance" / "data"
_ROLES = ("advisor", "investor", "bot")

Input = tuple[str, str, tuple[str, ...], str | None]


def inputs() -> list[Input]:
    out: list[Input] = []
    for name in ("cases.jsonl", "cases_holdout.jsonl"):
        for case in load_cases((_DATA / name).read_text("utf-8")):
            previous = tuple(case.get("previous", ()))
            for risk in dict.fromkeys((case.get("customer_risk"), "C1", None)):
                out.append((case["text"], case["role"], previous, risk))
    for role in _ROLES:
        rng = random.Random(11)
        msgs = messages(12_000, rng) + service_messages(4_000, role, rng)
        for i, text in enumerate(msgs):
            out.append((text, role, (), None))
            if i % 3 == 0:
                out.append((text, role, (msgs[i - 1],), "C2"))
    return out


def engines() -> list[ComplianceEngine]:
    shipped = load_default_rules()
    generated = synthetic_rules(2000 - len(shipped), random.Random(7))
    products = load_demo_products()
    return [
        ComplianceEngine(shipped, products=products),
        ComplianceEngine(RuleSet([*shipped, *generated]), products=products),
    ]


def as_plain(verdict: Verdict) -> tuple[Any, ...]:
    return (
        int(verdict.tier),
        verdict.hold,
        verdict.masked_text,
        tuple(
            (h.rule_id, h.category, int(h.tier), h.start, h.end, h.matched, h.in_previous)
            for h in verdict.hits
        ),
    )


def verdicts() -> list[tuple[Any, ...]]:
    items = inputs()
    out = []
    for engine in engines():
        for text, role, previous, risk in items:
            out.append(as_plain(engine.check(text, role, previous=previous, customer_risk=risk)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--dump", type=Path, help="write this code's verdicts here")
    group.add_argument("--against", type=Path, help="compare this code's verdicts with a dump")
    args = parser.parse_args()
    t0 = time.perf_counter()
    mine = verdicts()
    if args.dump:
        args.dump.write_bytes(pickle.dumps(mine))
        print(f"{len(mine)} verdicts written to {args.dump} ({time.perf_counter() - t0:.0f} s)")
        return 0
    theirs = pickle.loads(args.against.read_bytes())
    if len(theirs) != len(mine):
        print(f"different inputs: {len(theirs)} dumped, {len(mine)} now")
        return 1
    items = inputs()
    differ = [i for i, (a, b) in enumerate(zip(theirs, mine, strict=True)) if a != b]
    for i in differ[:10]:
        print("input", items[i % len(items)], "\n  before", theirs[i], "\n  now   ", mine[i])
    flagged = sum(1 for v in mine if v[3])
    print(
        f"{len(mine)} verdicts ({flagged} with hits), {len(differ)} differ "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
