"""The per-query shortcuts in matching change no result: pruned fuzzy re-ranking, one
tokenisation per message, one simplification per message, regex-compiled lexicons."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rapidfuzz import fuzz

from bot import Bot, BotConfig, KnowledgeBase, ScoringWeights
from bot.eval import load_demo_queries
from bot.features import cut_without_hmm
from bot.index import Match, Query, QuestionIndex
from bot.signals import (
    CATEGORY_KEYWORDS,
    EXPLICIT_HUMAN_PHRASES,
    OWN_ACCOUNT_MARKERS,
    PERSONAL_REQUEST_PHRASES,
    asks_about_own_account,
    asks_for_human,
    keyword_category,
    mentions_own_account,
)

# Far more entries than re-ranked wordings: the pruning bound never applies.
UNPRUNED = 10_000


@pytest.fixture(scope="module")
def demo_texts() -> list[str]:
    return [q.query for q in load_demo_queries()]


def test_pruned_reranking_equals_scoring_every_candidate(
    demo_bot: Bot, demo_texts: list[str]
) -> None:
    index = demo_bot._index
    checked = 0
    for text in demo_texts:
        query = index.analyze(demo_bot.normalize(text))
        full = index.search_query(query, limit=UNPRUNED)
        for limit in (1, 2, 3, 5, 10):
            pruned = index.search_query(query, limit=limit)
            assert pruned == full[:limit], (text, limit)
        checked += len(full) > 5
    assert checked > 300  # most messages have more candidate entries than the limits


def _rerank_every_wording(
    index: QuestionIndex,
    query: Query,
    top: list[tuple[float, int]],
    q_words: dict[str, float],
    q_word_mass: float,
    limit: int,
) -> list[Match]:
    """The re-ranking without any shortcut: every wording of `top` scored with rapidfuzz."""
    wt = index.weights
    keep = 1.0 - wt.entry_cover
    text = query.normalized.replace(" ", "")
    best: dict[int, tuple[float, int, float, float, float]] = {}
    coverage: dict[int, float] = {}
    for overlap, doc in top:
        entry_no = index._doc_entry[doc]
        if entry_no not in coverage:
            hits = [q_words[f] for f in index._entry_words[entry_no] if f in q_words]
            coverage[entry_no] = sum(hits) / q_word_mass if q_word_mass > 0.0 else 1.0
        ratio = fuzz.ratio(text, index._doc_text[doc]) / 100.0
        partial = fuzz.partial_ratio(text, index._doc_text[doc]) / 100.0 if len(text) > 1 else ratio
        score = wt.overlap * overlap + wt.ratio * ratio + wt.partial * partial
        if entry_no not in best or best[entry_no][0] < score:
            best[entry_no] = (score, doc, overlap, ratio, partial)
    scored = sorted(
        ((keep * b[0] + wt.entry_cover * coverage[e], e, b) for e, b in best.items()),
        key=lambda item: item[0],
        reverse=True,
    )
    return [
        Match(
            index.entries[e],
            min(1.0, max(0.0, final)),
            index._doc_text[b[1]],
            round(coverage[e], 4),
            *b[2:],
        )
        for final, e, b in scored[:limit]
    ]


def test_pruned_reranking_equals_scoring_every_wording(
    demo_bot: Bot, demo_texts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Skipped wordings (cannot reach the top `limit`, cannot beat their entry's best, or
    cannot with the partial score their ratio allows) change nothing."""
    index = demo_bot._index
    pruned_rerank = QuestionIndex._rerank
    compared = []

    def compare(self: QuestionIndex, query: Query, top: list[tuple[float, int]], *rest: Any) -> Any:
        result = pruned_rerank(self, query, top, *rest)
        assert result == _rerank_every_wording(self, query, top, *rest), query.normalized
        compared.append(len(top))
        return result

    monkeypatch.setattr(QuestionIndex, "_rerank", compare)
    for text in demo_texts:
        for limit in (1, 3, 5, 10):
            index.search(demo_bot.normalize(text), limit)
    assert len(compared) > 2000


