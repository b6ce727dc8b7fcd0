"""Generate ``cases.jsonl`` for ``python -m compliance.eval``: hand-written phrases × evasions.

Run ``python compliance/data/make_cases.py`` after editing the phrase lists; deterministic.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from opencc import OpenCC
from pypinyin import Style, lazy_pinyin

HERE = Path(__file__).parent

# Violating advisor phrases. [brackets] mark the segment an evader would disguise.
VIOLATIONS: list[tuple[str, str]] = [
    ("promise_returns", "这个产品[稳赚不赔]，您放心买"),
    ("promise_returns", "跟着我操作，[稳赚]的"),
    ("promise_returns", "我们这个组合[保证收益]，年化8个点"),
    ("promise_returns", "放心吧，[亏了算我的]"),
    ("promise_returns", "这只票[下周必涨]，赶紧"),
    ("promise_returns", "年底前[翻倍没问题]"),
    ("promise_returns", "我可以[保证您的收益]不低于银行理财"),
    ("promise_returns", "这个策略[包赚]，不会让您失望"),
    ("promise_returns", "买了它[只赚不赔]"),
    ("promise_returns", "这只基金[承诺收益]百分之六"),
    ("promise_returns", "您就拿着，[肯定涨]"),
    ("promise_returns", "真亏了[我来兜底]"),
    ("promise_returns", "这波行情[稳赢]，相信我"),
    ("promise_returns", "明年[收益翻倍]是保守估计"),
    ("promise_returns", "[保底收益]百分之五，跑赢存款"),
    ("promise_returns", "这票[明天一定涨]，今天进"),
    ("promise_returns", "这个位置买[稳拿]两成收益"),
    ("promise_returns", "买这个就是[躺赚]"),
    ("promise_returns", "我给您[打包票]，一定赚钱"),
    ("promise_returns", "跟我的客户都[闭眼赚]"),
    ("principal_guarantee", "这款理财是[保本]的，收益也不错"),
    ("principal_guarantee", "我们的产品[无风险]，比存款划算"),
    ("principal_guarantee", "放心，[保本保息]"),
    ("principal_guarantee", "这个是[刚性兑付]的，到期一定给您"),
    ("principal_guarantee", "[本金绝对安全]，收益还高"),
    ("principal_guarantee", "[零风险]，年化6%"),
    ("principal_guarantee", "这是[保本理财]，老人买最合适"),
    ("principal_guarantee", "就算跌了也[亏损全赔]"),
    ("principal_guarantee", "[保证本金]不会少一分"),
    ("principal_guarantee", "买这个[不会亏本]的"),
    ("inducing_trades", "现在[赶紧满仓]，机会难得"),
    ("inducing_trades", "[全仓梭哈]这一只"),
    ("inducing_trades", "这个月帮我[冲一下业绩]，多做几笔交易"),
    ("inducing_trades", "[错过再等十年]，今天就买"),
    ("inducing_trades", "主力[马上拉升]，快进"),
    ("inducing_trades", "[借钱炒股]也值得"),
    ("inducing_trades", "账户给我，我[代客操作]"),
    ("inducing_trades", "把账户交给我，[全权委托]就行"),
    ("inducing_trades", "[赶紧上车]，晚了就没了"),
    ("inducing_trades", "您今天[多交易几次]，佣金给您打折"),
    ("insider_info", "我有[内幕消息]，这只要重组"),
    ("insider_info", "[内部消息]，下周有大利好"),
    ("insider_info", "公司[还没公告]，先买进去"),
    ("insider_info", "[庄家要拉]了，跟上"),
    ("insider_info", "[董秘透露]业绩超预期"),
    ("insider_info", "这是[可靠消息]，不要外传"),
    ("insider_info", "[重组消息]已经定了"),
    ("private_fees", "费用[私下转账]给我就行"),
    ("private_fees", "赚了的话[利润分成]，三七开"),
    ("private_fees", "[给我发红包]意思一下就行"),
    ("private_fees", "服务费[转到我个人账户]"),
    ("private_fees", "[返佣给你]，别跟公司说"),
    ("private_fees", "给点[辛苦费]就行"),
    ("off_channel", "[加我微信]，细聊"),
    ("off_channel", "这里不方便，[私聊]"),
    ("off_channel", "[拉你进群]，每天推票"),
    ("off_channel", "[加我vx]给你发票"),
    ("off_channel", "[我的微信号]是abc123"),
    ("exaggerated_performance", "我推荐的票[百发百中]"),
    ("exaggerated_performance", "老师[胜率100%]"),
    ("exaggerated_performance", "我们是[收益率第一]的团队"),
    ("exaggerated_performance", "跟着我[每天涨停]"),
    ("exaggerated_performance", "[从不失手]，您放心"),
    ("suitability", "[测评我帮你填]，选激进型就能买"),
    ("suitability", "[等级不够也能买]，签个字就行"),
    ("suitability", "[风险揭示书随便签]，走个形式"),
    ("personal_data", "[把密码发给我]，我帮您看看"),
    ("abuse", "你是不是[脑残]啊"),
]

# Promissory intent without any literal rule term (the intent scorer's job).
INTENT: list[tuple[str, str]] = [
    ("promise_returns", "跟着我买肯定能赚"),
    ("promise_returns", "这只股票下周一定会大涨"),
    ("promise_returns", "今年翻番是肯定的"),
    ("promise_returns", "听我的，这个绝对赚钱"),
    ("promise_returns", "放心，这票肯定会拉升"),
    ("promise_returns", "相信我，月底前一定反弹"),
    ("promise_returns", "这个价位进去铁定有肉"),
    ("promise_returns", "回本是一定的，不用担心"),
    ("promise_returns", "这只毫无疑问会涨上去"),
    ("promise_returns", "跟着老师做，妥妥的赚钱"),
    ("inducing_trades", "赶紧买，马上就要涨了"),
    ("inducing_trades", "抓紧加仓，后面有大涨"),
    ("promise_returns", "百分之百会涨，您信我"),
    ("promise_returns", "这个板块必然会涨"),
    ("promise_returns", "闭着眼买都能赚"),
    ("promise_returns", "我们一定赚钱给你看"),
]

INVESTOR_VIOLATIONS: list[tuple[str, str]] = [
    ("abuse", "你们客服是[白痴]吗"),
    ("abuse", "[他妈的]又亏了"),
    ("abuse", "什么[垃圾东西]"),
    ("abuse", "你[有病吧]"),
]

BENIGN_ADVISOR: list[str] = [
    "您好，很高兴为您服务，请问有什么可以帮您？",
    "我们不保证收益，投资有风险，入市需谨慎。",
    "本公司不承诺保本，产品净值会有波动。",
    "基金过往业绩不代表未来表现，请您理性投资。",
    "该产品并非保本产品，可能出现本金亏损。",
    "两融账户维持担保比例低于130%时需要追加保证金。",
    "期货交易需要缴纳保证金，请注意杠杆风险。",
    "保险产品和基金是两类不同的产品，请您区分。",
    "您的持仓成本是10.52元，保本价大约在10.60元附近。",
    "无风险利率一般参考十年期国债收益率。",
    "市场有风险，不存在无风险的投资。",
    "我无法保证这只股票会上涨，请您自行判断。",
    "任何人都不能对投资收益作出保证，请警惕此类说法。",
    "请勿添加任何自称老师的私人微信，谨防诈骗。",
    "请通过官方APP或公司官网办理业务，不要私下转账。",
    "公司严禁员工私下收取客户费用，如有发现请举报。",
    "开户需要准备身份证和本人银行卡，全程线上办理。",
    "两融业务需要资产满50万且交易经验满半年。",
    "佣金费率可以根据您的资产情况申请调整。",
    "ETF的交易费用比普通股票略低，没有印花税。",
    "您的风险测评结果是C3稳健型，可以购买R3及以下的产品。",
    "这只产品风险等级R4，超出您的风险承受能力，不建议购买。",
    "建议您先完成风险测评，再考虑购买相关产品。",
    "新股申购需要有对应市场的市值，T-2日前20个交易日日均市值1万元以上。",
    "可转债T+0交易，涨跌幅限制20%。",
    "科创板开户需要50万资产和两年交易经验。",
    "请您注意，创业板股票涨跌幅限制为20%。",
    "这个产品的业绩比较基准是年化3.5%，不代表实际收益。",
    "货币基金收益相对稳定，但也不是保本的。",
    "债券基金也可能亏损，去年就有不少债基回撤。",
    "定投可以平滑成本，但不能保证一定盈利。",
    "市场短期波动很难预测，我们不对涨跌作判断。",
    "您可以关注公司研报，但研报观点不构成投资建议。",
    "国债逆回购是低风险产品，资金次日可用。",
    "您的账户目前没有异常，资金是安全的。",
    "请您核对一下订单号20231105123456789，我帮您查询。",
    "客服热线95521，工作日9点到17点。",
    "股票代码600519，昨日收盘价1700元。",
    "您的资金账号尾号是3821，对吗？",
    "转账请使用银证转账功能，资金只能在本人银行卡和证券账户之间划转。",
    "佣金按成交金额的万分之二点五收取，最低5元。",
    "风险提示：股市有风险，投资需谨慎。",
    "这个问题我帮您转给专业的投资顾问。",
    "请问您是想了解开户流程还是交易规则？",
    "基金赎回一般T+1确认，资金T+3到账。",
    "您好，分红方式可以选择现金分红或红利再投资。",
    "保证金交易风险较大，请量力而行。",
    "该理财产品不保本、不保收益，请您知悉。",
    "我们会严格遵守适当性管理要求。",
    "如果您觉得仓位太重，可以考虑适当减仓控制风险。",
    "收益率是过去一年的历史数据，仅供参考。",
    "请问您的投资期限大概多长？",
    "持有满7天赎回就不收赎回费了。",
    "这个产品是中低风险，但净值仍然会波动。",
    "近期市场波动加大，建议您关注仓位和风险。",
    "您说的情况我理解，亏损确实让人难受。",
    "抱歉让您久等了，系统刚才有点卡。",
    "晚上好，今天的问题都解决了吗？",
    "我这边给您发一份风险揭示书，请仔细阅读后签署。",
    "收益凭证是券商发行的产品，有一定信用风险。",
    "我们不会以任何形式承诺收益，请您理解。",
    "没有人能保证稳赚不赔，这种说法都是骗局。",
    "警惕所谓稳赚不赔的荐股群，这些都是诈骗。",
    "这只股票短期涨幅较大，追高需谨慎。",
    "市场上涨的时候也要注意控制仓位。",
    "您可以设置止盈止损来管理风险。",
    "资产配置的目的是分散风险，而不是保证收益。",
    "港股通需要50万资产门槛。",
    "北交所开户要求资产50万和两年交易经验。",
    "我们只能提供信息参考，投资决策需要您自己做。",
    "该基金经理从业十年，管理规模约80亿元。",
    "基金的费率包括管理费、托管费和销售服务费。",
    "现在市场情绪偏谨慎，成交量有所萎缩。",
    "这个板块近期有政策支持，但也存在不确定性。",
    "您的问题已经记录，会在两个工作日内回复。",
    "请问方便留一下您的称呼吗？",
    "我是您的专属投资顾问小王，工号A1023。",
    "我们的服务时间是交易日8:30到20:00。",
    "如需修改手机号，请在APP里的个人资料中操作。",
    "密码请不要告诉任何人，包括我们的工作人员。",
    "验证码属于个人隐私，请勿向任何人透露。",
    "内幕交易是违法行为，我们不会提供任何内幕消息。",
    "请不要相信所谓的内部消息，一切以公司公告为准。",
    "不存在稳赚的投资，高收益必然伴随高风险。",
    "您可以在APP首页找到在线客服入口。",
    "请勿相信任何保本保收益的宣传。",
    "这款产品的历史最大回撤是12%，请您知悉。",
    "您的账户已开通创业板权限。",
    "市场有涨有跌，长期来看需要耐心。",
    "您说的这只票我们不做个股推荐。",
    "目前沪深300的估值处于历史中位附近。",
    "这是公司官方公众号发布的研报摘要。",
    "您可以通过官方APP的消息中心接收通知。",
    "请核对您的银行卡尾号8899是否正确。",
    "如遇到自称客服的人要求转账，请立即挂断。",
    "这类产品不适合您的风险等级，建议选择R2以内的。",
    "我们严禁代客操作，请您自行下单。",
    "账户密码请自己保管，不要交给任何人操作。",
    "您的佣金已经是我们能给的最低费率了。",
    "本周五下午三点有一场线上投教直播，欢迎参加。",
    "这只债基的久期比较短，利率风险相对小。",
    "期权是高风险产品，需要通过适当性评估。",
    "您好，非交易时间也可以预约下单。",
    "明天一定给您回复收益情况。",
    "肯定的，收益每天都会更新。",
    "您放心，我们一定会尽快处理。",
    "我们保证24小时内回复您。",
    "这个肯定要看市场情况，我没法判断。",
]

BENIGN_INVESTOR: list[str] = [
    "你好，我想开个户，需要什么材料？",
    "你们保证收益吗？",
    "这个理财保本吗？",
    "有没有无风险的产品推荐？",
    "我的保证金不够了怎么办？",
    "两融怎么开通？",
    "佣金能不能再低一点？",
    "我买的基金亏了20%，怎么办？",
    "为什么我的资金还没到账？",
    "请问今天几点收盘？",
    "ETF和普通基金有什么区别？",
    "我想转人工",
    "人工客服在吗？",
    "新股中签了怎么缴款？",
    "怎么修改交易密码？",
    "我忘记密码了，怎么重置？",
    "我的订单号是20240312000183726，帮我查一下",
    "可转债怎么申购？",
    "科创板开户有什么要求？",
    "你们有没有内幕消息啊？",
    "会不会稳赚啊？",
    "这个产品会亏本吗？",
    "我是C2的，能买R3的产品吗？",
    "风险测评怎么重新做？",
    "我想把钱转出来",
    "银证转账失败了，提示余额不足",
    "你们的客服电话是多少？",
    "这只股票还能拿吗？",
    "市场跌成这样，要不要割肉？",
    "我想买点国债逆回购",
    "怎么查看我的持仓成本？",
    "分红什么时候到账？",
    "我的账户被冻结了？",
    "收益率怎么算的？",
    "定投多久能回本？",
    "基金赎回要几天？",
    "有没有适合老人的稳健产品？",
    "保险和基金哪个好？",
    "我在外地，能不能线上销户？",
    "我手机号换了，怎么改？",
    "你们app老是闪退",
    "谢谢，问题解决了",
    "好的，明白了",
    "这个费率太高了吧",
    "能不能加你微信？",
    "你们是不是骗子？",
    "我要投诉",
    "唉，又亏了",
    "bbc说美股要跌",
    "abba的歌挺好听",
    "我的工号是什么意思？",
    "股票代码000001是平安银行吗？",
    "我的资金账号是310012345678",
    "帮我看看订单6001234567890123",
    "收盘价12.35元，成本11.8",
    "我2023年10月开的户",
    "T+0是什么意思？",
    "k线图怎么看？",
    "MACD金叉是不是要涨？",
    "我的ok了，谢谢",
    "pk一下这两只基金哪个好",
    "vip客户有什么权益？",
    "你们app的ipo日历在哪？",
    "这个月收益不错，哈哈",
    "上周赚了一点，这周又亏回去了",
    "我老婆也想开户",
    "请问周末能交易吗？",
    "美元理财有吗？",
    "你们的营业部地址在哪里？",
    "我想咨询一下养老目标基金",
]

PREFIXES_ADV = ["", "您好，", "好的，", "嗯，", "明白，", "另外，", "这边跟您说一下，", "打扰了，"]
SUFFIXES_ADV = ["", "。", "，有问题随时找我。", "，谢谢您的理解。", "～", "！", "，祝您生活愉快。"]
PREFIXES_INV = ["", "你好，", "请问", "那个，", "喂，", "麻烦问下，"]
SUFFIXES_INV = ["", "？", "。", "谢谢", "，急", "~"]

_T2S = OpenCC("s2t")
_ZW = "\u200b"
_EMOJI = ["😀", "🔥", "💰", "👍", "🚀"]
_STYLED = str.maketrans("0123456789", "０１２３４５６７８９")
_CIRCLED = str.maketrans("0123456789", "⓪①②③④⑤⑥⑦⑧⑨")
_HOMO = {
    "保": "宝",
    "本": "苯",
    "赚": "撰",
    "赔": "陪",
    "稳": "吻",
    "收": "手",
    "益": "意",
    "涨": "张",
    "内": "那",
    "幕": "慕",
    "私": "丝",
    "聊": "撩",
    "微": "威",
    "信": "芯",
    "翻": "番",
    "倍": "被",
    "证": "正",
    "险": "现",
    "亏": "溃",
    "底": "低",
}


def _pinyin(seg: str) -> str:
    return " ".join(lazy_pinyin(seg))


def _initials(seg: str) -> str:
    return "".join(lazy_pinyin(seg, style=Style.FIRST_LETTER))


def _homophone(seg: str) -> str:
    out = list(seg)
    for i, c in enumerate(out):
        if c in _HOMO:
            out[i] = _HOMO[c]
            break
    return "".join(out)


TRANSFORMS: dict[str, Callable[[str, random.Random], str]] = {
    "plain": lambda s, r: s,
    "zero_width": lambda s, r: _ZW.join(s),
    "pinyin": lambda s, r: _pinyin(s),
    "homophone": lambda s, r: _homophone(s),
    "full_width": lambda s, r: (
        "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)
        if any(c.isascii() for c in s)
        else " ".join(s)
    ),
    "traditional": lambda s, r: _T2S.convert(s),
    "styled_digits": lambda s, r: s.translate(r.choice([_STYLED, _CIRCLED])),
    "emoji_separators": lambda s, r: "".join(c + r.choice(_EMOJI) for c in s[:-1]) + s[-1],
    "repeated": lambda s, r: "".join(c * r.choice([1, 2, 3]) for c in s),
    "spaces_punct": lambda s, r: r.choice([" ", ".", "*", "-", "/"]).join(s),
    "mixed_case_pinyin": lambda s, r: _pinyin(s).upper().replace(" ", ""),
}
INITIALS_SEGMENTS = {"保本", "稳赚不赔", "保本保息"}


def _render(template: str, seg_transform: Callable[[str], str]) -> str:
    start, end = template.index("["), template.index("]")
    return template[:start] + seg_transform(template[start + 1 : end]) + template[end + 1 :]


def _evasion_cases(
    violations: list[tuple[str, str]], rng: random.Random
) -> list[dict[str, object]]:
    """Every template through every evasion, plus the split across two messages."""
    cases: list[dict[str, object]] = []
    for category, template in violations:
        for name, fn in TRANSFORMS.items():
            if name in ("pinyin", "mixed_case_pinyin", "homophone") and category not in (
                "promise_returns",
                "principal_guarantee",
                "insider_info",
                "off_channel",
            ):
                continue
            text = _render(template, lambda seg, fn=fn: fn(seg, rng))  # type: ignore[misc]
            cases.append({"text": text, "role": "advisor", "expected": [category], "evasion": name})
        # Split across two consecutive messages of the same sender.
        start, end = template.index("["), template.index("]")
        seg = template[start + 1 : end]
        cut = max(1, len(seg) // 2)
        cases.append(
            {
                "text": seg[cut:] + template[end + 1 :],
                "previous": [template[:start] + seg[:cut]],
                "role": "advisor",
                "expected": [category],
                "evasion": "split",
            }
        )
    return cases


def violating_cases(rng: random.Random) -> list[dict[str, object]]:
    cases = _evasion_cases(VIOLATIONS, rng)
    for category, template in VIOLATIONS:
        seg = template[template.index("[") + 1 : template.index("]")]
        if seg in INITIALS_SEGMENTS:
            cases.append(
                {
                    "text": _render(template, _initials),
                    "role": "advisor",
                    "expected": [category],
                    "evasion": "initials",
                }
            )
    for category, text in INTENT:
        for prefix in ("", "您好，", "说实话，"):
            cases.append(
                {
                    "text": prefix + text,
                    "role": "advisor",
                    "expected": [category],
                    "evasion": "intent",
                }
            )
    for category, template in INVESTOR_VIOLATIONS:
        for name in ("plain", "zero_width", "traditional", "spaces_punct"):
            text = _render(template, lambda seg, n=name: TRANSFORMS[n](seg, rng))  # type: ignore[misc]
            cases.append(
                {"text": text, "role": "investor", "expected": [category], "evasion": name}
            )
    return cases


def _luhn_complete(prefix: str) -> str:
    for check in "0123456789":
        digits = prefix + check
        total = 0
        for i, ch in enumerate(reversed(digits)):
            v = int(ch) * (2 if i % 2 else 1)
            total += v - 9 if v > 9 else v
        if total % 10 == 0:
            return digits
    raise AssertionError


def _id_complete(first17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return first17 + "10X98765432"[total % 11]


def personal_data_cases(rng: random.Random) -> list[dict[str, object]]:
    cases: list[dict[str, object]] = []
    for _ in range(12):
        card = _luhn_complete("6222" + "".join(rng.choice("0123456789") for _ in range(14)))
        ident = _id_complete(
            rng.choice(["110105", "310104", "440305"])
            + f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
            + "".join(rng.choice("0123456789") for _ in range(3))
        )
        phone = "1" + rng.choice("3589") + "".join(rng.choice("0123456789") for _ in range(9))
        spaced = " ".join(card[i : i + 4] for i in range(0, len(card), 4))
        for text in (
            f"我的卡号是{card}，帮我查下",
            f"银行卡 {spaced} 绑定失败",
            f"身份证号{ident}",
            f"我的手机号{phone}，麻烦回电",
            f"电话{phone[:3]}-{phone[3:7]}-{phone[7:]}",
            f"手机{phone.translate(_CIRCLED)}",
        ):
            cases.append(
                {"text": text, "role": "investor", "expected": ["personal_data"], "evasion": "pii"}
            )
    return cases


def benign_cases(rng: random.Random) -> list[dict[str, object]]:
    cases: list[dict[str, object]] = []
    for text in BENIGN_ADVISOR:
        variants = {text}
        while len(variants) < 9:
            variants.add(rng.choice(PREFIXES_ADV) + text.rstrip("。") + rng.choice(SUFFIXES_ADV))
        variants.add(_T2S.convert(text))
        for v in sorted(variants):
            cases.append({"text": v, "role": "advisor", "expected": []})
    for text in BENIGN_INVESTOR:
        variants = {text}
        while len(variants) < 8:
            variants.add(rng.choice(PREFIXES_INV) + text.rstrip("？?。") + rng.choice(SUFFIXES_INV))
        for v in sorted(variants):
            cases.append({"text": v, "role": "investor", "expected": []})
    # Numbers that are not personal data: failed Luhn, invalid ID dates, order numbers.
    for _ in range(40):
        card = _luhn_complete("6222" + "".join(rng.choice("0123456789") for _ in range(14)))
        bad = card[:-1] + str((int(card[-1]) + 1) % 10)
        cases.append({"text": f"流水号{bad}已受理", "role": "investor", "expected": []})
        order = "2024" + "".join(rng.choice("0123456789") for _ in range(13))
        cases.append({"text": f"订单号 {order}，请查收", "role": "advisor", "expected": []})
    return cases


# Catalog suitability: (message, product risk R-level mentioned). Recommending above the
# customer's level violates; the same text to a customer at or above the level does not.
SUITABILITY: list[tuple[str, int]] = [
    ("建议您配置一点科创50ETF，长期看好", 4),
    ("可以考虑买入远航成长私募", 5),
    ("推荐您试试雪球结构化票据，票息不错", 5),
    ("纳指基金值得定投", 4),
    ("两倍杠杆ETF这周可以上车", 5),
    ("新能源基金现在适合加仓", 4),
    ("您可以申购一些原油LOF", 5),
    ("我建议您布局半导体芯片ETF", 4),
]
SUITABILITY_BENIGN: list[tuple[str, str]] = [
    ("科创50ETF风险等级R4，超出您的风险承受能力，不建议购买", "C2"),
    ("雪球产品不适合您，建议选择R2以内的", "C1"),
    ("鑫享货币A流动性好，可以考虑", "C1"),
    ("稳利短债C波动较小，值得关注", "C2"),
    ("远航成长私募需要合格投资者认证，您目前不符合", "C3"),
]


def suitability_cases() -> list[dict[str, object]]:
    cases: list[dict[str, object]] = []
    for text, risk in SUITABILITY:
        for level in range(1, risk):
            cases.append(
                {
                    "text": text,
                    "role": "advisor",
                    "customer_risk": f"C{level}",
                    "expected": ["suitability"],
                    "evasion": "catalog",
                }
            )
        for level in range(risk, 6):
            cases.append(
                {"text": text, "role": "advisor", "customer_risk": f"C{level}", "expected": []}
            )
        cases.append({"text": text, "role": "advisor", "expected": []})
    for text, customer in SUITABILITY_BENIGN:
        cases.append({"text": text, "role": "advisor", "customer_risk": customer, "expected": []})
    return cases


# Added with the post-term negation and the loss-cover / no-risk rules (issue #5). The classes
# (negation written after the term, covering losses in other words, a return figure with a
# no-risk claim, a phone number split after its first digit) were found on the held-out file;
# these phrases are new, written for the shipped set, not copied from it. Generated last with
# their own seed so the cases above stay as they were.
GAP_VIOLATIONS: list[tuple[str, str]] = [
    ("promise_returns", "万一跌了[我来赔]，您怕什么"),
    ("promise_returns", "亏掉的钱[我补给您]，放心做"),
    ("promise_returns", "[损失部分由我承担]，不会让您吃亏"),
    ("promise_returns", "真要是套牢了[算我头上]"),
    ("promise_returns", "这单亏了[我来扛]，您只管拿着"),
    ("promise_returns", "年化收益百分之十二，[没有风险]，比理财强"),
    ("promise_returns", "一年赚两成，[一点风险都没有]"),
    ("principal_guarantee", "这款产品[没什么风险]，年化有6个点"),
    ("principal_guarantee", "买这只基金[不会有风险]的，放心"),
]
GAP_BENIGN_ADVISOR: list[str] = [
    "所谓保本保收益的说法是不存在的，请您理性看待。",
    "说能稳赚不赔的，基本都是骗子。",
    "刚兑早就打破了，现在的理财都是净值型。",
    "保证收益是违规的，我们不能这么说。",
    "承诺收益的宣传都是误导，请以合同为准。",
    "亏损由投资者自行承担，我们不做任何补偿。",
    "如果跌了，我负责第一时间通知您。",
    "收益和风险是对等的，没有风险就没有收益。",
    "亏损的原因我来补充一下。",
    "客户没有风险测评结果的话不能买。",
    "银证转账没有风险，请放心操作。",
    "投资不存在没有风险的产品。",
    "这个月亏了不少，我负责的几个客户都在问。",
]


def gap_cases(rng: random.Random) -> list[dict[str, object]]:
    cases = _evasion_cases(GAP_VIOLATIONS, rng)
    for text in GAP_BENIGN_ADVISOR:
        variants = {text, _T2S.convert(text)}
        while len(variants) < 6:
            variants.add(rng.choice(PREFIXES_ADV) + text.rstrip("。") + rng.choice(SUFFIXES_ADV))
        cases += [{"text": v, "role": "advisor", "expected": []} for v in sorted(variants)]
    for _ in range(6):
        phone = "1" + rng.choice("3589") + "".join(rng.choice("0123456789") for _ in range(9))
        for text in (
            f"电话{phone[0]}-{phone[1:4]}-{phone[4:8]}-{phone[8:]}",
            f"手机 {phone[0]} {phone[1:]}",
        ):
            cases.append(
                {"text": text, "role": "investor", "expected": ["personal_data"], "evasion": "pii"}
            )
    return cases


def main() -> None:
    rng = random.Random(20240601)
    cases = (
        violating_cases(rng) + personal_data_cases(rng) + suitability_cases() + benign_cases(rng)
    )
    cases += gap_cases(random.Random(20261123))
    with (HERE / "cases.jsonl").open("w", encoding="utf-8") as f:
        for case in cases:
            f.write(json.dumps(case, ensure_ascii=False) + "\n")
    bad = sum(1 for c in cases if c["expected"])
    print(f"{len(cases)} cases: {bad} violating, {len(cases) - bad} benign")


if __name__ == "__main__":
    main()
