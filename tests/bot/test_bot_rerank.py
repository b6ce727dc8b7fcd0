"""The learned re-ranker (bot/rerank.py): question kinds, candidate features, deterministic
training, and that a model re-orders a near-tie inside one topic."""

import json
from pathlib import Path

import pytest

from bot import Bot, KBEntry, KnowledgeBase
from bot.eval import main as eval_main
from bot.eval import reranker_training_lists
from bot.rerank import FEATURE_NAMES, Reranker, char_bigrams, fit_reranker, jaccard, question_kinds

NEAR_TIE_KB = KnowledgeBase(
    (
        KBEntry("how", "银证转账怎么操作", "…", category="transfer"),
        KBEntry("time", "银证转账什么时候可以做", "…", category="transfer"),
    )
)


def _only(**weights: float) -> Reranker:
    """A hand-set model: the named features at the given weights, means 0."""
    names = FEATURE_NAMES[1:]
    unknown = set(weights) - set(names)
    assert not unknown, unknown
    return Reranker(tuple(weights.get(n, 0.0) for n in names), (0.0,) * len(names), depth=6)


def test_question_kinds() -> None:
    assert question_kinds("转账多久到账") == {"time"}
    assert question_kinds("银证转账什么时候可以做") == {"time", "yes_no"}
    assert question_kinds("为什么登录不了") == {"why", "fix"}
    assert question_kinds("app在哪里下载") == {"where"}
    assert question_kinds("两融是什么") == {"what"}
    assert question_kinds("怎么开户") == {"how"}
    assert question_kinds("密码忘了怎么办") == {"fix"}  # 怎么办 is not "how"
    assert question_kinds("开户") == frozenset()


def test_bigram_jaccard() -> None:
    assert char_bigrams("开户") == {"开户"}
    assert char_bigrams("户") == {"户"} and char_bigrams("") == set()
    assert jaccard(char_bigrams("怎么开户"), char_bigrams("怎么开户")) == 1.0
    assert jaccard(char_bigrams("怎么开户"), char_bigrams("怎么销户")) == pytest.approx(1 / 5)
    assert jaccard(set(), {"ab"}) == 0.0


def test_candidate_features(demo_bot: Bot) -> None:
    bot = demo_bot.with_kb(NEAR_TIE_KB)
    index = bot.index
    query = index.analyze(bot.normalize("银证转账几点可以转"))
    matches = index.search_query(query, limit=5)
    rows = index.candidate_features(query, matches)
    assert [len(r) for r in rows] == [len(FEATURE_NAMES)] * len(matches)
    by_id = {
        m.entry.id: dict(zip(FEATURE_NAMES, r, strict=True))
        for m, r in zip(matches, rows, strict=True)
    }
    assert by_id["time"]["kind_match"] == 1.0 and by_id["time"]["kind_clash"] == 0.0
    assert by_id["how"]["kind_match"] == 0.0 and by_id["how"]["kind_clash"] == 1.0
    for m in matches:
        f = by_id[m.entry.id]
        assert f["score"] == m.score and f["coverage"] == m.coverage
        assert 0.0 < f["length_ratio"] <= 1.0 and 0.0 <= f["bigram_jaccard"] <= 1.0
        assert 0.0 <= f["missing_rare"] <= 1.0 and 0.0 < f["shared_rare"] <= 1.0
    # The score parts of the best wording are exposed and recombine into the score.
    w = bot.config.weights
    for m in matches:
        wording = w.overlap * m.overlap + w.ratio * m.ratio + w.partial * m.partial
        mixed = (1 - w.entry_cover) * wording + w.entry_cover * m.coverage
        assert m.score == pytest.approx(mixed, abs=1e-3)  # coverage is rounded to 4 places


def test_reranker_reorders_a_near_tie_inside_one_topic(demo_bot: Bot) -> None:
    plain = demo_bot.with_kb(NEAR_TIE_KB)
    first = plain.rank("银证转账几点可以转")
    # The first stage ranks the "how" entry narrowly first for a "when" question.
    assert [m.entry.id for m in first] == ["how", "time"]
    assert first[0].score - first[1].score < 0.05
    reranked = Bot(
        NEAR_TIE_KB, normalizer=demo_bot.normalizer, extractor=demo_bot.extractor,
        reranker=_only(kind_match=0.1, kind_clash=-0.05),
    )  # fmt: skip
    after = reranked.rank("银证转账几点可以转")
    assert [m.entry.id for m in after] == ["time", "how"]
    assert after[0].score == pytest.approx(first[1].score + 0.1)
    # A clear winner is not overturned by the same model.
    assert reranked.rank("银证转账怎么操作")[0].entry.id == "how"
    # with_kb keeps the model.
    assert reranked.with_kb(NEAR_TIE_KB).rank("银证转账几点可以转")[0].entry.id == "time"


