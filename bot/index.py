"""Inverted index over every wording of every enabled KB entry, with fuzzy re-ranking.
Candidates come from idf-weighted feature overlap; the top few are re-scored with rapidfuzz."""

from __future__ import annotations

import heapq
import math
from array import array
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

from rapidfuzz import fuzz

from bot.features import FeatureExtractor
from bot.kb import KBEntry, KnowledgeBase
from bot.normalize import Normalizer


@dataclass(frozen=True, slots=True)
class ScoringWeights:
    """How overlap and fuzzy similarity combine into one score in [0, 1]."""

    # Defaults from a grid search on the tuning third of the demo queries (docs/bot.md).
    doc_cover_exponent: float = 0.5  # weight of "query covers the KB wording" vs the reverse
    overlap: float = 0.8
    ratio: float = 0.12
    partial: float = 0.08
    word: float = 1.0  # relative weight of jieba-word features
    bigram: float = 0.3  # of character bigrams
    pinyin: float = 0.4  # of pinyin bigrams
    unseen: float = 1.0  # query words the KB never uses count this much against coverage
    margin: float = 1.0  # confidence bonus per unit of lead over the next entry
    entry_cover: float = 0.3  # weight of "the entry's wordings together cover the query's words"
    candidates: int = 24  # wordings re-ranked with rapidfuzz
    long_posting: int = 256  # posting lists longer than this never create candidates
    max_candidates: int = 300  # candidates kept before long lists are consulted
    max_df_ratio: float = 0.3  # features in more entries than this are treated as stopwords

    def kind_weight(self, feature: str) -> float:
        kind = feature[0]
        if kind == "w":
            return self.word
        if kind == "b":
            return self.bigram
        return self.pinyin


@dataclass(frozen=True, slots=True)
class Match:
    """One KB entry scored against a query; `score` in [0, 1], `wording` the best variant."""

    entry: KBEntry
    score: float
    wording: str
    # Share of the query's word weight (idf; words unknown to the KB at the highest idf) that
    # appears anywhere in the entry's wordings: what the entry leaves unexplained.
    coverage: float = 1.0


