"""Turns normalised text into matching features: jieba words, character bigrams, pinyin bigrams.
Owns a private jieba tokenizer loaded with the securities user dictionary (`data/userdict.txt`)."""

from __future__ import annotations

import logging
import math
from importlib import resources

import jieba
from pypinyin import Style, lazy_pinyin

# Function words that never decide which question was asked. Negations (不, 没, 没有, 未) are
# NOT among them: "没到账" and "到账" are different questions (synonyms.txt folds them together).
STOPWORDS: frozenset[str] = frozenset(
    "的 了 是 我 你 您 他 她 它 们 我们 你们 在 有 和 与 及 或 就 都 也 还 要 会 能 可以 吗 呢 吧 啊 呀"
    " 哦 嘛 么 这 那 这个 那个 一个 一下 个 把 被 给 让 从 到 对 为 为什么 着 过 得 地 之 其 很 太 又"
    " 再 吗 想 请 帮 帮忙 下 上 去 来 说 问 啥 什么 怎么 怎样 怎么样 如何 多少 哪 哪里 哪些 几 是否"
    " 一 呢 吧".split()
)

# Feature kinds (the key prefix): "w:" jieba words carry most meaning, "b:" character bigrams
# catch unsegmented or misspelt runs, "p:" pinyin bigrams catch homophone typos (开护→开户).
# Their relative weights live in `ScoringWeights`.
FEATURE_KINDS = ("w", "b", "p")


class FeatureExtractor:
    """Stateful only in its caches: the jieba dictionary and a per-character pinyin memo."""

    def __init__(self) -> None:
        # jieba logs its cache load at DEBUG/INFO on the root of its own logger.
        logging.getLogger("jieba").setLevel(logging.WARNING)
        self._tokenizer = jieba.Tokenizer()
        self._tokenizer.initialize()
        userdict = resources.files("bot").joinpath("data/userdict.txt")
        for line in userdict.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            freq = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
            self._tokenizer.add_word(parts[0], freq)
        self._canonical: dict[str, str] = load_synonyms()
        for word in {*self._canonical, *self._canonical.values()}:
            # Members and canonical words must come out of jieba as one word, or the table
            # never applies ("到账" was cut into 到 + 账).
            if len(word) > 1 and self._tokenizer.FREQ.get(word, 0) == 0:
                self._tokenizer.add_word(word, _SYNONYM_FREQ)
        self._pinyin: dict[str, str] = _toneless_pinyin_table()

    def words(self, normalized: str) -> list[str]:
        """jieba words of normalised text, without spaces and stopwords."""
        return [
            w
            for w in cut_without_hmm(self._tokenizer, normalized)
            if w.strip() and w not in STOPWORDS
        ]

    def canonical_words(self, normalized: str) -> list[str]:
        """`words`, each replaced by the canonical word of its synonym group."""
        canonical = self._canonical
        return [canonical.get(w, w) for w in self.words(normalized)]

    def _char_pinyin(self, char: str) -> str:
        syllable = self._pinyin.get(char)
        if syllable is None:
            syllable = lazy_pinyin(char, style=Style.NORMAL, errors="default")[0]
            self._pinyin[char] = syllable
        return syllable

    def features(self, normalized: str) -> set[str]:
        """Feature keys of one normalised text, each prefixed with its kind."""
        return self.analyze(normalized)[1]

    def analyze(self, normalized: str) -> tuple[list[str], set[str]]:
        """`canonical_words` and `features` of one text, tokenising it once."""
        words = self.canonical_words(normalized)
        # The canonical word of a synonym group, so "出金" and "转出" share a feature; the
        # surface form still counts through bigrams, pinyin and the fuzzy scores.
        feats = {"w:" + w for w in words}
        pinyin = self._pinyin
        for run in normalized.split():
            kept = [c for c in run if not c.isascii() or c.isalnum()]
            # Each character's syllable once (None for latin and digits), not once per pair.
            syllables = [
                None if c.isascii() else (pinyin.get(c) or self._char_pinyin(c)) for c in kept
            ]
            for i in range(len(kept) - 1):
                a = kept[i]
                b = kept[i + 1]
                if a in _STOPCHARS and b in _STOPCHARS:
                    continue
                feats.add("b:" + a + b)
                pa = syllables[i]
                pb = syllables[i + 1]
                if pa is not None and pb is not None:
                    feats.add("p:" + pa + "_" + pb)
        return words, feats

    def token_string(self, normalized: str) -> str:
        """Space-joined words, for rapidfuzz token ratios."""
        return " ".join(self.words(normalized))