def test_zero_model_changes_nothing(demo_bot: Bot) -> None:
    zero = Bot(
        demo_bot.kb, normalizer=demo_bot.normalizer, extractor=demo_bot.extractor,
        reranker=_only(),
    )  # fmt: skip
    for text in ("怎么开户", "两融利息怎么算", "转出的钱没到账", "新股中签了不想要"):
        assert [(m.entry.id, m.score) for m in zero.rank(text, 5)] == [
            (m.entry.id, m.score) for m in demo_bot.rank(text, 5)
        ]


def _separable_lists() -> list[tuple[list[tuple[float, ...]], int]]:
    """Lists where the right candidate has a slightly lower score but kind_match 1."""
    k = FEATURE_NAMES.index("kind_match")
    lists = []
    for i in range(20):
        base = [0.5 + 0.01 * (i % 3), 0.3, 0.5, 0.5, 0.5, 0.0, 0.0, 0.3, 0.8, 0.5, 0.2]
        wrong = tuple(base)
        right = list(base)
        right[0] -= 0.02
        right[k] = 1.0
        other = list(base)
        other[0] -= 0.2
        lists.append(([wrong, tuple(right), tuple(other)], 1))
    lists.append(([tuple(base)], -1))  # no right entry: no pairs, only the means
    return lists


@pytest.mark.parametrize("listwise", [False, True])
def test_training_is_deterministic_and_learns_the_signal(listwise: bool) -> None:
    lists = _separable_lists()
    a = fit_reranker(lists, use=("score", "kind_match"), listwise=listwise)
    b = fit_reranker(lists, use=("score", "kind_match"), listwise=listwise)
    assert a == b
    weights = dict(zip(FEATURE_NAMES[1:], a.weights, strict=True))
    assert weights["kind_match"] > 0.02  # enough to overturn the 0.02 score gap
    assert all(w == 0.0 for n, w in weights.items() if n != "kind_match")
    for rows, right in lists[:-1]:
        scores = [r[0] + a.adjust(r) for r in rows]
        assert scores.index(max(scores)) == right


def test_training_needs_the_score_and_some_pairs() -> None:
    with pytest.raises(ValueError, match="score"):
        fit_reranker(_separable_lists(), use=("kind_match",))
    with pytest.raises(ValueError, match="no training pairs"):
        fit_reranker([([(0.5,) * len(FEATURE_NAMES)], -1)])


def test_weights_round_trip_and_reject_other_features() -> None:
    model = fit_reranker(_separable_lists(), use=("score", "kind_match", "length_ratio"))
    again = Reranker.from_json(model.to_json())
    assert again.depth == model.depth
    assert again.weights == pytest.approx(model.weights, abs=1e-6)
    data = json.loads(model.to_json())
    data["features"] = data["features"][:-1]
    with pytest.raises(ValueError, match="other features"):
        Reranker.from_json(json.dumps(data))


def test_training_lists_from_the_kb_alone(demo_bot: Bot) -> None:
    kb = KnowledgeBase(
        (
            KBEntry("how", "银证转账怎么操作", "…", ("怎么把钱转到证券账户",), category="transfer"),
            KBEntry(
                "time", "银证转账什么时候可以做", "…", ("几点可以银证转账",), category="transfer"
            ),
            KBEntry("one", "开户要带什么", "…", category="account"),  # one wording: skipped
        )
    )
    bot = demo_bot.with_kb(kb)
    lists = reranker_training_lists(bot, depth=6)
    assert len(lists) == 4  # two wordings each of two entries
    assert all(len(row) == len(FEATURE_NAMES) for rows, _ in lists for row in rows)
    assert all(-1 <= right < len(rows) for rows, right in lists)
    assert reranker_training_lists(bot, depth=6) == lists


def test_eval_cli_takes_a_model_and_rejects_a_bad_one(tmp_path: Path) -> None:
    good = tmp_path / "w.json"
    good.write_text(_only(kind_match=0.05).to_json(), encoding="utf-8")
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        '{"query": "怎么开户", "expected_id": "acc_open_online"}\n', encoding="utf-8"
    )
    out: list[str] = []
    assert (
        eval_main(["--queries", str(queries), "--reranker", str(good), "--json"], out.append) == 0
    )
    assert "top1" in json.loads(out[0])
    bad = tmp_path / "bad.json"
    bad.write_text('{"features": ["x"], "weights": [], "means": [], "depth": 6}', encoding="utf-8")
    assert eval_main(["--queries", str(queries), "--reranker", str(bad)], out.append) == 2