class QuestionIndex:
    """Built once per KB (the expensive part); `search` is cheap and thread-safe to read."""

    def __init__(
        self,
        kb: KnowledgeBase,
        normalizer: Normalizer,
        extractor: FeatureExtractor,
        weights: ScoringWeights | None = None,
    ) -> None:
        self._normalizer = normalizer
        self._extractor = extractor
        self.weights = weights or ScoringWeights()
        entries = [e for e in kb.entries if e.enabled]
        self._entries = entries
        doc_entry = array("i")
        doc_text: list[str] = []
        # Tuples of shared (interned) strings: sets per wording would dominate peak memory.
        doc_feats: list[tuple[str, ...]] = []
        interned: dict[str, str] = {}
        entry_df: dict[str, int] = {}
        entry_words: list[tuple[str, ...]] = []
        for entry_no, entry in enumerate(entries):
            seen_in_entry: set[str] = set()
            texts = {self._normalizer.normalize(q) for q in entry.all_questions}
            for text in sorted(texts):
                if not text:
                    continue
                feats = tuple(interned.setdefault(f, f) for f in extractor.features(text))
                doc_entry.append(entry_no)
                doc_text.append(text.replace(" ", ""))
                doc_feats.append(feats)
                seen_in_entry.update(feats)
            for f in seen_in_entry:
                entry_df[f] = entry_df.get(f, 0) + 1
            entry_words.append(tuple(f for f in seen_in_entry if f.startswith("w:")))
        n = max(len(entries), 1)
        self._unseen_idf = math.log(1.0 + (n - 0.5) / 1.5)
        max_df = max(2, int(self.weights.max_df_ratio * n))
        idf: dict[str, float] = {}
        self._stop: set[str] = set()
        for f, df in entry_df.items():
            if df > max_df:
                self._stop.add(f)
            else:
                idf[f] = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
        self._idf = idf
        # Word features of each entry (all its wordings), for the entry-level coverage.
        self._entry_words = [tuple(f for f in words if f in idf) for words in entry_words]
        postings_docs: dict[str, array[int]] = {}
        postings_w: dict[str, array[float]] = {}
        doc_mass = array("d")
        del interned
        for doc_no, feats in enumerate(doc_feats):
            mass = 0.0
            for f in feats:
                f_idf = idf.get(f)
                if f_idf is None:
                    continue
                w = f_idf * self.weights.kind_weight(f)
                mass += w
                if f not in postings_docs:
                    postings_docs[f] = array("i")
                    postings_w[f] = array("f")
                postings_docs[f].append(doc_no)
                postings_w[f].append(w)
            doc_mass.append(mass)
        self._postings = {f: (postings_docs[f], postings_w[f]) for f in postings_docs}
        self._doc_entry = doc_entry
        self._doc_text = doc_text
        self._doc_mass = doc_mass

    @property
    def entries(self) -> Sequence[KBEntry]:
        return self._entries

    @property
    def size(self) -> int:
        """Number of indexed wordings."""
        return len(self._doc_text)

    def category_scores(self, normalized: str) -> dict[str, float]:
        """Summed overlap per category of the best candidates (the fallback intent signal)."""
        scores: dict[str, float] = {}
        for m in self.search(normalized, limit=5):
            cat = m.entry.category
            scores[cat] = scores.get(cat, 0.0) + m.score
        return scores

    def unknown_share(self, normalized: str) -> float:
        """Share of the query's content-word weight that the KB never uses at all (0..1).

        Known words count with their idf, unknown ones with the highest idf. Unknown single
        characters and numbers are left out: a lone character or a figure says little about the
        topic, while an unknown word ("期货", "社保") says the question is about something the KB
        does not cover. Words too common to be indexed are left out too."""
        known = unknown = 0.0
        for word in set(self._extractor.canonical_words(normalized)):
            feature = "w:" + word
            if feature in self._stop:
                continue
            f_idf = self._idf.get(feature)
            if f_idf is not None:
                known += f_idf
            elif len(word) > 1 and not word.isdigit():
                unknown += self._unseen_idf
        total = known + unknown
        return unknown / total if total > 0.0 else 0.0

    def search(self, normalized: str, limit: int = 10) -> list[Match]:
        """Best entries for an already normalised query, best first, one match per entry."""
        if not normalized:
            return []
        feats = self._extractor.features(normalized)
        q_mass = 0.0
        postings = self._postings
        wt = self.weights
        present: list[tuple[int, str, float]] = []
        q_words: dict[str, float] = {}
        q_word_mass = 0.0
        for f in feats:
            if f in self._stop:
                continue
            f_idf = self._idf.get(f)
            if f_idf is None:
                # Words the KB never uses still count against coverage (off-topic queries).
                if f.startswith("w:"):
                    q_mass += self._unseen_idf * wt.unseen
                    q_word_mass += self._unseen_idf
                continue
            w = f_idf * wt.kind_weight(f)
            q_mass += w
            if f.startswith("w:"):
                q_words[f] = f_idf
                q_word_mass += f_idf
            present.append((len(postings[f][0]), f, w))
        # Rarest features first: they create the candidates. Long posting lists (common words
        # of a big KB) only add to candidates that already exist, looked up by bisection, so
        # a query costs O(candidates * log n) for them instead of a full scan.
        present.sort()
        acc: dict[int, float] = {}
        deferred: list[tuple[str, float]] = []
        for length, f, w in present:
            if length > wt.long_posting and acc:
                deferred.append((f, w))
                continue
            docs, weights = postings[f]
            get = acc.get
            for doc, dw in zip(docs, weights, strict=True):
                acc[doc] = get(doc, 0.0) + dw
        if deferred:
            if len(acc) > wt.max_candidates:
                kept = heapq.nlargest(wt.max_candidates, acc.items(), key=itemgetter(1))
                acc = dict(kept)
            for f, _ in deferred:
                docs, weights = postings[f]
                size = len(docs)
                for doc in acc:
                    i = bisect_left(docs, doc)
                    if i < size and docs[i] == doc:
                        acc[doc] += weights[i]
        if not acc or q_mass <= 0.0:
            return []
        exponent = self.weights.doc_cover_exponent
        doc_mass = self._doc_mass
        ranked: list[tuple[float, int]] = []
        for doc, shared in acc.items():
            cover_d = min(1.0, shared / doc_mass[doc])
            cover_q = min(1.0, shared / q_mass)
            ranked.append((cover_d**exponent * cover_q ** (1.0 - exponent), doc))
        top = heapq.nlargest(self.weights.candidates, ranked)
        query = normalized.replace(" ", "")
        best: dict[int, tuple[float, int]] = {}
        for overlap, doc in top:
            text = self._doc_text[doc]
            ratio = fuzz.ratio(query, text) / 100.0
            partial = fuzz.partial_ratio(query, text) / 100.0 if len(query) > 1 else ratio
            score = wt.overlap * overlap + wt.ratio * ratio + wt.partial * partial
            entry_no = self._doc_entry[doc]
            if entry_no not in best or best[entry_no][0] < score:
                best[entry_no] = (score, doc)
        cover_weight = wt.entry_cover
        scored: list[tuple[float, int, int, float]] = []
        for entry_no, (score, doc) in best.items():
            if q_word_mass > 0.0:
                covered = sum(q_words.get(f, 0.0) for f in self._entry_words[entry_no])
                coverage = covered / q_word_mass
            else:
                # No word features at all (e.g. digits only): bigrams decide alone.
                coverage = 1.0
            score = (1.0 - cover_weight) * score + cover_weight * coverage
            scored.append((score, entry_no, doc, coverage))
        scored.sort(key=itemgetter(0), reverse=True)
        return [
            Match(self._entries[e], min(1.0, max(0.0, s)), self._doc_text[d], round(c, 4))
            for s, e, d, c in scored[:limit]
        ]
