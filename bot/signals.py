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
    "别让机器",
    "不要机器",
    "不想跟机器",
    "不想和机器",
    "懂行的人",
    "懂行的同事",
    "懂行的老师",
    "专业的人",
    "找个同事",
    "换个同事",
    "工作人员来",
    # Cantonese: 搵个人 / 搵返个识嘢嘅人 ("find me someone who knows").
    "搵个人",
    "搵返个",
    "识嘢嘅人",
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
    "还是真人",  # "你是AI还是真人", "机器人还是真人"
    "真人客服还是",
    "人工客服几点",
    "人工啥时候",  # when the human desk works
    "人工什么时候",
    "人工几点",
    "人工服务时间",
    "人工客服电话",
    "人工客服热线",
    "聊天记录",
)

# Requests to act on or look into the investor's own account: the bot has no account access,
# so these go to a person even when a KB entry looks similar ("帮我查一下我的佣金").
PERSONAL_REQUEST_PHRASES: tuple[str, ...] = (
    "帮我查",
    "帮我算",
    "给我算",
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
    # Operations only staff can carry out on the account: refund, chase, verify, cancel, unfreeze.
    "帮我退",
    "给我退",
    "帮我催",
    "帮我核",
    "帮我处理",
    "帮我撤",
    "帮我取消",
    "帮我解冻",
    "帮我恢复",
    "帮我加急",
    # The same asked with 帮忙 ("帮忙核对一下", "帮忙处理下").
    "帮忙核",
    "帮忙看下",
    "帮忙看一下",
    "帮忙处理",
    "帮忙催",
    "帮忙退",
    "替我",
    "代我",
)
# "麻烦把我上个月多收的手续费退回来": money of the investor's asked back.
_GIVE_BACK = r"把我[^，。,.？?！!]{0,12}?退(?:回来|给我|还)"

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
    # Where the money sits, in the words investors use ("我账上怎么少了", "我卡里的钱").
    "我账上",
    "我帐上",
    "我户头",
    "我卡里",
    "我卡上",
    # A particular transaction ("那笔转账", "这笔委托") is the investor's own.
    "那笔",
    "这笔",
    # What the investor's own statement shows ("对账单里多了一笔扣费").
    "对账单里",
    "对账单上",
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
    "下雨",
    "下雪",
    "气温",
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
    "好吃",
    "餐厅",
    "饭店",
    "美食",
    "景点",
    "电视剧",
    "足球",
    "篮球",
    "欧冠",
    "世界杯",
    "比赛",
    "首饰",
    "招人",
    "简历",
    # A life decision ("辞职炒股") is the investor's own, to talk over with a person.
    "辞职",
    # Products and services the demo KB has no entry for, though a broker may offer them:
    # another desk's or a later KB's. A firm whose KB has an entry naming one (美股基金 names
    # 美股) still answers from that entry.
    "美股",
    "b股",
    "期权",
    "信托",
    "养老金",
    "重疾",
    "寿险",
    "医疗险",
    "定期存款",
    "存定期",
    "网络投票",
    "强赎",
    "股票质押",
    "股权质押",
    "质押借",
    # Live figures the bot cannot know.
    "汇率",
    "美元兑",
    "兑美元",
    "人民币兑",
    "金价",
    "油价",
    "现在多少点",
    "大盘多少点",
    "股价多少",
    "收盘价多少",
    "开盘价多少",
    "现价多少",
    "多少钱一股",
    # Errands: travel tickets, the weather.
    "高铁",
    "车票",
    "带伞",
)

# Replies that carry no question: an acknowledgement or an interjection ("好吧", "嗯嗯", "额").
# A message made only of these gets the prompt for a question, like a greeting; matching "额"
# against the KB would answer it with the credit-limit (额度) entry.
ACKNOWLEDGEMENTS: frozenset[str] = frozenset(
    {
        "额",
        "呃",
        "嗯",
        "嗯嗯",
        "嗯嗯嗯",
        "哦",
        "哦哦",
        "噢",
        "喔",
        "唔",
        "好",
        "好吧",
        "好的",
        "好滴",
        "行",
        "行吧",
        "可以",
        "知道了",
        "知道",
        "明白",
        "明白了",
        "了解",
        "收到",
        "收到了",
        "拜拜",
        "再见",
        "知道啦",
        "懂了",
        "ok",
        "okay",
        "嗯好",
        "哈哈",
        "哈哈哈",
        "呵呵",
        "原来是这样",
        "原来如此",
        # Greetings of the time of day ("早呀☀️").
        "早",
        "早安",
        "早上好",
        "下午好",
        "晚上好",
    }
)


