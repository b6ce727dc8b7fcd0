"""Bot decisions: retrieval, thresholds, handoff triggers, suggestions, suitability, intents,
state, and bad input."""

from dataclasses import fields, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import RISK_DISCLAIMER, Bot, BotConfig, BotState, KBEntry, KnowledgeBase
from bot.signals import asks_for_human, negative_score

FRESH = BotState()


def test_retrieval_finds_entry_through_typos_script_and_wording(demo_bot: Bot) -> None:
    assert demo_bot.rank("股市幾點開盤")[0].entry.id == "trd_hours"
    assert demo_bot.rank("打新要多少市值")[0].entry.id == "ipo_quota"
    # homophone typo: 开护 (kāi hù) for 开户
    assert demo_bot.rank("网上怎么开护")[0].entry.category == "account"
    assert demo_bot.rank("forgot password 怎么办")[0].entry.category == "password_app"


def test_confident_match_is_answered_and_resets_misses(demo_bot: Bot) -> None:
    reply = demo_bot.respond("A股交易时间是几点", BotState(misses=1), "C3")
    assert reply.action == "answer"
    assert reply.entry_id == "trd_hours"
    assert reply.confidence >= demo_bot.config.answer_threshold
    assert "9:30" in reply.text
    assert reply.intent == "trading" and reply.handoff_reason is None
    assert reply.state == BotState(
        misses=0, last_intent="trading", last_entry_id="trd_hours", turns=1
    )


def test_thresholds_decide_between_answer_suggest_and_handoff(demo_bot: Bot) -> None:
    text = "A股交易时间是几点"
    conf = demo_bot.respond(text, FRESH, "C3").confidence
    just_above = demo_bot.with_config(replace(demo_bot.config, answer_threshold=conf + 0.01))
    suggest = just_above.respond(text, FRESH, "C3")
    assert suggest.action == "suggest"
    assert suggest.suggestions[0].entry_id == "trd_hours"
    assert 1 <= len(suggest.suggestions) <= 3
    assert suggest.state.misses == 1
    too_high = demo_bot.with_config(
        replace(demo_bot.config, answer_threshold=1.5, suggest_threshold=conf + 0.01)
    )
    handoff = too_high.respond(text, FRESH, "C3")
    assert handoff.action == "handoff" and handoff.handoff_reason == "low_confidence"


def test_did_you_mean_is_never_an_empty_list(demo_bot: Bot) -> None:
    # The lead over the next entry lifts the confidence (0.66) over a suggest bar of 0.5, but
    # no entry reaches the 0.375 a suggestion needs: hand over rather than offer nothing.
    strict = demo_bot.with_config(replace(demo_bot.config, suggest_threshold=0.5))
    text = "孩子作业不会写"
    reply = strict.respond(text, FRESH, None)
    assert strict.rank(text, 1)[0].score < 0.375 and reply.confidence >= 0.5
    assert reply.action == "handoff" and reply.handoff_reason == "low_confidence"
    assert reply.suggestions == ()


def test_a_weak_match_with_nothing_near_is_not_answered() -> None:
    # One entry shares a word with the message and no other entry anything: the lead is the
    # whole score, so the confidence reads 0.88 for a 0.30 match. It is offered at most. (The
    # demo KB's example, "写个请假条", meets more entries since the fifteenth session's wordings.)
    bot = Bot(
        KnowledgeBase(
            [
                KBEntry("acc", "开户需要什么材料", "带身份证和银行卡。", ("开户要带什么",)),
                KBEntry("trd", "交易时间是几点", "9:30-15:00。", ("几点开盘",)),
                KBEntry("fee", "佣金怎么收", "按成交金额收取。", ("手续费多少",)),
            ]
        )
    )
    text = "这份材料写得好"
    ranked = bot.rank(text, 5)
    assert len(ranked) == 1 and ranked[0].score < bot.config.suggest_threshold
    reply = bot.respond(text, FRESH, None)
    assert reply.confidence >= bot.config.answer_threshold
    assert reply.action != "answer" and reply.entry_id is None


