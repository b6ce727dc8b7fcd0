"""Lexicon signals read from a message besides KB matching: explicit requests for a human,
negative sentiment, and category keywords used when no KB entry matches well."""

from __future__ import annotations

import re
from collections.abc import Mapping

# Phrases asking for a person. Matched on simplified, lower-cased text with spaces removed.
EXPLICIT_HUMAN_PHRASES: tuple[str, ...] = (
    "转人工",
    "人工客服",
    "人工服务",
    "找人工",
    "要人工",
    "接人工",
    "换人工",
    "呼叫人工",
    "人工坐席",
    "人工座席",
    "人工",
    "找真人",
    "真人",
    "活人",
    "找客服",
    "客服经理",
    "找投顾",
    "不要机器人",
    "转接",
    "换个人",
    "换人",
    "客服人员",
    "别用机器人",
    "机器人听不懂",
    "humanagent",
    "realperson",
    "talktohuman",
)
# "人工" alone also appears in "人工智能"; those phrases cancel the match. Asking whether the
# bot is a person, or when the human desk is open, is a question the KB answers.
_NOT_EXPLICIT: tuple[str, ...] = (
    "人工智能",
    "人工费",
    "是真人吗",
    "是不是真人",
    "是真人还是",
    "人工客服几点",
    "人工几点",
    "人工服务时间",
    "人工客服电话",
    "人工客服热线",
)

# Requests to act on or look into the investor's own account: the bot has no account access,
# so these go to a person even when a KB entry looks similar ("帮我查一下我的佣金").
PERSONAL_REQUEST_PHRASES: tuple[str, ...] = (
    "帮我查",
    "帮我看",
    "给我查",
    "帮忙查",
    "查一下我的",
    "查下我的",
    "看下我的",
    "看一下我的",
    "帮我下单",
    "帮我下一单",
    "帮我买",
    "帮我卖",
    "帮我把",
    "帮我改",
    "帮我转",
    "帮我操作",
    "帮我办",
    "替我",
    "代我",
)

# The investor talking about their own account, holdings or money ("我的交易密码是多少",
# "我账户里的钱为什么少了"). Only used when no KB entry is a confident match: a generic
# "did you mean" cannot answer a question about one person's account, an advisor who can see
# it can. A confident match (e.g. "我的资金账号在哪看") is still answered from the KB.
OWN_ACCOUNT_MARKERS: tuple[str, ...] = (
    "我的",
    "我账户",
    "我帐户",
    "我账号",
    "我帐号",
    "我户里",
    "我持仓",
    "我的钱",
    "我这个账户",
    "我名下",
    # A particular transaction ("那笔转账", "这笔委托") is the investor's own.
    "那笔",
    "这笔",
)

# Topics a securities firm's service desk does not cover (other licences, other trades,
# chit-chat). Only used below the answer threshold, so a firm whose KB does cover one of
# them (a futures subsidiary's entries, say) still answers confident matches.
OUT_OF_SCOPE_TOPICS: tuple[str, ...] = (
    "期货",
    "外汇",
    "炒汇",
    "比特币",
    "虚拟币",
    "虚拟货币",
    "加密货币",
    "数字货币",
    "彩票",
    "贷款",
    "信用卡",
    "房贷",
    "车贷",
    "招聘",
    "应聘",
    "求职",
    "面试",
    "实习",
    "天气",
    "笑话",
    "小可爱",
    # Everyday services and errands (a life-service desk's topics, not a broker's).
    "话费",
    "快递",
    "外卖",
    "机票",
    "火车票",
    "酒店",
    "电影",
    "游戏",
    "写诗",
    "作文",
    "翻译",
    "医院",
    "挂号",
    "社保",
    "医保",
    "公积金",
    "房价",
    "租房",
    "买房",
    "车险",
    "减肥",
    "菜谱",
    "星座",
    "算命",
)

