"""The shipped evaluation meets its targets, beats the bare-keyword baseline, and the CLI works."""

import json
import subprocess
import sys
from pathlib import Path

from compliance import CATEGORIES
from compliance.eval import baseline_detector, evaluate, run, shipped_cases
from compliance.rules import load_default_rules


def test_shipped_cases_meet_targets() -> None:
    cases = shipped_cases()
    violating = [c for c in cases if c["expected"]]
    benign = [c for c in cases if not c["expected"]]
    assert len(violating) >= 500 and len(benign) >= 1500
    result = run(cases)
    assert result["recall_overall"] >= 0.98
    assert result["false_positive_rate"] <= 0.005
    for cat in CATEGORIES:
        assert result["recall"][cat] is not None, cat
    base = result["baseline"]
    assert base["recall_overall"] < result["recall_overall"]


def test_every_evasion_is_in_the_shipped_cases() -> None:
    evasions = {c.get("evasion") for c in shipped_cases()}
    assert evasions >= {
        "zero_width",
        "pinyin",
        "initials",
        "homophone",
        "full_width",
        "traditional",
        "styled_digits",
        "emoji_separators",
        "repeated",
        "split",
        "intent",
    }


def test_baseline_is_the_bare_keyword_match() -> None:
    detect = baseline_detector(load_default_rules())
    assert detect({"text": "稳赚不赔", "role": "advisor"}) == {"promise_returns"}
    assert detect({"text": "稳\u200b赚不赔", "role": "advisor"}) == set()


def test_evaluate_counts() -> None:
    cases = [
        {"text": "稳赚不赔", "role": "advisor", "expected": ["promise_returns"]},
        {"text": "您好", "role": "advisor", "expected": ["promise_returns"]},
        {"text": "稳赚不赔", "role": "advisor", "expected": []},
        {"text": "您好", "role": "advisor", "expected": []},
    ]
    report = evaluate(cases, baseline_detector(load_default_rules()))
    assert report.recall_overall == 0.5 and report.false_positive_rate == 0.5


def test_cli_json(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text(
        json.dumps({"text": "保证收益", "role": "advisor", "expected": ["promise_returns"]})
        + "\n"
        + json.dumps({"text": "我们不保证收益", "role": "advisor", "expected": []})
        + "\n",
        encoding="utf-8",
    )
    out = subprocess.run(
        [sys.executable, "-m", "compliance.eval", "--cases", str(path), "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    data = json.loads(out.stdout)
    assert data["recall_overall"] == 1.0 and data["false_positive_rate"] == 0.0
    assert set(data["baseline"]) >= {"recall", "recall_overall", "false_positive_rate"}