def test_repeated_misses_hand_over(demo_bot: Bot) -> None:
    strict = demo_bot.with_config(replace(demo_bot.config, answer_threshold=1.5))
    first = strict.respond("A股交易时间是几点", FRESH, None)
    assert first.action == "suggest"
    second = strict.respond("A股交易时间是几点", first.state, None)
    assert second.action == "handoff" and second.handoff_reason == "repeated_miss"
    assert second.state.misses == 0


@pytest.mark.parametrize(
    "text", ["转人工", "我要人工客服", "轉人工服務", "找真人", "human agent please", "人工服务"]
)
def test_explicit_requests_hand_over(demo_bot: Bot, text: str) -> None:
    reply = demo_bot.respond(text, FRESH, "C3")
    assert reply.action == "handoff" and reply.handoff_reason == "explicit"


@pytest.mark.parametrize(
    ("text", "entry_id"),
    [
        ("你是真人吗", "gen_bot_intro"),
        ("客户经理态度不好", "cmp_advisor"),
        ("人工客服几点上班", "gen_hotline"),
        ("我要客服电话", "gen_hotline"),  # the number, not a person now
        ("你是AI还是真人在打字", "gen_bot_intro"),  # whether it is a person
        ("你们客服电话是多少 人工啥时候上班", "gen_hotline"),  # when the desk works
    ],
)
def test_questions_about_people_are_not_requests_for_one(
    demo_bot: Bot, text: str, entry_id: str
) -> None:
    reply = demo_bot.respond(text, FRESH, "C3")
    assert reply.handoff_reason != "explicit"
    assert reply.action == "answer" and reply.entry_id == entry_id


@pytest.mark.parametrize(
    "text",
    [
        "帮我找客户经理",
        "联系我的投资顾问",
        "我要找真人",
        # Managers, specialists and call-backs (twelfth-session follow-up).
        "让你们领导来跟我说",
        "找一下你们负责人",
        "麻烦安排个专员",
        "尽快给我回个电话",
        "有空打电话给我",
        "请致电我 139 的号码",
        "我想和你们的业务主管当面沟通",
        "能不能跟懂期权的老师视频一下",
        "别让机器应付我了",
        "麻烦安排个工作人员跟我对接一下",  # staff, a call, a service agent (fourteenth session)
        "有空拨我手机",
        "帮我接一下你们客服小姐姐",
        "我要跟有血有肉的工作人员讲",
        "叫你们大堂经理过来",  # a named desk's manager, 喊, anyone, passed on (fifteenth session)
        "喊你们经理出来",
        "叫个人来处理一下",
        "麻烦把我转给你们柜台",
        "主管在吗？叫他过来",  # the ninth blind file's classes
        "能不能跟人说话",
        "我要找上次帮我办业务的那位李经理",
        "帮我接柜台的工作人员",
    ],
)
def test_requests_to_reach_a_person_hand_over(demo_bot: Bot, text: str) -> None:
    assert demo_bot.respond(text, FRESH, "C3").handoff_reason == "explicit"


@pytest.mark.parametrize(
    ("text", "entry_id"),
    [("怎么联系你们", "gen_hotline"), ("怎么打电话给你们", "gen_hotline")],
)
def test_asking_how_to_reach_the_firm_is_answered(demo_bot: Bot, text: str, entry_id: str) -> None:
    reply = demo_bot.respond(text, FRESH, "C3")
    assert reply.action == "answer" and reply.entry_id == entry_id


def test_moving_the_account_elsewhere_is_not_a_request_for_a_person() -> None:
    assert asks_for_human("麻烦把我转给你们柜台")
    assert not asks_for_human("怎么把我转到别的券商")
    assert not asks_for_human("能把我转到工商银行存管吗")


def test_ai_mention_is_not_a_human_request(demo_bot: Bot) -> None:
    assert (
        demo_bot.respond("你们用的人工智能吗 A股交易时间是几点", FRESH, "C3").handoff_reason
        != "explicit"
    )


