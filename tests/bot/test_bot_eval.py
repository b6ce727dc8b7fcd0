"""The shipped evaluation: figures on the demo query set, the CLI, and its error handling."""

import json
from pathlib import Path
from typing import Any

import pytest

from bot import Bot, KnowledgeBase, Normalizer
from bot.eval import (
    DEMO_QUERY_FILES,
    TUNE_EVERY,
    evaluate,
    load_demo_queries,
    main,
    parse_queries,
)

# Floors measured on the shipped sets (docs/benchmarks/bot.md); a drop below them is a
# regression. The brief's targets are top-1 >= 0.90 and wrong answers <= 0.03. The first two
# files (625 queries) give top-1 0.960 (0.952 held out). The thirteenth session added five
# files written blind to the bot by other writers (1,040 queries, paraphrases with context and
# regional wording) and a KB enrichment written blind to all query files (docs/bot.md): on all
# 1,665 top-1 was 0.8997 (0.894 held out); wrong answers 0.007 (0.010 held out). The fourteenth
# session's rule fixes and three more blind files (190 + 198 + 196): on all 2,249 top-1 0.897
# (0.892 held out; the 90% target missed by seven queries), wrong answers 0.006 (0.007). The
# fifteenth session's rule fixes, a second blind KB enrichment and two more blind files (198 +
# 199): on all 2,646 top-1 0.9017 (0.896 held out), wrong answers 0.006 (0.007): the target is
# the floor now.
FIRST_FILE_TOP1_FLOOR = 0.94
FIRST_FILE_HELDOUT_TOP1_FLOOR = 0.92
TOP1_FLOOR = 0.90
HELDOUT_TOP1_FLOOR = 0.89
WRONG_ANSWER_CEILING = 0.03
HELDOUT_WRONG_ANSWER_CEILING = 0.03


def test_demo_query_set_shape(demo_kb: KnowledgeBase) -> None:
    queries = load_demo_queries()
    assert len(queries) >= 300
    assert sum(q.expected_id is None for q in queries) >= 50
    fresh = load_demo_queries(DEMO_QUERY_FILES[1:])
    assert len(fresh) >= 150 and sum(q.expected_id is None for q in fresh) >= 30
    # Kept apart from the KB's own wordings and from the first file.
    normalizer = Normalizer()
    wordings = {normalizer.normalize(w) for e in demo_kb.entries for w in e.all_questions}
    first = {q.query for q in load_demo_queries(DEMO_QUERY_FILES[:1])}
    # Five fresh queries normalise to a KB wording (three are the traditional-script form of a
    # standard question; "指纹登陆" of the eighth file is "指纹登录" misspelt); they were measured
    # as written, so they stay, counted here.
    copies = [q.query for q in fresh if normalizer.normalize(q.query) in wordings]
    assert len(copies) <= 5, copies
    assert not [q.query for q in fresh if q.query in first]
    # The first file had seven such copies before the KB enrichment; enriching the KB must not
    # add more (new wordings equal to a query were dropped, without reading which).
    first_copies = [q for q in first if normalizer.normalize(q) in wordings]
    assert len(first_copies) <= 7, first_copies
    # Each file keeps its own tuning split inside the joined set.
    assert len(load_demo_queries(DEMO_QUERY_FILES[:1])) % TUNE_EVERY == 0
    # No query is in two files (the blind files were de-duplicated against the earlier ones).
    assert len({q.query for q in queries}) == len(queries)


def _beats_baselines(report: dict[str, Any], keys: tuple[str, ...]) -> None:
    for name, baseline in report["baselines"].items():
        for key in keys:
            assert report[key] >= baseline[key], (name, key)


def test_first_query_file_meets_targets(demo_kb: KnowledgeBase, demo_bot: Bot) -> None:
    report = evaluate(demo_kb, load_demo_queries(DEMO_QUERY_FILES[:1]), bot=demo_bot)
    assert report["top1"] >= FIRST_FILE_TOP1_FLOOR
    assert report["heldout"]["top1"] >= FIRST_FILE_HELDOUT_TOP1_FLOOR
    assert report["wrong_answer_rate"] <= WRONG_ANSWER_CEILING
    assert report["heldout"]["wrong_answer_rate"] <= WRONG_ANSWER_CEILING
    _beats_baselines(report, ("top1", "mrr10", "handoff_precision", "handoff_recall"))
    for name, baseline in report["baselines"].items():
        assert report["wrong_answer_rate"] <= baseline["wrong_answer_rate"], name