# A clause strung together from them ("嗯嗯好的", "好的收到").
_ACKNOWLEDGEMENT_RUN = re.compile(
    "(?:" + "|".join(sorted(ACKNOWLEDGEMENTS, key=len, reverse=True)) + ")+"
)


def is_acknowledgement(normalized: str) -> bool:
    """True if every clause of a normalised message is made of acknowledgements and
    interjections only."""
    clauses = normalized.split()
    return bool(clauses) and all(_ACKNOWLEDGEMENT_RUN.fullmatch(c) for c in clauses)


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
    # Not a bare 滚: 滚动, 滚入, 利滚利 are fund and trading words.
    "滚蛋": 2.0,
    "滚开": 2.0,
    "给我滚": 2.0,
    "滚吧": 2.0,
    "滚出去": 2.0,
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
    # About the bot's answers: beside the point, or an insult.
    "答非所问": 2.0,
    "跟没说一样": 2.0,
    "和没说一样": 2.0,
    "等于没说": 2.0,
    "纸糊": 2.0,  # "你们系统是纸糊的吗"
    "智障": 2.0,
    # Threats of legal action.
    "律师函": 2.0,
    "告你们": 2.0,
    "法院见": 2.0,
    "打官司": 2.0,
    "黑心": 2.5,
    # "收这么黑", "你们良心不会痛吗", "有没有良心": charging or treating the investor unfairly.
    "这么黑": 2.0,
    "太黑": 2.0,
    "没良心": 2.0,
    "良心不": 2.0,
    "有没有良心": 2.0,
    "良心呢": 2.0,
    # A sarcastic "呵呵" ("呵呵 真是好券商"): with one more complaint word it hands over.
    "呵呵": 1.0,
    "欺骗": 2.5,
    "忽悠": 2.0,
    "误导": 1.5,
    "乱扣": 2.0,
    "乱收费": 2.0,
    # Blame and exasperation ("全是你们害的", "太离谱了", "半天不回消息").
    "离谱": 2.0,
    # Not 害的 / 害得 alone: 厉害的, 厉害得很.
    "你们害的": 2.0,
    "被你们害": 2.0,
    "害我": 2.0,
    "害得我": 2.0,
    "怪你们": 2.0,
    "什么态度": 2.0,
    "不负责": 2.0,
    "不作为": 2.0,
    "耍流氓": 2.5,
    "黑店": 2.5,
    "欺诈": 2.5,
    "报警": 2.0,
    "维权": 2.0,
    "不回消息": 0.5,
    "没人回": 0.5,  # "投诉了一直没人回" asks how complaints are followed up (a KB entry)
    # Being ignored ("等了半小时没人理", "三天没人理我"): a complaint on its own.
    "没人理": 2.0,
    "没人管": 0.5,
    "等了半天": 1.0,
    "烂服务": 2.0,
    "什么烂": 2.0,
    "一问三不知": 2.0,
    "废话": 2.0,
    "浪费我时间": 2.0,
    "得赔": 2.0,
    "赔我": 2.0,
    "你们赔": 2.0,
    "谁承担": 1.0,
    "谁负责": 1.0,
    # A threat made conditional ("再不处理我就打12386") adds to the threat itself.
    "再不": 1.0,
    "当猴耍": 2.5,
    "耍我": 2.0,
    "前后矛盾": 1.5,
    "微博": 1.5,
    "抖音": 1.5,
    "发到网上": 2.0,
    "让大家都看看": 2.0,
    "记者": 2.0,
    "报社": 2.0,
    "脸书": 1.5,
    "当傻子": 2.5,
    "套话": 1.0,
    "没用": 1.0,
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
# request to reach one ("找我的客户经理", "联系一下投资顾问", "叫你们经理出来") hands over, and so
# does a request to be called or contacted ("安排专员联系我", "给我回个电话"). Asking how to
# reach the firm ("怎么联系客服", "怎么打电话给你们") is a question the KB answers.
_REACH_A_PERSON = re.compile(
    r"(?<!怎么)(?<!如何)(找|联系|叫|喊|让|请|要|转|接通?|安排)(一下|一个|个)?(我的|你们的?)?"
    r"(?:(?:值班|大堂|营业部|柜台|部门|分管)的?)?"
    r"(客户经理|投资顾问|投顾|经理|领导|负责人|主管|专员|工作人员|专人|客服(?!电话|热线|号码|几点|时间))"
    r"|(?<!怎么)(?<!如何)(?<!有人)(?<!会)(?:联系|致电|回电话?给?|打电话给|打给)我"
    r"|(?:打|拨)我(?:的)?(?:电话|手机)"
    r"|给我(?:回|打)(?:个|一个)?电话|回个电话|给我回电"
    # "喊个人出来", "叫个人来": someone, anyone; "把我转到柜台的同事那边": passed on to staff
    # (not "把我转到别的券商": moving the account).
    r"|(?:叫|喊|找|派)(?:一)?个(?:真|活)?人(?:出来|来|过来)"
    # "值班经理在不在？让他来一下", "我要和人说话", "找当初给我开户的那个小王经理".
    r"|(?:让|叫|喊)(?:他|她)(?:过来|出来|来一下)"
    r"|(?:跟|和|同|与)(?:真|活)?人(?:说话|聊|沟通|通话|讲)"
    r"|(?<!怎么)(?<!如何)(?<!在哪)(?<!哪里)(?<!去哪)找[^，。,.？?！!]{0,12}?"
    r"(?:经理|专员|主管|领导|负责人)(?=$|[，。,.？?！!吧呢啊])"
    r"|把我(?:转|接|转接)(?:到|给|去)(?![^，。,.？?！!]{0,6}(?:券商|银行|账户|帐户))"
    # "跟你们主管说话", "和值班经理通话", "找两融的专员聊一下": a person to talk to.
    r"|(?:跟|和|同|与|找|让|叫|请)[^，。,.？?！!]{0,8}?"
    r"(?:专员|主管|经理|领导|负责人|老师|顾问|客服|真人|工作人员|同事|专人|他|她)"
    r"[^，。,.？?！!]{0,5}?(?:聊|谈|说话|通话|讲|沟通|语音|视频|回电|接手)"
)


