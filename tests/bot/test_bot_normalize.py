"""Normalisation: width, traditional script, case, punctuation, fillers, synonyms."""

from hypothesis import given, settings
from hypothesis import strategies as st

from bot import Bot, Normalizer

norm = Normalizer()


def test_full_width_and_case_are_folded() -> None:
    assert norm.normalize("ＥＴＦ怎么买") == "etf怎么买"
    assert norm.normalize("ＡＢＣ１２３") == "abc123"


def test_traditional_is_converted_to_simplified() -> None:
    assert norm.normalize("開戶需要準備什麼資料") == "开户需要准备什么资料"
    assert norm.normalize("轉帳") == "转账"


def test_fillers_punctuation_and_trailing_particles_are_removed() -> None:
    assert norm.normalize("你好，请问一下，怎么开户呢？谢谢！") == "怎么开户"
    assert norm.normalize("麻烦问一下 交易时间是几点啊") == "交易时间是几点"


def test_why_keeps_its_last_character() -> None:
    # "么" is not a particle: "为什么" must survive.
    assert norm.normalize("为什么") == "为什么"


def test_english_words_map_to_kb_vocabulary() -> None:
    assert norm.normalize("forgot password") == "forgot 密码"
    assert "佣金" in norm.normalize("commission多少")


def test_abbreviations_expand() -> None:
    assert norm.normalize("货基") == "货币基金"
    assert norm.normalize("股票帐户") == "证券账户"


def test_emoji_and_symbols_have_no_content() -> None:
    assert norm.normalize("😀😀👍") == ""
    assert not Normalizer.has_content(norm.simplify("😀 ！！ ～"))
    assert Normalizer.has_content(norm.simplify("开户😀"))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_normalize_never_crashes_and_is_idempotent(text: str) -> None:
    once = norm.normalize(text)
    assert norm.normalize(once) == once
    assert once == once.strip()
    assert "  " not in once


def test_gan_ma_is_a_question_word_not_a_particle() -> None:
    # "嘛" is also a trailing particle; stripping it would turn "干嘛" into "干" (capable).
    assert norm.normalize("你能干嘛") == "你能做什么"
    assert norm.normalize("这个功能是干啥的") == "这个功能是做什么的"
    assert norm.normalize("开户嘛") == "开户"


def test_colloquial_question_words_map_to_standard_ones() -> None:
    assert norm.normalize("开户被驳回了咋整") == "开户被驳回了怎么办"
    assert norm.normalize("这个咋弄") == "这个怎么办"
    assert norm.normalize("啥时候到账") == "什么时候到账"
    assert norm.normalize("账户受限咋回事") == "账户受限怎么回事"


def test_regional_forms_map_to_standard_ones() -> None:
    # Southwest and Cantonese forms of the same question words and verbs.
    assert norm.normalize("里头莫得钱还能用不") == "里头没有钱还能用"
    assert norm.normalize("佢可唔可以自己开户") == "他可以自己开户"
    assert norm.normalize("卖咗啲股票几时可以拎出嚟") == "卖了啲股票什么时候可以取出来"
    assert norm.normalize("點樣改密碼") == "怎么改密码"
    assert norm.normalize("開戶要點搞，係咪要拍片") == "开户要怎么办 是要拍片"
    # Shanghainese: 侬 (you), 铜钿 (money), 卖脱 (sold), 啥辰光 (when), 几日 (how many days).
    assert norm.normalize("侬好，基金卖脱了铜钿几日到账") == "基金卖掉了钱几天到账"
    assert norm.normalize("啥辰光好再登") == "什么时候好再登"
    assert norm.normalize("两融会不会亏脱本钱") == "两融会亏掉本钱"
    # Cantonese: 喺 (at), 搞掂 (get done), 得唔得 (is it possible).
    assert norm.normalize("喺手机度搞掂开户得唔得") == "在手机度办好开户可以"


def test_everyday_words_share_the_domain_word_feature(demo_bot: Bot) -> None:
    extractor = demo_bot.extractor
    # Standalone 票 is a share; 机票 stays a ticket (jieba keeps it one word).
    assert "w:股票" in extractor.features("买的票能卖吗")
    assert "w:股票" not in extractor.features("机票怎么买")
    assert "w:证券账户" in extractor.features("户头怎么注销")
    assert "w:转入" in extractor.features("下班后还能往证券户打钱吗")  # 打钱: money sent in


def test_a_not_a_questions_lose_the_negation() -> None:
    assert norm.normalize("股市开不开门") == "股市开门"
    assert norm.normalize("有没有利息") == "有利息"
    assert norm.normalize("可不可以撤单") == "可以撤单"
    assert norm.normalize("开不开不开") == "开"


def test_clause_final_negation_is_a_question_particle() -> None:
    assert norm.normalize("没有银行卡能开户不") == "没有银行卡能开户"
    assert norm.normalize("钱到账了没呢") == "钱到账了"
    # A negation inside the clause, or a short clause, is meaning, not a particle.
    assert norm.normalize("转出的钱没到账") == "转出的钱没到账"
    assert norm.normalize("我没有") == "我没有"


def test_clause_final_huan_is_repay() -> None:
    assert norm.normalize("融资的钱怎么还") == "融资的钱怎么还款"
    assert norm.normalize("怎么还没到账") == "怎么还没到账"
