"""The per-query shortcuts in matching change no result: pruned fuzzy re-ranking, one
tokenisation per message, one simplification per message, regex-compiled lexicons."""

import pytest

from bot import Bot, BotConfig, KnowledgeBase, ScoringWeights
from bot.eval import load_demo_queries
from bot.signals import (
    EXPLICIT_HUMAN_PHRASES,
    OWN_ACCOUNT_MARKERS,
    PERSONAL_REQUEST_PHRASES,
    asks_about_own_account,
    asks_for_human,
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
        assert list(held) == sorted(held, key=lambda f: (len(features[f][0]), f))
    found = 0
    for entry in demo_kb.entries[:60]:
        found += bot.rank(entry.question, 1)[0].entry.id == entry.id
    assert found >= 55  # its own standard question, even with most features deferred