def _any_of(phrases: tuple[str, ...]) -> re.Pattern[str]:
    """One regex that finds any of the phrases: one scan instead of one `in` per phrase."""
    return re.compile("|".join(re.escape(p) for p in phrases))


# When something of the investor's happened ("我上个月的交易", "我去年被扣的钱").
# One particular day: a weekday or a date ("上周三", "3月12号", "5号").
_DAY = r"(?:上|这)?(?:周|星期|礼拜)[一二三四五六日天]|\d{1,2}月\d{1,2}[号日]?|\d{1,2}[号日]"
# Part of a month ("三月初", "上个月底", "10月中旬").
_PART_OF_MONTH = r"(?:\d{1,2}|[一二三四五六七八九十]{1,2}|上个?|这个?)月(?:初|底|末|中旬|上旬|下旬)"
_WHEN = (
    r"(?:刚才|刚刚|刚|昨天|前天|今天|上周|上个?(?:礼拜|星期)|上个月|上月|去年|今年|前几天|早上|上午|下午"
    rf"|{_PART_OF_MONTH}|{_DAY}|去年\d{{1,2}}月(?:\d{{1,2}}[号日]?|份)?|\d{{1,2}}月份?|[一二三四五六七八九十]{{1,2}}月份?)"
)
# What the investor did or had done to them: "我昨天买的", "我转出去的", "扣了我", "冻结我",
# "我中签的", "我去年被扣的", "我上个月的", "我前几天申请".
_OWN_DOING = (
    rf"我{_WHEN}?"
    r"(?:买|卖|转|申购|认购|赎回|委托|下|挂|存|取|提|充|打|中签|中|申请|提交|开)"
    r"(?:进|入|出|过)?(?:去|来)?(?:了|过)?的"
    r"|(?:扣|冻结|限制|封|锁|收|多收|多扣|少给)了?我"
    r"|我(?:两融|信用|股票|证券|基金|资金|港股通|理财|银行)(?:账户|帐户|账号|帐号|户头|户|卡)"
    rf"|我(?:还|又)?(?:欠|剩)|我{_WHEN}?被|我{_WHEN}的|我{_WHEN}(?:申请|提交|办|开|交|投诉|反映)"
)
# One particular holding or operation ("那只基金", "这单", "上周申购的"), not a product or rule.
_PARTICULAR = (
    rf"[那这](?:只|单)|(?:上周|昨天|前天|上个月|前几天|刚才|刚刚|{_DAY})"
    r"(?:买|卖|转|申购|认购|赎回|委托|下)"
)
# The state of an account or of an operation: a figure only the account shows, something that
# happened to it, or where a pending operation stands.
_ACCOUNT_STATE = re.compile(
    r"(?:还有|还剩|剩下|剩|有|是|欠)多少|余额"
    r"|被(?:扣|冻结|限制|锁|平仓|强平|盗|封|拒|驳回)|多(?:了|出|出来)(?:一|两|几)笔|(?:扣|少|丢|亏|没|不见|消失|冻结|锁|平仓)了"
    r"|还没(?:到|成交|确认|收到|退|返|回|通过|批)|没(?:到账|成交|确认|收到|通过)"
    r"|到哪|卡在哪|看不到|查不到|没办好|生效了?没|(?:确认|成功|到账|成交|通过|退回|到|收到|中|中签|批|批准|审核|办好|办完|下来|出来)过?了?没|找不到"
)
# A follow-up on something the investor raised before ("我上周打电话说的事情处理了吗",
# "之前那个问题怎么样了"): where their own case stands, which only the desk can see. Asking
# how to follow a case up ("投诉进度怎么查") has no earlier reference and is a KB question.
_EARLIER = re.compile(
    r"(?:之前|上次|上回|前几天|上周|上个月|昨天|前天|那天|刚才)"
    r"(?:那个|的|说|问|反映|提|打电话|打过|电话|来电)"
    r"|我(?:之前|上次|前几天|上周|昨天)?(?:说|问|反映|反馈|提交|申请|投诉|留言|登记)(?:过)?的"
    r"|那个问题|那件事|上次的事"
    # Their own application, submitted: 我两融提额申请交了三天了, 我3号在网上申请的销户.
    r"|我[^，。？！,.?!]{0,10}?(?:申请|提交)(?:的|了|交了)"
    rf"|{_WHEN}(?:申请|提交|办理|反映|投诉|办|提)的"
)
_CASE_STATUS = re.compile(
    r"(?:处理|办|解决|回复|答复|受理|审核|落实)(?:好|完)?了(?:吗|没)|(?:怎么样|咋样)了"
    r"|有(?:结果|消息|进展|回复|回音)了?(?:吗|没)|进度|进展|(?:没|没有)(?:消息|回音|回复|下文)"
)
# Asking how or where to look something up is a procedure the KB explains ("我的资金账号在哪看").
_HOW_TO_LOOK_UP = re.compile(
    r"(?:怎么|如何|在哪|哪里|去哪|哪儿|在哪里)(?:儿)?(?:可以|能|才能)?(?:查|看)|怎么办理"
)