@pytest.mark.parametrize(
    "text",
    [
        "骗子公司，把钱退回来",
        "你们这破系统垃圾死了",
        "气死我了我要投诉",
        "这就是你们的服务？离谱",
        "都是被你们害得血本无归",
        "打了三次电话都说等通知，什么态度",
        "再不给个说法我就去证监会",
        "说了半天全是废话",
        "系统出错害我少赚了 你们得赔",
        "把客户当猴耍，我要发到网上让大家都看看",
        "等着收律师函吧",  # a threat of legal action
        "这事没完，我们法院见",
        "呵呵，真智能啊，问啥都答非所问",  # about the bot's answers
        "等了半小时没人理，人都死哪去了",  # being ignored
        "佣金收得太黑了吧",  # unfair charges, conscience, sarcasm (fifteenth session)
        "你们还有没有良心",
        "呵呵，真无语",
        "你说了等于没说",
        "这系统纸糊的吧",
    ],
)
def test_negative_sentiment_hands_over_to_complaints(demo_bot: Bot, text: str) -> None:
    reply = demo_bot.respond(text, FRESH, "C3")
    assert reply.action == "handoff" and reply.handoff_reason == "negative_sentiment"
    assert reply.intent == "complaints"


def test_neutral_complaint_question_still_gets_answer(demo_bot: Bot) -> None:
    reply = demo_bot.respond("投诉电话是多少", FRESH, "C3")
    assert reply.action != "handoff"
    # 滚 in a fund or trading word (滚动, 利滚利) is no insult.
    assert negative_score("分红想滚动投资进去") == 0.0
    assert negative_score("你们给我滚") >= 2.0


@pytest.mark.parametrize(
    "text", ["额", "嗯嗯 好的", "哦哦，知道了", "OK", "收到了 拜拜", "早上好", "哦，原来如此"]
)
def test_acknowledgements_get_the_prompt_not_an_entry(demo_bot: Bot, text: str) -> None:
    reply = demo_bot.respond(text, FRESH, "C3")
    assert reply.action == "suggest" and reply.suggestions == () and reply.entry_id is None
    assert reply.text == demo_bot.respond("你好", FRESH, "C3").text


def test_personal_account_requests_hand_over(demo_bot: Bot) -> None:
    reply = demo_bot.respond("帮我查一下我的佣金是多少", FRESH, "C3")
    assert reply.action == "handoff" and reply.handoff_reason == "personal"
    assert reply.intent == "fees"
    # Without "帮我" or "的": looking something up about the investor is still theirs.
    reply = demo_bot.respond("看下我目前两融利率多少", FRESH, "C3")
    assert reply.action == "handoff" and reply.handoff_reason == "personal"


@pytest.mark.parametrize(
    "text",
    [
        "上回反映的转账问题处理了吗",
        "我前几天提交的申请有结果了吗",
        "昨天说的那个事咋样了",
        "我卡里的钱怎么少了一千",
        "我今年的分红被扣了多少税",
        "我上个月的手续费被扣了两次",
        "我11月3号取的钱还没回到卡上",
        "我前几天申请开创业板批了没",
        "上次来电说三天内答复 到今天还是没消息",
        "我信用账户现在欠多少",
        "上周三提交的转户申请办完了没",
        "九月份提的降佣申请，到现在批下来没有",  # an earlier request and a state word
        "上周四提交的降佣金申请，审批到哪一步了",
        "我提额申请交了三天了，批了没",  # their own application, submitted
        "我3号在网上申请的销户到现在还没办好，卡在哪了",
        "我港股通是昨天申请的，审核过了没",
        "我提交的专业投资者申请被拒了 具体哪份材料不行",
        # Asking staff to carry out an operation on the account.
        "手续费多扣了12块，帮我退一下",
        "开户审核三天了，帮我催一下",
        "帮我核实一下这笔费用",
        # Fifteenth session: part of a month, 帮忙, the firm asked to look, the statement.
        "上个月底提交的转户申请办好了吗",
        "帮忙处理一下转账失败的事",
        "你们后台查一下 佣金费率是不是没改过来",
        "对账单上多了一笔利息扣款是怎么回事",
        "上礼拜提交的转户申请办好了没",
        "把我多扣的钱退回来",
    ],
)
def test_follow_ups_and_own_money_go_to_a_person(demo_bot: Bot, text: str) -> None:
    reply = demo_bot.respond(text, FRESH, "C3")
    assert reply.action == "handoff" and reply.handoff_reason == "personal"


