"""``scripts/bench_compliance.py --paths``: messages are split by their path through ``check``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from compliance import ComplianceEngine
from compliance.engine import _Evaluation

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_compliance.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_compliance_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_path_split_counts_each_path(engine: ComplianceEngine) -> None:
    messages = [
        "您好，开户需要带身份证和银行卡。",  # no rule term, near pair or intent cue: early
        "温馨提示：我们不保证收益，请理性投资。",  # a disclaimer: evaluated, and it passes
        "跟着我买，保证收益翻倍。",  # a promise of returns: flagged
        "有问题随时联系我。",
    ]

    def check(text: str) -> object:
        return engine.check(text, "advisor")

    split = _bench().path_split(check, messages, rounds=1)

    assert split["path_early_share"] == 0.5
    assert split["path_evaluated_pass_share"] == 0.25
    assert split["path_flagged_share"] == 0.25
    assert all(split[f"path_{p}_us"] > 0 for p in ("early", "evaluated_pass", "flagged"))
    # The disclaimer's 保证 is a term span cancelled by the negator before it.
    passed = split["path_evaluated_pass_per_message"]
    assert passed["term_spans"] >= 1 and passed["negation_queries"] >= 1
    assert "offset_maps" not in passed  # no span to report, no map back to the original
    assert split["path_flagged_per_message"]["offset_maps"] == 1
    # The engine is left as it was: the counting wrapper does not stay behind.
    assert _Evaluation.run.__qualname__ == "_Evaluation.run"