def test_shipped_eval_floors(demo_kb: KnowledgeBase, demo_bot: Bot) -> None:
    report = evaluate(demo_kb, load_demo_queries(), bot=demo_bot)
    assert report["top1"] >= TOP1_FLOOR
    assert report["heldout"]["top1"] >= HELDOUT_TOP1_FLOOR
    assert report["wrong_answer_rate"] <= WRONG_ANSWER_CEILING
    assert report["heldout"]["wrong_answer_rate"] <= HELDOUT_WRONG_ANSWER_CEILING
    keys = ("top1", "resolved", "mrr10", "handoff_precision", "handoff_recall")
    _beats_baselines(report, keys)
    # Held out too: hand-over recall there was the last accuracy figure where the fuzzy
    # baseline won (0.730 vs 0.794 before the thirteenth session's hand-over rules).
    _beats_baselines(
        {
            **report["heldout"],
            "baselines": {
                name: baseline["heldout"] for name, baseline in report["baselines"].items()
            },
        },
        keys,
    )
    # Against both baselines since the KB enrichment (BM25 had the lower rate before, 0.013 vs
    # 0.021, when it answered directly only about a third of the time).
    for name, baseline in report["baselines"].items():
        assert report["wrong_answer_rate"] <= baseline["wrong_answer_rate"], name


def test_cli_json_with_custom_files(tmp_path: Path, demo_kb: KnowledgeBase) -> None:
    kb_file = tmp_path / "kb.csv"
    kb_file.write_text(demo_kb.to_csv(), encoding="utf-8")
    q_file = tmp_path / "q.jsonl"
    q_file.write_text(
        '{"query": "股市几点开盘", "expected_id": "trd_hours"}\n'
        '{"query": "转人工", "expected_id": null}\n',
        encoding="utf-8",
    )
    lines: list[str] = []
    assert main(["--kb", str(kb_file), "--queries", str(q_file), "--json"], out=lines.append) == 0
    report = json.loads(lines[0])
    for key in (
        "top1",
        "mrr10",
        "handoff_precision",
        "handoff_recall",
        "wrong_answer_rate",
        "p99_ms",
        "cpu_p99_ms",
    ):
        assert key in report
        for baseline in ("rapidfuzz_ratio", "bm25_jieba"):
            assert key in report["baselines"][baseline]
    assert report["top1"] == 1.0 and report["handoff_recall"] == 1.0


def test_cli_reports_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n', encoding="utf-8")
    assert main(["--kb", str(bad)]) == 2
    assert "line 1" in capsys.readouterr().err
    assert main(["--kb", str(tmp_path / "missing.jsonl")]) == 2


def test_query_file_errors() -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse_queries('{"query": "a", "expected_id": null}\n{"expected_id": "x"}\n')


def test_leave_one_out_finds_misfiled_wording(demo_bot: Bot) -> None:
    from bot import KBEntry
    from bot.eval import leave_one_out

    kb = KnowledgeBase(
        [
            KBEntry("hours", "股市几点开盘", "…", ("交易时间是几点", "几点收盘")),
            # The last wording belongs to "hours": left out, it is found under "hours".
            KBEntry("fee", "佣金是多少", "…", ("手续费怎么收", "佣金费率", "股市几点收盘")),
        ]
    )
    report = leave_one_out(demo_bot.with_kb(kb))
    assert report["wordings"] == 7
    assert {"expected": "fee", "found": "hours", "count": 1} in report["confusions"]
    assert report["top1"] < 1.0 and report["entries_never_first"] == []
    tiny = KnowledgeBase([KBEntry("only", "怎么开户", "…", ("开户流程",))])
    assert leave_one_out(demo_bot.with_kb(tiny))["top1"] == 1.0


def test_cli_leave_one_out(tmp_path: Path) -> None:
    kb_file = tmp_path / "kb.jsonl"
    kb_file.write_text(
        '{"id": "a", "question": "股市几点开盘", "answer": "…", "similar_questions": ["交易时间是几点"]}\n'
        '{"id": "b", "question": "佣金是多少", "answer": "…", "similar_questions": ["佣金费率"]}\n',
        encoding="utf-8",
    )
    lines: list[str] = []
    assert main(["--kb", str(kb_file), "--leave-one-out"], out=lines.append) == 0
    report = json.loads(lines[0])
    assert report["wordings"] == 4 and 0.0 <= report["top1"] <= 1.0