# Weighted negative lexicon: a message at or above `BotConfig.sentiment_threshold` hands over.
# A bare "投诉" scores below the threshold so "投诉电话是多少" still gets the KB answer.
NEGATIVE_LEXICON: Mapping[str, float] = {
    "投诉": 1.0,
    "我要投诉": 2.0,
    "要投诉你们": 3.0,
    "举报": 2.0,
    "太差": 2.0,
    "差劲": 2.0,
    "垃圾": 2.0,
    "骗子": 3.0,
    "骗钱": 3.0,
    "骗人": 3.0,
    "骗我": 3.0,
    "诈骗": 2.0,
    "坑人": 2.0,
    "坑爹": 2.0,
    "气死": 2.0,
    "生气": 1.5,
    "愤怒": 2.0,
    "恶心": 2.0,
    "什么破": 2.0,
    "破系统": 2.0,
    "破app": 2.0,
    "烂透": 2.0,
    "无语": 1.0,
    "失望": 1.5,
    "受够": 2.0,
    "不想用了": 1.5,
    "退钱": 2.0,
    "赔钱": 1.5,
    "赔偿": 1.5,
    "亏死": 1.5,
    "滚": 2.0,
    "妈的": 3.0,
    "tmd": 3.0,
    "他妈": 3.0,
    "靠谱吗你们": 1.5,
    "证监会": 1.5,
    "12386": 1.5,
    "曝光": 2.0,
    "媒体": 1.0,
    "律师": 1.5,
    "起诉": 2.0,
    "黑心": 2.5,
    "欺骗": 2.5,
    "忽悠": 2.0,
    "误导": 1.5,
    "乱扣": 2.0,
    "乱收费": 2.0,
    "!!!": 1.0,
    "！！！": 1.0,
    "？？？": 0.5,
    "???": 0.5,
}

# Keywords per category: the intent when no KB entry is a confident match.
CATEGORY_KEYWORDS: Mapping[str, tuple[str, ...]] = {
    "account": (
        "开户",
        "销户",
        "账户",
        "账号",
        "证券账户",
        "股东账户",
        "身份证",
        "见证",
        "手机号",
        "地址",
        "信息变更",
        "休眠",
        "开通",
    ),
    "trading": (
        "交易",
        "委托",
        "撤单",
        "买入",
        "卖出",
        "涨停",
        "跌停",
        "t+1",
        "竞价",
        "开盘",
        "收盘",
        "停牌",
        "几点",
        "挂单",
        "成交",
        "科创板",
        "创业板",
        "北交所",
        "etf",
        "可转债",
        "港股通",
    ),
    "fees": ("佣金", "手续费", "费用", "印花税", "过户费", "收费", "费率", "万"),
    "margin": ("两融", "融资", "融券", "信用账户", "维持担保", "平仓", "担保比例", "杠杆"),
    "wealth": (
        "基金",
        "理财",
        "产品",
        "收益",
        "净值",
        "申购",
        "赎回",
        "定投",
        "货币基金",
        "债券",
        "资管",
        "国债逆回购",
        "逆回购",
    ),
    "risk_assessment": (
        "风险测评",
        "测评",
        "风险等级",
        "适当性",
        "风险承受",
        "问卷",
        "保守型",
        "激进型",
        "c1",
        "c2",
        "c3",
        "c4",
        "c5",
    ),
    "password_app": (
        "密码",
        "交易密码",
        "资金密码",
        "登录密码",
        "app",
        "登录",
        "登陆",
        "闪退",
        "验证码",
        "升级",
        "下载",
        "卡顿",
        "打不开",
        "指纹",
        "人脸",
        "手机",
    ),
    "transfer": (
        "转账",
        "银证",
        "转入",
        "转出",
        "取钱",
        "取出",
        "提现",
        "存管",
        "银行卡",
        "资金",
        "入金",
        "出金",
    ),
    "ipo": ("新股", "打新", "中签", "申购额度", "市值", "配号", "缴款", "新债", "弃购"),
    "complaints": ("投诉", "举报", "意见", "建议", "不满", "差评", "纠纷", "赔偿"),
}


def _compact(text: str) -> str:
    return "".join(text.split())


# "客户经理" and "投资顾问" are also topics ("客户经理态度不好", "基金投顾是什么"): only a
# request to reach one ("找我的客户经理", "联系一下投资顾问") hands over.
_REACH_A_PERSON = re.compile(r"(找|联系|叫|要|转|接通?)(一下)?(我的)?(客户经理|投资顾问|投顾)")


def _any_of(phrases: tuple[str, ...]) -> re.Pattern[str]:
    """One regex that finds any of the phrases: one scan instead of one `in` per phrase."""
    return re.compile("|".join(re.escape(p) for p in phrases))


