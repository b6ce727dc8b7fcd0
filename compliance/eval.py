"""Evaluation tool: recall per category and false-positive rate on labelled cases, with a baseline.

``python -m compliance.eval [--cases CASES.jsonl] [--json]``; the baseline is a bare
pyahocorasick automaton over the raw literal terms of the rules (no normalisation, no window).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import ahocorasick

from compliance.engine import ComplianceEngine
from compliance.products import load_demo_products
from compliance.rules import CATEGORIES, RuleSet, load_default_rules

Detector = Callable[[dict[str, Any]], set[str]]


@dataclass(frozen=True, slots=True)
class Report:
    recall: dict[str, float | None]
    recall_overall: float
    false_positive_rate: float
    violating: int
    benign: int
    missed: tuple[dict[str, Any], ...]
    false_positives: tuple[dict[str, Any], ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "recall": self.recall,
            "recall_overall": self.recall_overall,
            "false_positive_rate": self.false_positive_rate,
            "violating": self.violating,
            "benign": self.benign,
        }


def load_cases(text: str) -> list[dict[str, Any]]:
    cases = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        case = json.loads(line)
        if not isinstance(case.get("text"), str) or case.get("role") not in (
            "advisor",
            "investor",
            "bot",
        ):
            raise ValueError(f"line {number}: a case needs text and role")
        unknown = set(case.get("expected", [])) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"line {number}: unknown categories {sorted(unknown)}")
        cases.append(case)
    return cases


def shipped_cases(name: str = "cases.jsonl") -> list[dict[str, Any]]:
    return load_cases(resources.files("compliance").joinpath(f"data/{name}").read_text("utf-8"))


def engine_detector(engine: ComplianceEngine) -> Detector:
    def detect(case: dict[str, Any]) -> set[str]:
        verdict = engine.check(
            case["text"],
            case["role"],
            previous=case.get("previous", ()),
            customer_risk=case.get("customer_risk"),
        )
        return set(verdict.categories)

    return detect


def baseline_detector(rules: RuleSet) -> Detector:
    """What a popular keyword library does: raw literal terms, substring match, role-aware."""
    automaton = ahocorasick.Automaton()
    by_term: dict[str, set[tuple[str, tuple[str, ...]]]] = {}
    for rule in rules:
        for term in rule.terms:
            by_term.setdefault(term, set()).add((rule.category, rule.roles))
    for term, payload in by_term.items():
        automaton.add_word(term, tuple(payload))
    automaton.make_automaton()

    def detect(case: dict[str, Any]) -> set[str]:
        found: set[str] = set()
        for _, payload in automaton.iter(case["text"]):
            found.update(cat for cat, roles in payload if case["role"] in roles)
        return found

    return detect


def evaluate(cases: Iterable[dict[str, Any]], detect: Detector) -> Report:
    per_cat_total = dict.fromkeys(CATEGORIES, 0)
    per_cat_hit = dict.fromkeys(CATEGORIES, 0)
    violating = benign = caught = fps = 0
    missed: list[dict[str, Any]] = []
    false_positives: list[dict[str, Any]] = []
    for case in cases:
        expected = set(case.get("expected", []))
        found = detect(case)
        if expected:
            violating += 1
            ok = expected <= found
            caught += ok
            if not ok:
                missed.append({**case, "found": sorted(found)})
            for cat in expected:
                per_cat_total[cat] += 1
                per_cat_hit[cat] += cat in found
        else:
            benign += 1
            if found:
                fps += 1
                false_positives.append({**case, "found": sorted(found)})
    recall = {
        cat: (per_cat_hit[cat] / per_cat_total[cat] if per_cat_total[cat] else None)
        for cat in CATEGORIES
    }
    return Report(
        recall=recall,
        recall_overall=caught / violating if violating else 1.0,
        false_positive_rate=fps / benign if benign else 0.0,
        violating=violating,
        benign=benign,
        missed=tuple(missed),
        false_positives=tuple(false_positives),
    )


def run(cases: Sequence[dict[str, Any]]) -> dict[str, Any]:
    rules = load_default_rules()
    engine = ComplianceEngine(rules, products=load_demo_products())
    report = evaluate(cases, engine_detector(engine))
    base = evaluate(cases, baseline_detector(rules))
    return {**report.as_dict(), "baseline": base.as_dict(), "_report": report}


def _fmt(value: float | None) -> str:
    return "   n/a" if value is None else f"{value * 100:6.2f}%"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compliance.eval", description=__doc__)
    parser.add_argument("--cases", help="JSONL cases (default: the shipped cases)")
    parser.add_argument("--holdout", action="store_true", help="use the shipped held-out cases")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--show", type=int, default=0, help="print up to N misses and FPs")
    args = parser.parse_args(argv)
    if args.cases:
        with open(args.cases, encoding="utf-8") as f:
            cases = load_cases(f.read())
    else:
        cases = shipped_cases("cases_holdout.jsonl" if args.holdout else "cases.jsonl")
    result = run(cases)
    report: Report = result.pop("_report")
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    base = result["baseline"]
    print(f"cases: {report.violating} violating, {report.benign} benign")
    print(f"{'category':28s} {'engine':>8s} {'baseline':>9s}")
    for cat in CATEGORIES:
        print(f"{cat:28s} {_fmt(report.recall[cat])} {_fmt(base['recall'][cat]):>9s}")
    print(
        f"{'recall overall':28s} {_fmt(report.recall_overall)} {_fmt(base['recall_overall']):>9s}"
    )
    print(
        f"{'false-positive rate':28s} {_fmt(report.false_positive_rate)} "
        f"{_fmt(base['false_positive_rate']):>9s}"
    )
    for case in report.missed[: args.show]:
        print("MISS", json.dumps(case, ensure_ascii=False))
    for case in report.false_positives[: args.show]:
        print("FP  ", json.dumps(case, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