_HUMAN = _any_of(EXPLICIT_HUMAN_PHRASES)
# Besides the phrases: "查下我现在的佣金", "看一下我这边": looking something up about the
# investor, unless it asks how or where to do that ("在哪查我的佣金", "怎么看我的持仓").
_LOOK_ME_UP = (
    r"(?<!怎么)(?<!如何)(?<!在哪)(?<!哪里)(?<!去哪)(?<!可以)(?<!能)(?<!查)"
    r"(?:查|看)(?:一下|下|一查|查)?我(?!们)"
    # "你们后台查查", "你们帮我核实一下": the firm asked to look into the investor's case.
    r"|(?:你们|后台)(?:帮我|给我|帮忙)?(?:查|核)(?:查|一下|下|实)"
)
# Not a request to the bot: a feature that acts by itself ("跌到多少就自动帮我卖掉": a
# conditional order) or someone else acting ("客户经理让我把钱打到他卡上，他帮我操作，这正常吗").
_NOT_ASKED_OF_US = r"(?<!自动)(?<!他)(?<!她)(?<!对方)"
_PERSONAL_REQUEST = re.compile(
    f"{_NOT_ASKED_OF_US}(?:{_any_of(PERSONAL_REQUEST_PHRASES).pattern})|{_LOOK_ME_UP}|{_GIVE_BACK}"
)
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


# A rule asked about through a case that has not happened ("券商会不会把我的票平掉", "万一你们
# 出了事，我的钱还拿得回来吗", "什么情况下会卖掉我的股票"): the KB's rule answers it, not the
# account. Not "什么情况" alone: "我的钱什么情况" asks what happened.
_HYPOTHETICAL = re.compile(r"会不会|万一|要是|如果|假如|假设|(?:什么|哪些|哪种)情况下")


def mentions_own_account(simplified: str) -> bool:
    """True if the text is about the investor's own account, holdings or money, or about
    something they did or had done to them, and not as a case that has not happened."""
    text = _compact(simplified)
    return _OWN_ACCOUNT.search(text) is not None and _HYPOTHETICAL.search(text) is None


def asks_about_own_situation(simplified: str) -> bool:
    """True if the text asks about the state of the investor's own account or of one
    particular operation of theirs ("我的持仓市值是多少", "扣了我50块", "那笔赎回款到哪了",
    "前几天赎回的钱怎么还没到"), rather than how or where to look it up. Only someone who
    can see the account can answer; a KB entry, however close, explains the rule, not the case."""
    text = _compact(simplified)
    if _HOW_TO_LOOK_UP.search(text) is not None:
        return False
    state = _ACCOUNT_STATE.search(text) is not None
    if _EARLIER.search(text) is not None and (state or _CASE_STATUS.search(text) is not None):
        # An earlier request and where it stands: 处理了吗, or a state (批下来没有, 到哪一步了).
        return True
    return state and _OWN_OR_PARTICULAR.search(text) is not None


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