# What the investor did or had done to them: "我昨天买的", "我转出去的", "扣了我", "冻结我".
_OWN_DOING = (
    r"我(?:刚才|刚刚|刚|昨天|前天|今天|上周|上个月|前几天|早上|上午|下午)?"
    r"(?:买|卖|转|申购|认购|赎回|委托|下|挂|存|取|提|充|打)(?:进|入|出|过)?(?:去|来)?(?:了|过)?的"
    r"|(?:扣|冻结|限制|封|锁|收|多收|多扣|少给)了?我"
    r"|我(?:还|又)?(?:欠|剩)"
)
# One particular holding or operation ("那只基金", "这单", "上周申购的"), not a product or rule.
_PARTICULAR = (
    r"[那这](?:只|单)|(?:上周|昨天|前天|上个月|前几天|刚才|刚刚)(?:买|卖|转|申购|认购|赎回|委托|下)"
)
# The state of an account or of an operation: a figure only the account shows, something that
# happened to it, or where a pending operation stands.
_ACCOUNT_STATE = re.compile(
    r"(?:还有|还剩|剩下|剩|有|是|欠)多少|余额"
    r"|被(?:扣|冻结|限制|锁|平仓|强平|盗|封)|(?:扣|少|丢|亏|没|不见|消失|冻结|锁|平仓)了"
    r"|还没(?:到|成交|确认|收到|退|返|通过)|没(?:到账|成交|确认|收到|通过)"
    r"|到哪|(?:确认|成功|到账|成交|通过|退回|到|收到|中|中签)了?没|找不到"
)
# Asking how or where to look something up is a procedure the KB explains ("我的资金账号在哪看").
_HOW_TO_LOOK_UP = re.compile(r"(?:怎么|如何|在哪|哪里|去哪|哪儿|在哪里)(?:儿)?(?:查|看)|怎么办理")

_HUMAN = _any_of(EXPLICIT_HUMAN_PHRASES)
_PERSONAL_REQUEST = _any_of(PERSONAL_REQUEST_PHRASES)
_OWN_ACCOUNT = re.compile(_any_of(OWN_ACCOUNT_MARKERS).pattern + "|" + _OWN_DOING)
_OWN_OR_PARTICULAR = re.compile(_OWN_ACCOUNT.pattern + "|" + _PARTICULAR)
_NEGATIVE_LONGEST_FIRST = tuple(sorted(NEGATIVE_LEXICON, key=len, reverse=True))


def asks_for_human(simplified: str) -> bool:
    """True if the text explicitly asks for a person (on NFKC/t2s/lower-cased text)."""
    text = _compact(simplified)
    for blocker in _NOT_EXPLICIT:
        if blocker in text:
            text = text.replace(blocker, "")
    return _HUMAN.search(text) is not None or _REACH_A_PERSON.search(text) is not None


def asks_about_own_account(simplified: str) -> bool:
    """True if the text asks the bot to look up or act on the investor's own account."""
    return _PERSONAL_REQUEST.search(_compact(simplified)) is not None


def mentions_own_account(simplified: str) -> bool:
    """True if the text is about the investor's own account, holdings or money, or about
    something they did or had done to them."""
    return _OWN_ACCOUNT.search(_compact(simplified)) is not None


def asks_about_own_situation(simplified: str) -> bool:
    """True if the text asks about the state of the investor's own account or of one
    particular operation of theirs ("我的持仓市值是多少", "扣了我50块", "那笔赎回款到哪了",
    "前几天赎回的钱怎么还没到"), rather than how or where to look it up. Only someone who
    can see the account can answer; a KB entry, however close, explains the rule, not the case."""
    text = _compact(simplified)
    return (
        _OWN_OR_PARTICULAR.search(text) is not None
        and _ACCOUNT_STATE.search(text) is not None
        and _HOW_TO_LOOK_UP.search(text) is None
    )


def out_of_scope_topic(simplified: str) -> str | None:
    """The first topic the firm's service desk does not cover named in the text, or None."""
    text = _compact(simplified)
    return next((t for t in OUT_OF_SCOPE_TOPICS if t in text), None)


def negative_score(simplified: str) -> float:
    """Sum of lexicon weights found; the longest matching phrase wins where they overlap."""
    text = _compact(simplified)
    score = 0.0
    for phrase in _NEGATIVE_LONGEST_FIRST:
        if phrase in text:
            score += NEGATIVE_LEXICON[phrase]
            text = text.replace(phrase, "\u0000")
    return score


# Keywords by first character, with their category's position and weight: a message looks up
# its own characters instead of testing every keyword (~110) with `in`.
_CATEGORY_NAMES = tuple(CATEGORY_KEYWORDS)
_KEYWORDS_BY_FIRST_CHAR: dict[str, list[tuple[str, int, int]]] = {}
for _number, _words in enumerate(CATEGORY_KEYWORDS.values()):
    for _word in _words:
        _KEYWORDS_BY_FIRST_CHAR.setdefault(_word[0], []).append((_word, _number, len(_word)))


def keyword_category(normalized: str) -> str | None:
    """Category with the most keyword hits (longer keywords weigh more); None if no hit. On a
    tie the category listed first in CATEGORY_KEYWORDS wins."""
    text = _compact(normalized)
    scores = [0] * len(_CATEGORY_NAMES)
    for char in set(text):
        for word, number, weight in _KEYWORDS_BY_FIRST_CHAR.get(char, ()):
            if word in text:
                scores[number] += weight
    best: str | None = None
    best_score = 0
    for category, score in zip(_CATEGORY_NAMES, scores, strict=True):
        if score > best_score:
            best, best_score = category, score
    return best
