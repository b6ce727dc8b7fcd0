"""Matching features: the securities synonym table, entry-level coverage of the query's words,
and the out-of-vocabulary hand-over check."""

from dataclasses import replace

from bot import Bot, BotConfig, BotState, KBEntry, KnowledgeBase
from bot.features import load_synonyms

FRESH = BotState()


def test_synonym_table_maps_members_to_their_canonical_word(demo_bot: Bot) -> None:
    table = load_synonyms()
    assert table["出金"] == "转出" and table["融资融券"] == "两融" and table["转债"] == "可转债"
    assert "转出" not in table  # a canonical word maps to nothing
    extractor = demo_bot.extractor
    assert "转出" in extractor.canonical_words("怎么出金")
    assert "w:转出" in extractor.features("怎么出金") & extractor.features("怎么转出")
    # The surface form is still visible to the other feature kinds.
    assert "b:出金" in extractor.features("怎么出金")


def test_synonym_lets_a_wording_without_shared_words_match(demo_bot: Bot) -> None:
    kb = KnowledgeBase(
        (
            KBEntry("out", "资金怎么转出到银行", "…", category="transfer"),
            KBEntry("lot", "股票最少买多少", "…", category="trading"),
        )
    )
    bot = demo_bot.with_kb(kb)
    assert [m.entry.id for m in bot.rank("出金到银行")][:1] == ["out"]


def test_entry_coverage_counts_words_spread_over_wordings(demo_bot: Bot) -> None:
    kb = KnowledgeBase(
        (
            KBEntry("both", "融资利率是多少", "…", ("融券费用怎么算",), category="margin"),
            KBEntry("one", "融资是什么", "…", category="margin"),
        )
    )
    bot = demo_bot.with_kb(kb)
    matches = bot.rank("融资和融券")
    by_id = {m.entry.id: m for m in matches}
    # No single wording holds both words, the entry's wordings together do.
    assert by_id["both"].coverage == 1.0
    assert by_id["one"].coverage < 1.0
    assert matches[0].entry.id == "both"


def test_unknown_words_lower_coverage(demo_bot: Bot) -> None:
    assert demo_bot.rank("两融开通条件")[0].coverage == 1.0
    assert demo_bot.rank("两融开通条件和期货开户")[0].coverage < 1.0


def test_out_of_vocabulary_check_hands_over_when_enabled(demo_bot: Bot) -> None:
    off_topic = "集邮怎么开户"  # not in the out-of-scope topic list: only the check catches it
    assert demo_bot.config.unknown_share_threshold == 1.0  # off by default (docs/bot.md)
    assert demo_bot.respond(off_topic, FRESH, "C3").action != "handoff"
    gated = demo_bot.with_config(replace(BotConfig(), unknown_share_threshold=0.6))
    reply = gated.respond(off_topic, FRESH, "C3")
    assert reply.action == "handoff" and reply.handoff_reason == "low_confidence"
    # In-scope questions are untouched by the check.
    assert gated.respond("怎么开户", FRESH, "C3").action == "answer"
    assert gated.respond("A股交易时间是几点", FRESH, "C3").entry_id == "trd_hours"


def test_own_account_markers() -> None:
    from bot.signals import mentions_own_account

    assert mentions_own_account("我的 交易密码是多少")
    assert mentions_own_account("我账户里的钱怎么少了")
    assert not mentions_own_account("交易密码是多少")
    assert not mentions_own_account("我想开户")
    # What the investor did, or had done to them, is about their own account too.
    assert mentions_own_account("我昨天买的基金")
    assert mentions_own_account("我转出去的钱")
    assert mentions_own_account("为什么扣了我50块")
    assert not mentions_own_account("我能不能买科创板股票")


def test_own_situation_needs_an_owner_a_state_and_no_look_up() -> None:
    from bot.signals import asks_about_own_situation as own

    # An owner (me, or one particular operation) and an account or operation state.
    assert own("我的持仓市值是多少")
    assert own("我的两融账户被强平了")
    assert own("那笔银证转账现在到哪了")
    assert own("前几天赎回的钱怎么还没到")
    assert own("这单成交了没")
    # A state without an owner is the general rule the KB explains.
    assert not own("卖了股票为什么扣了一笔税")
    assert not own("银证转账一般多久能到账")
    # An owner without a state, or asking how or where to look it up.
    assert not own("我的开户营业部是哪家")
    assert not own("我的资金账号是多少 在哪看")
    assert not own("我的持仓怎么查")
    assert not own("这只股票能融资买吗")


def test_out_of_scope_topics() -> None:
    from bot.signals import out_of_scope_topic

    assert out_of_scope_topic("期货 怎么开户") == "期货"
    assert out_of_scope_topic("你们招聘吗") == "招聘"
    assert out_of_scope_topic("股票怎么开户") is None


def test_negation_tells_neighbouring_entries_apart(demo_bot: Bot) -> None:
    kb = KnowledgeBase(
        (
            KBEntry("trf_time", "转出的钱多久到账", "…", ("资金转出几点到账",)),
            KBEntry("trf_missing", "转出的钱没到账怎么办", "…", ("资金转出没有到账",)),
        )
    )
    bot = demo_bot.with_kb(kb)
    assert "没" in demo_bot.extractor.canonical_words("钱未到账")  # 未 folds into 没
    assert bot.rank("钱转出了未到账")[0].entry.id == "trf_missing"
    assert bot.rank("转出的钱多久能到")[0].entry.id == "trf_time"


def test_synonym_words_come_out_of_jieba_whole(demo_bot: Bot) -> None:
    extractor = demo_bot.extractor
    # A canonical word ("到账") was cut into 到 + 账 when only members were added.
    assert "到账" in extractor.canonical_words("什么时候到账")
    # A domain word is not eaten by a synonym that overlaps it (亏本 + 金).
    assert extractor.canonical_words("雪球会亏本金") == ["雪球", "亏损", "本金"]
    assert extractor.canonical_words("视频认证几点下班")[0] == "视频见证"