def cut_without_hmm(tokenizer: jieba.Tokenizer, sentence: str) -> list[str]:
    """`tokenizer.lcut(sentence, HMM=False)`, the same words in half the time.

    jieba builds a dict of word ends per position, then the best route right to left with a
    generator and `max` over (log-probability, end) tuples, then yields word by word; here the
    same steps run as plain loops over lists, with the same floating-point expression and the
    same tie rule (higher probability, then the longer word), so the route is identical
    (tests/bot/test_bot_search_exact.py compares the two on every KB wording and query)."""
    freq = tokenizer.FREQ
    logtotal = math.log(tokenizer.total)
    log = math.log
    words: list[str] = []
    for block in _RE_HAN.split(sentence):
        if not block:
            continue
        if not _RE_HAN.match(block):
            # Whitespace runs stay one token, anything else one token per character.
            for piece in _RE_SKIP.split(block):
                if _RE_SKIP.match(piece):
                    words.append(piece)
                else:
                    words.extend(piece)
            continue
        n = len(block)
        route_score = [0.0] * (n + 1)
        route_end = [0] * (n + 1)
        for start in range(n - 1, -1, -1):
            best_score = -math.inf
            best_end = -1
            end = start
            fragment = block[start]
            while end < n and fragment in freq:
                count = freq[fragment]
                if count:
                    score = log(count) - logtotal + route_score[end + 1]
                    if score > best_score or (score == best_score and end > best_end):
                        best_score, best_end = score, end
                end += 1
                fragment = block[start : end + 1]
            if best_end < 0:  # not in the dictionary: the character alone, count 1
                best_score, best_end = log(1) - logtotal + route_score[start + 1], start
            route_score[start] = best_score
            route_end[start] = best_end
        # Single latin letters and digits in a row are joined, as jieba does.
        position = 0
        latin = ""
        while position < n:
            end = route_end[position] + 1
            word = block[position:end]
            if len(word) == 1 and _RE_ENG.match(word):
                latin += word
            else:
                if latin:
                    words.append(latin)
                    latin = ""
                words.append(word)
            position = end
        if latin:
            words.append(latin)
    return words


_RE_HAN = jieba.re_han_default
_RE_SKIP = jieba.re_skip_default
_RE_ENG = jieba.re_eng

# jieba frequency for synonym-table words the dictionaries do not know: enough to win over
# splitting into characters, below the securities terms of the user dictionary.
_SYNONYM_FREQ = 500


def load_synonyms() -> dict[str, str]:
    """Member → canonical word from `data/synonyms.txt` (one group a line, canonical first)."""
    table: dict[str, str] = {}
    text = resources.files("bot").joinpath("data/synonyms.txt").read_text(encoding="utf-8")
    for line in text.splitlines():
        group = line.split()
        if not group or group[0].startswith("#"):
            continue
        for member in group[1:]:
            table.setdefault(member, group[0])
    return table


_TONE_MARKS = str.maketrans("āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜüńňǹḿ", "aaaaeeeeiiiioooouuuuvvvvvnnnm")


def _toneless_pinyin_table() -> dict[str, str]:
    """First reading of every CJK character pypinyin knows, without tones, built once so
    queries never call into pypinyin (its per-call cost is ~100 µs)."""
    from pypinyin.pinyin_dict import pinyin_dict

    return {
        chr(code): readings.split(",")[0].translate(_TONE_MARKS)
        for code, readings in pinyin_dict.items()
    }


# Characters whose pairs ("我的", "怎么") are too common to tell questions apart.
_STOPCHARS = frozenset("的了是我你您吗呢吧啊怎么样什如何么这那个一下想请问能要会可以")
