"""Query normalisation for the knowledge-base bot: width, script, case, punctuation, fillers.
Every text the bot compares (KB questions and investor messages) goes through `Normalizer`."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

# Politeness and filler phrases investors wrap around a question; they carry no intent.
# Longest first so "我想问一下" is removed before "我想问".
FILLER_PHRASES: tuple[str, ...] = tuple(
    sorted(
        {
            "我想问一下",
            "我想咨询一下",
            "想咨询一下",
            "想问一下",
            "我想问问",
            "我想问",
            "请问一下",
            "请问",
            "问一下",
            "咨询一下",
            "你好",
            "您好",
            "哈喽",
            "hello",
            "hi",
            "在吗",
            "在不在",
            "亲",
            "麻烦你",
            "麻烦您",
            "麻烦",
            "谢谢你",
            "谢谢您",
            "谢谢",
            "多谢",
            "感谢",
            "客服",
            "小姐姐",
            "老师",
            "那个",
            "就是",
            "一下子",
            "打扰了",
            "打扰一下",
        },
        key=len,
        reverse=True,
    )
)
# "客服" is a filler in "客服你好" but part of "人工客服"; explicit-handoff detection runs on
# the text before fillers are stripped, so removing it here is safe.

# Sentence-final particles; only stripped at the end of a clause.
_TRAILING_PARTICLES = "吗呢吧啊呀哦嘛哈啦喔诶欸"

# Latin words investors mix into Chinese questions, mapped to the KB's vocabulary.
ENGLISH_SYNONYMS: dict[str, str] = {
    "password": "密码",
    "pwd": "密码",
    "account": "账户",
    "fee": "费用",
    "fees": "费用",
    "commission": "佣金",
    "margin": "两融",
    "ipo": "新股",
    "fund": "基金",
    "funds": "基金",
    "transfer": "转账",
    "login": "登录",
    "log": "登录",
    "stock": "股票",
    "stocks": "股票",
    "bank": "银行",
    "risk": "风险",
    "open": "开",
    "trading": "交易",
    "trade": "交易",
    "time": "时间",
    "complaint": "投诉",
    "etf": "etf",
}

# Abbreviations and variant spellings investors use, mapped to the KB's wording.
CHINESE_SYNONYMS: dict[str, str] = {
    "帐户": "账户",
    "帐号": "账号",
    "转帐": "转账",
    "股票账户": "证券账户",
    "股票户": "证券账户",
    "货基": "货币基金",
    "债基": "债券基金",
    "股基": "股票基金",
    "打新债": "申购可转债",
    "新债": "可转债",
    "科创版": "科创板",
    "创业版": "创业板",
    "登陆": "登录",
    # "嘛" is also a sentence-final particle: without this, "你能干嘛" would lose it to the
    # particle stripping and become "你能干" (capable).
    "干嘛": "做什么",
    "干啥": "做什么",
    # Colloquial question words, mapped to the standard ones the KB is written in (a word the
    # KB never uses counts against every wording).
    "咋整": "怎么办",
    "咋办": "怎么办",
    "咋弄": "怎么办",
    "怎么整": "怎么办",
    "怎么弄": "怎么办",
    "咋回事": "怎么回事",
    "咋": "怎么",
    "啥时候": "什么时候",
    "啥": "什么",
    "木有": "没有",
    "俺": "我",
    # Regional forms (southwest, Cantonese) for the same question words and verbs.
    "莫得": "没有",
    "冇": "没有",
    "有冇": "有没有",
    "可唔可以": "可不可以",
    "系唔系": "是不是",
    "咩": "什么",
    "点样": "怎么",
    "点解": "为什么",
    "几时": "什么时候",
    "咗": "了",
    "嘅": "的",
    "嚟": "来",
    "搵": "找",
    "佢": "他",
    "拎出": "取出",
    "拎钱": "取钱",
    "系咪": "是不是",
    "点搞": "怎么办",
    "喺": "在",
    "搞掂": "办好",
    "得唔得": "可不可以",
    # Shanghainese.
    "侬": "你",
    "铜钿": "钱",
    "卖脱": "卖掉",
    "亏脱": "亏掉",
    "啥辰光": "什么时候",
    "几日": "几天",
}

# "A不A" / "A没A" questions ("能不能", "有没有", "开不开门") ask the same as "A吗": no negation.
_A_NOT_A = re.compile(r"([\u4e00-\u9fff])[不没]\1")
# A clause-final 不/没/没有 is a question particle too ("能开户不", "到账了没").
_FINAL_NEGATION = re.compile(r"(?<=..)(不|没有|没)$")
# A clause-final 还 is "repay" (融资的钱怎么还), not "still": 还 alone is a stopword.
_FINAL_REPAY = re.compile(r"(?<=.)还$")
_PUNCT_OR_SYMBOL = re.compile(r"[^\w]+", re.UNICODE)
_UNDERSCORE = re.compile(r"_+")
_SPACES = re.compile(r"\s+")
_LATIN_WORD = re.compile(r"[a-z]+")
_SYNONYM_ORDER = sorted(CHINESE_SYNONYMS, key=len, reverse=True)
_MEANINGFUL = re.compile(r"[0-9a-z\u3400-\u9fff]")


def _load_traditional_to_simplified() -> dict[int, str]:
    """Build a str.translate table from OpenCC's character dictionary, once.

    OpenCC('t2s').convert() costs tens of microseconds per call; a char table keeps the
    per-query cost to one str.translate. Phrase-level conversions are rare in questions.
    """
    try:
        import opencc
    except ImportError:  # pragma: no cover - the dependency is declared
        return {}
    path = Path(opencc.__file__).parent / "dictionary" / "TSCharacters.txt"
    table: dict[int, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and len(parts[0]) == 1:
            target = parts[1].split(" ")[0]
            if target and target != parts[0]:
                table[ord(parts[0])] = target
    return table


class Normalizer:
    """Turns free text into the canonical form that matching works on.

    Steps: NFKC (full/half width), traditional to simplified, lower case, English synonyms,
    punctuation and emoji to spaces, filler phrases and trailing particles removed.
    """

    def __init__(self) -> None:
        self._t2s = _load_traditional_to_simplified()

    def simplify(self, text: str) -> str:
        """NFKC, traditional to simplified and lower case; keeps punctuation and fillers."""
        return unicodedata.normalize("NFKC", text).translate(self._t2s).lower()

    def normalize(self, text: str) -> str:
        """Canonical form for matching: words separated by single spaces, fillers removed."""
        return self.normalize_simplified(self.simplify(text))

    def normalize_simplified(self, text: str) -> str:
        """`normalize` for text that already went through `simplify` (not done twice)."""
        text = _LATIN_WORD.sub(lambda m: ENGLISH_SYNONYMS.get(m.group(0), m.group(0)), text)
        # Until nothing changes (a few rounds at most): a spelling fix ("帐户"→"账户") can
        # create a longer synonym ("股票账户"), a synonym an "A不A" ("咋不么" → "怎么不么"), and
        # "开不开不开" needs two rounds.
        for _ in range(4):
            before = text
            for variant in _SYNONYM_ORDER:
                if variant in text:
                    text = text.replace(variant, CHINESE_SYNONYMS[variant])
            text = _A_NOT_A.sub(r"\1", text)
            if text == before:
                break
        text = _PUNCT_OR_SYMBOL.sub(" ", text)
        text = _UNDERSCORE.sub(" ", text)
        for phrase in FILLER_PHRASES:
            if phrase in text:
                text = text.replace(phrase, " ")
        clauses = [_strip_clause_end(c) for c in text.split()]
        return _SPACES.sub(" ", " ".join(c for c in clauses if c)).strip()

    @staticmethod
    def has_content(text: str) -> bool:
        """True if the text holds at least one letter, digit or CJK character."""
        return _MEANINGFUL.search(text) is not None


def _strip_clause_end(clause: str) -> str:
    """Sentence-final particles and question-particle 不/没 off, until none is left; a final
    还 becomes 还款."""
    while True:
        stripped = _FINAL_NEGATION.sub("", clause.rstrip(_TRAILING_PARTICLES))
        if stripped == clause:
            break
        clause = stripped
    return _FINAL_REPAY.sub("还款", clause)