@pytest.mark.parametrize(
    ("text", "entry_id"),
    [
        ("投诉进度在哪里查", "cmp_progress"),
        ("怎么查我的佣金", "fee_commission"),
        ("在哪看我的风险等级", "ra_result_view"),
        ("去哪查我的委托记录", "trd_history"),
    ],
)
def test_how_to_follow_up_stays_answered(demo_bot: Bot, text: str, entry_id: str) -> None:
    reply = demo_bot.respond(text, FRESH, "C3")
    assert reply.action == "answer" and reply.entry_id == entry_id


@pytest.mark.parametrize("text", ["", "   \n\t", "😀😀😀", "！？。。。"])
def test_empty_messages_get_a_prompt_then_handoff(demo_bot: Bot, text: str) -> None:
    first = demo_bot.respond(text, FRESH, None)
    assert first.action == "suggest" and first.text and first.entry_id is None
    assert first.handoff_reason is None and first.state.misses == 1
    second = demo_bot.respond(text, first.state, None)
    assert second.action == "handoff" and second.handoff_reason == "empty"


@pytest.mark.parametrize("text", ["你好", "在吗？", "您好，请问"])
def test_greeting_only_gets_the_prompt(demo_bot: Bot, text: str) -> None:
    reply = demo_bot.respond(text, FRESH, None)
    assert reply.action == "suggest" and reply.suggestions == () and "您好" in reply.text
    assert reply.state.misses == 1


def test_very_long_and_mixed_language_messages(demo_bot: Bot) -> None:
    long_text = "请问A股交易时间是几点" + "啊" * 10_000
    reply = demo_bot.respond(long_text, FRESH, "C3")
    assert reply.entry_id in (None, "trd_hours")
    mixed = demo_bot.respond("How do I reset my 交易密码? thanks", FRESH, "C3")
    assert mixed.intent == "password_app"


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300))
def test_respond_never_crashes(text: str) -> None:
    bot = _SHARED["bot"]
    reply = bot.respond(text, FRESH, None)
    assert reply.action in ("answer", "suggest", "handoff")
    assert 0.0 <= reply.confidence <= 1.0 and reply.text


_SHARED: dict[str, Bot] = {}


@pytest.fixture(autouse=True)
def _share_bot(demo_bot: Bot) -> None:
    _SHARED["bot"] = demo_bot


def test_suitability_guard_blocks_product_above_tolerance(demo_bot: Bot) -> None:
    text = "雪球结构产品是什么风险大吗"
    assert demo_bot.rank(text)[0].entry.id == "wlt_structured_product"  # R5
    blocked = demo_bot.respond(text, FRESH, "C3")
    assert blocked.action == "handoff" and blocked.handoff_reason == "suitability"
    assert "适当性" in blocked.text and "R5" in blocked.text and "C3" in blocked.text
    unknown = demo_bot.respond(text, FRESH, None)
    assert unknown.handoff_reason == "suitability" and "C1" in unknown.text
    allowed = demo_bot.answer_entry("wlt_structured_product", FRESH, "C5")
    assert allowed.action == "answer" and RISK_DISCLAIMER in allowed.text


def test_unknown_customer_risk_is_c1(demo_bot: Bot) -> None:
    assert demo_bot.answer_entry("wlt_money_fund", FRESH, None).action == "answer"  # R1
    assert demo_bot.answer_entry("wlt_bond_fund", FRESH, None).action == "handoff"  # R2
    assert demo_bot.answer_entry("wlt_bond_fund", FRESH, "c2").action == "answer"
    assert demo_bot.answer_entry("wlt_bond_fund", FRESH, "X9").action == "handoff"