def test_features_with_the_same_postings_share_one_list(demo_bot: Bot) -> None:
    features = demo_bot._index._features
    by_docs: dict[bytes, set[int]] = {}
    for docs, _, _, _, number in features.values():
        by_docs.setdefault(docs.tobytes(), set()).add(number)
    assert all(len(numbers) == 1 for numbers in by_docs.values())
    assert len(by_docs) < 0.8 * len(features)  # bigram and pinyin bigram mostly coincide
    # (b:开户 and p:kai_hu no longer coincide: a KB wording spells 开户 as the homophone 开护.)
    same = [info for info in features.values() if info[4] == features["b:转账"][4]]
    assert features["p:zhuan_zhang"] in same and all(info[0] is same[0][0] for info in same)


_RANK_KB_FRAGMENTS = """
import json
from bot import Bot, load_demo_kb
kb = load_demo_kb()
bot = Bot(kb)
texts = [t for e in kb.entries for w in e.all_questions for t in (w[1:], w[:-1], w[: len(w) // 2])]
print(json.dumps([[(m.entry.id, m.score) for m in bot.rank(t, 10)] for t in texts]))
"""


def test_scores_and_ties_do_not_depend_on_the_string_hash_seed() -> None:
    """Sums over sets of features used to follow set order, which follows the per-process hash
    seed: the last bits of scores, and so the order of entries that tie, varied between hub
    processes. Two seeds must now give the same rankings, bit for bit."""
    runs = [
        subprocess.run(
            [sys.executable, "-c", _RANK_KB_FRAGMENTS],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[2],
        ).stdout
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1]
    assert len(json.loads(runs[0])) > 7000


def test_search_and_respond_reuse_one_tokenisation(demo_bot: Bot, demo_texts: list[str]) -> None:
    normalizer = demo_bot.normalizer
    extractor = demo_bot.extractor
    index = demo_bot._index
    for text in demo_texts[:100]:
        assert normalizer.normalize_simplified(normalizer.simplify(text)) == normalizer.normalize(
            text
        )
        normalized = normalizer.normalize(text)
        words, feats = extractor.analyze(normalized)
        assert words == extractor.canonical_words(normalized)
        assert feats == extractor.features(normalized)
        assert index.unknown_share_of(index.analyze(normalized)) == index.unknown_share(normalized)
        assert index.search(normalized, 5) == index.search_query(index.analyze(normalized), 5)


def test_lexicon_phrases_added_for_the_fresh_tuning_third() -> None:
    from bot.signals import negative_score

    assert asks_for_human("转接一下客服人员")
    assert asks_for_human("机器人回答不了，换个人")
    assert negative_score("你们这骗人的吧") >= 2.0
    assert asks_about_own_account("帮我看看那笔转账到哪了")
    assert mentions_own_account("那笔委托怎么没成交")


def test_keyword_category_by_first_character_equals_testing_every_keyword(
    demo_bot: Bot, demo_kb: KnowledgeBase, demo_texts: list[str]
) -> None:
    def every_keyword(text: str) -> str | None:
        text = "".join(text.split())
        best, best_score = None, 0
        for category, words in CATEGORY_KEYWORDS.items():
            score = sum(len(w) for w in words if w in text)
            if score > best_score:
                best, best_score = category, score
        return best

    texts = demo_texts + [w for e in demo_kb.entries for w in e.all_questions]
    texts.append("两融账户开户交易密码佣金基金定投新股中签银证转账投诉风险测评")
    for text in texts:
        normalized = demo_bot.normalize(text)
        assert keyword_category(normalized) == every_keyword(normalized), text


def test_jieba_route_without_hmm_equals_jieba(
    demo_bot: Bot, demo_kb: KnowledgeBase, demo_texts: list[str]
) -> None:
    tokenizer = demo_bot.extractor._tokenizer
    texts = [demo_bot.normalize(t) for t in demo_texts]
    texts += [demo_bot.normalize(w) for e in demo_kb.entries for w in e.all_questions]
    texts += [t[::-1] for t in texts]  # other character sequences, same vocabulary
    texts += ["", "  ", "etf基金a股 t+1 规则", "x+y#z&1.5%-2 开户\r\n两融", "abc123 忘了密码 ok"]
    for text in texts:
        assert cut_without_hmm(tokenizer, text) == tokenizer.lcut(text, HMM=False), text