def test_non_product_answers_carry_no_disclaimer(demo_bot: Bot) -> None:
    reply = demo_bot.answer_entry("trd_hours", FRESH, None)
    assert RISK_DISCLAIMER not in reply.text


def test_unknown_entry_click_hands_over(demo_bot: Bot) -> None:
    assert demo_bot.answer_entry("nope", FRESH, None).action == "handoff"


def test_agent_assist_suggestions(demo_bot: Bot) -> None:
    suggestions = demo_bot.suggest("客户问雪球产品风险大不大", "C2")
    assert len(suggestions) == 3
    assert suggestions[0].entry_id == "wlt_structured_product"
    assert suggestions[0].suitable is False and suggestions[0].risk_level == "R5"
    confidences = [s.confidence for s in suggestions]
    assert confidences == sorted(confidences, reverse=True)
    assert all(0.0 <= c <= 1.0 for c in confidences)
    assert demo_bot.suggest("", None) == ()


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("两融平仓线是多少", "margin"),
        ("我想买点基金", "wealth"),
        ("银证转账转不进去", "transfer"),
        ("中签了怎么缴款", "ipo"),
        ("佣金万几", "fees"),
        ("app闪退", "password_app"),
        ("风险测评过期", "risk_assessment"),
        ("怎么销户", "account"),
        ("撤单", "trading"),
    ],
)
def test_intent_categories(demo_bot: Bot, text: str, category: str) -> None:
    assert demo_bot.classify_intent(text) == category


def test_bot_state_fields_are_the_ones_respond_carries() -> None:
    # `respond` builds the next state positionally (bot/engine.py): a new field must be added
    # there as well as here.
    assert [f.name for f in fields(BotState)] == ["misses", "last_intent", "last_entry_id", "turns"]
    reply = Bot(KnowledgeBase([KBEntry("a", "开户流程", "…")])).respond(
        "开户流程", BotState(misses=1, last_intent="x", last_entry_id="y", turns=4), None
    )
    assert reply.state == BotState(0, "general", "a", 5)


def test_intent_none_for_nonsense_and_kept_from_state(demo_bot: Bot) -> None:
    assert demo_bot.classify_intent("😀") is None
    reply = demo_bot.respond("😀", BotState(last_intent="margin"), None)
    assert reply.intent == "margin"


def test_disabled_entries_are_never_matched() -> None:
    kb = KnowledgeBase(
        [
            KBEntry("on", "怎么开户", "开户答案"),
            KBEntry("off", "怎么销户", "销户答案", enabled=False),
        ]
    )
    bot = Bot(kb, BotConfig())
    assert all(m.entry.id != "off" for m in bot.rank("怎么销户"))
    assert bot.answer_entry("off", FRESH, None).action == "handoff"


def test_with_kb_swaps_the_index(demo_bot: Bot) -> None:
    smaller = demo_bot.with_kb(demo_bot.kb.without("trd_hours"))
    assert all(m.entry.id != "trd_hours" for m in smaller.rank("A股交易时间是几点"))
    assert demo_bot.rank("A股交易时间是几点")[0].entry.id == "trd_hours"


def test_empty_kb_hands_over() -> None:
    reply = Bot(KnowledgeBase()).respond("怎么开户", FRESH, None)
    assert reply.action == "handoff" and reply.handoff_reason == "low_confidence"


def test_own_account_question_without_confident_match_hands_over(demo_bot: Bot) -> None:
    # Nothing is confident here, so each message is in the "did you mean" band.
    unsure = demo_bot.with_config(replace(demo_bot.config, answer_threshold=1.5))
    generic = unsure.respond("交易密码是多少", FRESH, "C3")
    assert generic.action == "suggest"
    own = unsure.respond("我的交易密码是多少", FRESH, "C3")
    assert own.action == "handoff" and own.handoff_reason == "personal"
    assert own.intent == "password_app"
    assert unsure.respond("我账户里的钱怎么少了", FRESH, "C3").handoff_reason == "personal"
    # A case that has not happened asks for the rule (fifteenth session).
    for text in ("跌得多了券商会不会卖掉我的股票", "万一公司倒闭了我的钱怎么办"):
        reply = unsure.respond(text, FRESH, "C3")
        assert reply.action == "suggest" and reply.handoff_reason is None, text
    assert unsure.respond("我的钱什么情况", FRESH, "C3").handoff_reason == "personal"