def test_compiled_lexicons_find_every_phrase() -> None:
    for phrase in EXPLICIT_HUMAN_PHRASES:
        assert asks_for_human(f"你好{phrase}吧"), phrase
    for phrase in PERSONAL_REQUEST_PHRASES:
        assert asks_about_own_account(f"能{phrase}那个"), phrase
    for phrase in OWN_ACCOUNT_MARKERS:
        assert mentions_own_account(f"请问{phrase}东西"), phrase
    assert not asks_for_human("人工智能选股靠谱吗")
    assert not asks_about_own_account("怎么查询持仓")
    assert not mentions_own_account("怎么查询持仓")


@pytest.mark.parametrize(
    "text",
    [
        "能不能设个跌到某个价就自动帮我卖掉",  # a conditional order: a feature, asked about
        "有没有止盈单，涨到目标价自动帮我卖",
        "客户经理让我把钱打到他个人卡上，他帮我操作，这合规吗",  # someone else acting
        "我女儿陪我去的，她替我办的开户手续，算数吗",
    ],
)
def test_a_feature_or_someone_else_acting_is_not_a_request_to_act(text: str) -> None:
    assert not asks_about_own_account(text)


@pytest.mark.parametrize(
    "text", ["你帮我卖掉那只票", "麻烦帮我查一下佣金", "请替我撤单", "他说的不对，帮我改回来"]
)
def test_requests_to_act_on_the_account_are_still_found(text: str) -> None:
    assert asks_about_own_account(text)


def test_long_posting_lists_reach_candidates_through_their_wordings(
    demo_kb: KnowledgeBase, demo_bot: Bot
) -> None:
    # A tiny long-list limit sends most features down the path a 10,000-entry KB takes.
    weights = ScoringWeights(long_posting=3, max_candidates=40)
    bot = Bot(
        demo_kb,
        BotConfig(weights=weights),
        normalizer=demo_bot.normalizer,
        extractor=demo_bot.extractor,
    )
    index = bot._index
    features = index._features
    long_features = {f for f, info in features.items() if len(info[0]) > 3}
    assert len(long_features) > 100
    for doc in range(0, index.size, 7):
        held = index._doc_long[doc]
        assert set(held) == {f for f in long_features if doc in set(features[f][0])}
        order = sorted(held, key=lambda f: (len(features[f][0]), features[f][4], f))
        assert list(held) == order
    found = 0
    for entry in demo_kb.entries[:60]:
        found += bot.rank(entry.question, 1)[0].entry.id == entry.id
    assert found >= 55  # its own standard question, even with most features deferred


def test_common_lists_add_to_candidates_what_a_full_walk_adds(
    demo_kb: KnowledgeBase, demo_bot: Bot, demo_texts: list[str]
) -> None:
    # Common features (long lists of a small KB) create no candidates once there are enough,
    # but the candidates they reach get every weight, in the same order as when every list
    # creates candidates: a wording found by both scores the same to the last bit.
    full_walk = Bot(
        demo_kb,
        BotConfig(weights=ScoringWeights(common_posting=UNPRUNED)),
        normalizer=demo_bot.normalizer,
        extractor=demo_bot.extractor,
    )._index
    index = demo_bot._index
    assert index.weights.common_posting < max(len(info[0]) for info in index._features.values())
    same = differ = 0
    for text in demo_texts:
        query = index.analyze(demo_bot.normalize(text))
        full = {(m.entry.id, m.wording): m for m in full_walk.search_query(query, limit=10)}
        for m in index.search_query(query, limit=10):
            other = full.get((m.entry.id, m.wording))
            if other is not None:
                assert (m.score, m.overlap, m.ratio, m.partial, m.coverage) == (
                    other.score,
                    other.overlap,
                    other.ratio,
                    other.partial,
                    other.coverage,
                ), text
                same += 1
            else:
                differ += 1
    assert same > 10 * differ  # the cut changes the lower places of a few rankings only