def test_own_account_question_with_confident_match_is_answered(demo_bot: Bot) -> None:
    reply = demo_bot.respond("我的资金账号在哪看", FRESH, "C3")
    assert reply.action == "answer" and reply.entry_id == "acc_number"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The state of the own account or of one operation goes to a person whatever the
        # confidence. These were answered with a confident entry's rule (balances, transfer
        # delays, lottery results, unfilled orders) before the check …
        ("我账户可用余额还有多少", "personal"),
        ("我昨天转出去的钱现在到哪了", "personal"),
        ("我申购的那几只新股中了没", "personal"),
        ("这笔买入委托怎么还没成交", "personal"),
        ("查一下我还欠多少融资款项", "personal"),
        ("我的证券账户怎么被冻结了", "personal"),
        # … these were offered a "did you mean" no entry of which can see the operation.
        ("为什么扣了我38块钱", "personal"),
        ("我存进去的两万块不见了", "personal"),
        ("刚才下的卖单成交了没", "personal"),
        # How or where to look it up, and generic questions with 我, are still answered.
        ("我的资金账号怎么查询", "acc_number"),
        ("我的风险等级在哪里看", "ra_result_view"),
        ("委托为什么一直没有成交", "trd_order_not_filled"),
        ("我把交易密码忘记了怎么办", "pwd_forgot_trade"),
        ("前天申购的新股中没中在哪里可以查", "ipo_result"),  # where one can look it up
    ],
)
def test_own_account_state_goes_to_a_person_how_to_stays_answered(
    demo_bot: Bot, text: str, expected: str
) -> None:
    reply = demo_bot.respond(text, FRESH, "C3")
    if expected == "personal":
        assert reply.action == "handoff" and reply.handoff_reason == "personal"
        assert reply.intent is not None
    else:
        assert reply.action == "answer" and reply.entry_id == expected


@pytest.mark.parametrize(
    "text",
    [
        "期货怎么开户",
        "你们招聘客服吗",
        "比特币能在app里买吗",
        "手机话费在哪充值",
        "住房公积金能取出来吗",
        "今天会不会下雪",
        "楼下哪家饭店好",
        "场内期权能交易吗",
        "信托产品有没有",
        "世界杯谁能夺冠",
        "今天国际金价涨了没",
        "深证成指现在多少点",
        "今天茅台收盘价多少",  # a live price
        "人民币兑日元现在多少",  # an exchange rate named by its currencies
        "平安银行现在多少钱一股",
        "明天的高铁票还有吗",
    ],
)
def test_out_of_scope_topic_hands_over_instead_of_did_you_mean(demo_bot: Bot, text: str) -> None:
    reply = demo_bot.respond(text, FRESH, "C3")
    assert reply.action == "handoff" and reply.handoff_reason == "low_confidence"
    assert reply.suggestions == ()


def test_out_of_scope_topic_still_answered_when_the_kb_covers_it() -> None:
    kb = KnowledgeBase(
        [
            KBEntry("fut_open", "期货怎么开户", "请联系我司期货子公司。", ("期货开户流程",)),
            KBEntry("acc_open", "怎么开股票账户", "下载APP开户。"),
        ]
    )
    bot = Bot(kb)
    reply = bot.respond("期货怎么开户", FRESH, None)
    assert reply.action == "answer" and reply.entry_id == "fut_open"
    # A confident match with an entry that does not name the topic is no answer to it.
    assert bot.rank("期货开股票账户")[0].entry.id == "acc_open"
    assert bot.respond("期货开股票账户", FRESH, None).handoff_reason == "low_confidence"
    # Below the answer threshold the same words hand over rather than guess.
    unsure = bot.with_config(replace(bot.config, answer_threshold=1.5))
    assert unsure.respond("期货怎么开户", FRESH, None).handoff_reason == "low_confidence"
