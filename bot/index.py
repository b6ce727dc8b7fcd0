"""Inverted index over every wording of every enabled KB entry, with fuzzy re-ranking.
Candidates come from idf-weighted feature overlap; the top few are re-scored with rapidfuzz."""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, replace
from operator import itemgetter

from rapidfuzz import fuzz

from bot.features import FeatureExtractor
from bot.kb import KBEntry, KnowledgeBase
from bot.normalize import Normalizer
from bot.rerank import Reranker, char_bigrams, jaccard, question_kinds


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
    margin: float = 2.0  # confidence bonus per unit of lead over the next entry (calibrated)
    entry_cover: float = 0.3  # weight of "the entry's wordings together cover the query's words"
    candidates: int = 24  # wordings re-ranked with rapidfuzz
    long_posting: int = 256  # posting lists longer than this never create candidates
    # Lists longer than this (the common words of a small KB: 基金, 股票, 多少) create no
    # candidates once there are `candidates` and the features still to come weigh less than
    # `common_share` of the query: they only add to the candidates there are.
    # 48 until the fifteenth session's KB enrichment (~17% more wordings, longer lists): 64
    # keeps the rankings this cut changes under a tenth (tests/bot/test_bot_search_exact.py).
    common_posting: int = 64
    common_share: float = 0.2
    max_candidates: int = 300  # candidates kept before long lists are consulted
    max_df_ratio: float = 0.3  # features in more entries than this are treated as stopwords

    def kind_weight(self, feature: str) -> float:
        kind = feature[0]
        if kind == "w":
            return self.word
        if kind == "b":
            return self.bigram
        return self.pinyin


# One indexed feature: posting documents, its overlap weight in a wording (float32 value),
# its weight in a query, its idf, and the number of its posting list (features with the same
# documents share one list: a character bigram and its pinyin bigram usually do).
_Feature = tuple["array[int]", float, float, float, int]


@dataclass(frozen=True, slots=True)
class Query:
    """A normalised message tokenised once: canonical words and matching features."""

    normalized: str
    words: list[str]
    features: set[str]


@dataclass(frozen=True, slots=True)
class Match:
    """One KB entry scored against a query; `score` in [0, 1], `wording` the best variant."""

    entry: KBEntry
    score: float
    wording: str
    # Share of the query's word weight (idf; words unknown to the KB at the highest idf) that
    # appears anywhere in the entry's wordings: what the entry leaves unexplained.
    coverage: float = 1.0
    # Parts of the best wording's score, for the re-ranker and for diagnostics.
    overlap: float = 0.0
    ratio: float = 0.0
    partial: float = 0.0


class QuestionIndex:
    """Built once per KB (the expensive part); `search` is cheap and thread-safe to read."""

    def __init__(
        self,
        kb: KnowledgeBase,
        normalizer: Normalizer,
        extractor: FeatureExtractor,
        weights: ScoringWeights | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self._normalizer = normalizer
        self._extractor = extractor
        self.weights = weights or ScoringWeights()
        # Optional second stage (bot/rerank.py); off unless a trained model is given.
        self._reranker = reranker
        entries = [e for e in kb.entries if e.enabled]
        self._entries = entries
        # Entry id -> position, for the re-ranker's features: built on first use, so an index
        # without a re-ranker does not carry it (0.5 MB at 10,000 entries).
        self._entry_no: dict[str, int] | None = None
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
                # Sorted: sums over a wording's or an entry's features (its mass, the entry
                # coverage) then add in the same order in every process, whatever the string
                # hash seed, so exact ties between entries resolve the same way everywhere.
                feats = tuple(interned.setdefault(f, f) for f in sorted(extractor.features(text)))
                doc_entry.append(entry_no)
                doc_text.append(text.replace(" ", ""))
                doc_feats.append(feats)
                seen_in_entry.update(feats)
            for f in seen_in_entry:
                entry_df[f] = entry_df.get(f, 0) + 1
            entry_words.append(tuple(sorted(f for f in seen_in_entry if f.startswith("w:"))))
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
        # Word features of each entry (all its wordings), for the entry-level coverage.
        self._entry_words = [tuple(f for f in words if f in idf) for words in entry_words]
        postings_docs: dict[str, array[int]] = {}
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
                postings_docs[f].append(doc_no)
            doc_mass.append(mass)
        # Everything a query needs about one feature in one lookup: its postings, the weight
        # it adds to a wording's overlap (the same for every wording, stored as float32 as the
        # posting weights used to be), its query weight and its idf.
        # Identical posting lists are stored once and numbered in key order, so a query walks
        # each list once however many of its features share it (bigram and pinyin bigram of
        # the same characters, a word and its only bigram): a third fewer postings visited.
        self._features: dict[str, _Feature] = {}
        # Lists are compared only with lists of the same length and ends (no copy of every
        # list as a key: the build's peak memory stays where it was).
        same_shape: dict[tuple[int, int, int], list[tuple[int, array[int]]]] = {}
        lists = 0
        for f in sorted(postings_docs):
            docs = postings_docs[f]
            candidates = same_shape.setdefault((len(docs), docs[0], docs[-1]), [])
            found = next((c for c in candidates if c[1] == docs), None)
            if found is None:
                number = lists
                lists += 1
                candidates.append((number, docs))
            else:
                number, docs = found
            w = idf[f] * self.weights.kind_weight(f)
            self._features[f] = (docs, array("f", (w,))[0], w, idf[f], number)
        del same_shape
        # Per wording, its features with long posting lists, in the order a query visits
        # features (posting length, list, then key): a query adds those to its candidates by
        # looking at the candidates, not at the long lists.
        long_rank = {
            f: (len(info[0]), info[4], f)
            for f, info in self._features.items()
            if len(info[0]) > self.weights.long_posting
        }
        self._doc_long: list[tuple[str, ...]] = [
            tuple(sorted((f for f in feats if f in long_rank), key=long_rank.__getitem__))
            if long_rank
            else ()
            for feats in doc_feats
        ]
        self._doc_entry = doc_entry
        self._doc_text = doc_text
        self._doc_len = array("i", (len(t) for t in doc_text))
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

    def analyze(self, normalized: str) -> Query:
        """Tokenise a normalised message once, for `search_query` and `unknown_share_of`."""
        words, feats = self._extractor.analyze(normalized)
        return Query(normalized, words, feats)

    def unknown_share(self, normalized: str) -> float:
        """`unknown_share_of` a normalised message."""
        return self.unknown_share_of(self.analyze(normalized))

    def unknown_share_of(self, query: Query) -> float:
        """Share of the query's content-word weight that the KB never uses at all (0..1).

        Known words count with their idf, unknown ones with the highest idf. Unknown single
        characters and numbers are left out: a lone character or a figure says little about the
        topic, while an unknown word ("期货", "社保") says the question is about something the KB
        does not cover. Words too common to be indexed are left out too."""
        known = unknown = 0.0
        for word in sorted(set(query.words)):
            feature = "w:" + word
            if feature in self._stop:
                continue
            info = self._features.get(feature)
            if info is not None:
                known += info[3]
            elif len(word) > 1 and not word.isdigit():
                unknown += self._unseen_idf
        total = known + unknown
        return unknown / total if total > 0.0 else 0.0

    def search(self, normalized: str, limit: int = 10) -> list[Match]:
        """Best entries for an already normalised query, best first, one match per entry."""
        if not normalized:
            return []
        return self.search_query(self.analyze(normalized), limit)

    def search_query(self, query: Query, limit: int = 10) -> list[Match]:
        """`search` for an analysed query."""
        wt = self.weights
        known = self._features
        stop = self._stop
        unseen_idf = self._unseen_idf
        q_mass = 0.0
        present: list[tuple[int, int, str, float]] = []
        q_words: dict[str, float] = {}
        q_word_mass = 0.0
        for f in sorted(query.features):  # a fixed order of the sums below (see __init__)
            info = known.get(f)
            if info is None:
                # Words the KB never uses still count against coverage (off-topic queries).
                if f[0] == "w" and f not in stop:
                    q_mass += unseen_idf * wt.unseen
                    q_word_mass += unseen_idf
                continue
            w = info[2]
            q_mass += w
            if f[0] == "w":
                q_words[f] = info[3]
                q_word_mass += info[3]
            present.append((len(info[0]), info[4], f, w))
        # Rarest features first: they create the candidates. Common features (posting lists
        # longer than `common_posting`) create candidates only while there are fewer than
        # `candidates`; after that they only add to the candidates there are. Long posting lists
        # (common words of a big KB) only add to candidates that already exist, found through
        # each candidate's own list of long features, so a query never scans them. Features
        # that share a posting list are next to each other and walk it once; every wording's
        # sum runs in `present` order (the order of a sum decides the last bit of the score).
        present.sort()
        # The query weight of the features from each position on (a wording holding only
        # those could share at most that much with the query).
        rest = [0.0] * (len(present) + 1)
        for j in range(len(present) - 1, -1, -1):
            rest[j] = rest[j + 1] + present[j][3]
        common_rest = wt.common_share * q_mass
        acc: dict[int, float] = {}
        deferred: list[str] = []
        i = 0
        n_present = len(present)
        while i < n_present:
            length, number, f, _ = present[i]
            i += 1
            if length > wt.long_posting and acc:
                deferred.append(f)
                continue
            docs, dw = known[f][:2]
            weights = [dw]
            while i < n_present and present[i][1] == number:
                # The same list again: add each weight in turn, as separate walks would.
                weights.append(known[present[i][2]][1])
                i += 1
            if not acc:
                total = 0.0
                for weight in weights:
                    total += weight
                acc = dict.fromkeys(docs, total)
                continue
            get = acc.get
            if (
                length > wt.common_posting
                and len(acc) >= wt.candidates
                and rest[i - len(weights)] < common_rest
            ):
                # Only wordings that are candidates already.
                if len(weights) == 1:
                    for doc in docs:
                        so_far = get(doc)
                        if so_far is not None:
                            acc[doc] = so_far + dw
                else:
                    for doc in docs:
                        so_far = get(doc)
                        if so_far is not None:
                            for weight in weights:
                                so_far += weight
                            acc[doc] = so_far
                continue
            if len(weights) == 1:
                for doc in docs:
                    acc[doc] = get(doc, 0.0) + dw
            elif len(weights) == 2:
                dw2 = weights[1]
                for doc in docs:
                    acc[doc] = get(doc, 0.0) + dw + dw2
            else:
                for doc in docs:
                    total = get(doc, 0.0)
                    for weight in weights:
                        total += weight
                    acc[doc] = total
        if deferred:
            if len(acc) > wt.max_candidates:
                kept = heapq.nlargest(wt.max_candidates, acc.items(), key=itemgetter(1))
                acc = dict(kept)
            # Each candidate gets the deferred features it holds, in `present` order like the
            # others (the order of a sum decides the last bit of the score).
            added = {f: known[f][1] for f in deferred}
            doc_long = self._doc_long
            for doc in acc:
                total = acc[doc]
                for f in doc_long[doc]:
                    extra = added.get(f)
                    if extra is not None:
                        total += extra
                acc[doc] = total
        if not acc or q_mass <= 0.0:
            return []
        exponent = wt.doc_cover_exponent
        q_exponent = 1.0 - exponent
        doc_mass = self._doc_mass
        # min(1.0, x) spelt out: the same value, without a call per candidate.
        ranked = [
            (
                ((d if (d := shared / doc_mass[doc]) < 1.0 else 1.0) ** exponent)
                * ((q if (q := shared / q_mass) < 1.0 else 1.0) ** q_exponent),
                doc,
            )
            for doc, shared in acc.items()
        ]
        # Same order as heapq.nlargest (documented equivalent); sorting is faster when the
        # list is short, the heap when it is long.
        if len(ranked) <= 4 * wt.candidates:
            top = sorted(ranked, reverse=True)[: wt.candidates]
        else:
            top = heapq.nlargest(wt.candidates, ranked)
        reranker = self._reranker
        if reranker is None:
            return self._rerank(query, top, q_words, q_word_mass, limit)
        matches = self._rerank(query, top, q_words, q_word_mass, max(limit, reranker.depth))
        return self.apply_reranker(reranker, query, matches, q_words)[:limit]

    def apply_reranker(
        self,
        reranker: Reranker,
        query: Query,
        matches: list[Match],
        q_words: dict[str, float] | None = None,
    ) -> list[Match]:
        """The first `reranker.depth` matches re-scored and re-sorted (the rest follow as
        they were, below them)."""
        head = matches[: reranker.depth]
        rows = self.candidate_features(query, head, q_words)
        adjusted = [
            (m.score + reranker.adjust(row), pos, m)
            for pos, (m, row) in enumerate(zip(head, rows, strict=True))
        ]
        # Equal scores keep the first stage's order; the score is clipped after sorting.
        adjusted.sort(key=lambda item: (-item[0], item[1]))
        rescored = [replace(m, score=min(1.0, max(0.0, s))) for s, _, m in adjusted]
        return rescored + matches[reranker.depth :]

    def query_words(self, query: Query) -> dict[str, float]:
        """The query's word features the KB knows, with their idf."""
        known = self._features
        return {f: info[3] for f in query.features if f[0] == "w" and (info := known.get(f))}

    def candidate_features(
        self, query: Query, matches: Sequence[Match], q_words: dict[str, float] | None = None
    ) -> list[tuple[float, ...]]:
        """Re-ranker feature rows (`bot.rerank.FEATURE_NAMES` order), one per match."""
        if q_words is None:
            q_words = self.query_words(query)
        text = query.normalized.replace(" ", "")
        q_bigrams = char_bigrams(text)
        q_kinds = question_kinds(query.normalized)
        top_idf = self._unseen_idf
        entry_no_of = self._entry_no
        if entry_no_of is None:
            entry_no_of = {e.id: no for no, e in enumerate(self._entries)}
            self._entry_no = entry_no_of  # the same dict whoever builds it first
        rows: list[tuple[float, ...]] = []
        for m in matches:
            entry_no = entry_no_of[m.entry.id]
            kinds = question_kinds(m.wording)
            entry_words = set(self._entry_words[entry_no])
            shared = [idf for f, idf in q_words.items() if f in entry_words]
            missing = [idf for f, idf in q_words.items() if f not in entry_words]
            d_len, q_len = len(m.wording), len(text)
            rows.append(
                (
                    m.score,
                    m.overlap,
                    m.ratio,
                    m.partial,
                    m.coverage,
                    1.0 if q_kinds & kinds else 0.0,
                    1.0 if q_kinds and kinds and not q_kinds & kinds else 0.0,
                    jaccard(q_bigrams, char_bigrams(m.wording)),
                    min(d_len, q_len) / max(d_len, q_len, 1),
                    max(shared, default=0.0) / top_idf,
                    max(missing, default=0.0) / top_idf,
                )
            )
        return rows

    def _rerank(
        self,
        query: Query,
        top: list[tuple[float, int]],
        q_words: dict[str, float],
        q_word_mass: float,
        limit: int,
    ) -> list[Match]:
        """Fuzzy re-ranking of the best wordings, then entry coverage; the top `limit` entries.

        The rapidfuzz calls are most of the cost, so a wording is scored only if it could still
        reach the top `limit` and beat its entry's best wording so far: first with the best
        ratio its length allows and a perfect partial score, then with its real ratio and the
        best partial score that ratio allows. Every step of the score is monotone in both, in
        floating point too, so a skipped wording cannot change the result
        (tests/bot/test_bot_search_exact.py compares it with scoring every wording)."""
        wt = self.weights
        w_overlap, w_ratio, w_partial = wt.overlap, wt.ratio, wt.partial
        cover_weight = wt.entry_cover
        keep = 1.0 - cover_weight
        text = query.normalized.replace(" ", "")
        q_len = len(text)
        doc_entry = self._doc_entry
        doc_text = self._doc_text
        doc_len = self._doc_len
        entry_words = self._entry_words
        coverage: dict[int, float] = {}
        bounds: list[tuple[float, int]] = []
        for pos, (overlap, doc) in enumerate(top):
            entry_no = doc_entry[doc]
            cov = coverage.get(entry_no)
            if cov is None:
                if q_word_mass > 0.0:
                    hits = [q_words[f] for f in entry_words[entry_no] if f in q_words]
                    cov = sum(hits) / q_word_mass
                else:
                    cov = 1.0  # no word features at all (e.g. digits only): bigrams decide
                coverage[entry_no] = cov
            # fuzz.ratio is 2·LCS / (sum of lengths) ≤ 2·shorter / sum; the margin covers
            # rapidfuzz's own rounding.
            d_len = doc_len[doc]
            ratio_cap = 2.0 * min(q_len, d_len) / (q_len + d_len) + 1e-9
            bound = (
                keep * (w_overlap * overlap + w_ratio * ratio_cap + w_partial) + cover_weight * cov
            )
            bounds.append((bound, pos))
        bounds.sort(reverse=True)
        exact: dict[int, float] = {}  # position in `top` -> wording score
        parts: dict[int, tuple[float, float, float]] = {}  # -> overlap, ratio, partial
        entry_final: dict[int, float] = {}
        kth = -math.inf
        for bound, pos in bounds:
            if bound < kth:
                break  # sorted: no later wording can reach the top `limit` either
            overlap, doc = top[pos]
            entry_no = doc_entry[doc]
            # An entry scores as its best wording: one that cannot reach (strictly) the
            # entry's best so far is never chosen, not even on a tie.
            floor = entry_final.get(entry_no, -math.inf)
            if bound < floor:
                continue
            d_text = doc_text[doc]
            ratio = fuzz.ratio(text, d_text) / 100.0
            base = w_overlap * overlap + w_ratio * ratio
            if q_len > 1:
                # partial_ratio aligns the shorter string (length m) with windows of the
                # longer: its LCS with any window is at most the LCS of the whole strings,
                # L = ratio·(sum of lengths)/2, and 2·LCS/(m + window) ≤ 2L/(m + L).
                d_len = doc_len[doc]
                lcs = ratio * (q_len + d_len) / 2.0
                partial_cap = 2.0 * lcs / (min(q_len, d_len) + lcs) + 1e-9 if lcs else 1e-9
                cov = cover_weight * coverage[entry_no]
                need = kth if kth > floor else floor
                if keep * (base + w_partial * partial_cap) + cov < need:
                    continue
                partial = fuzz.partial_ratio(text, d_text) / 100.0
            else:
                partial = ratio  # partial_ratio of one character says nothing more
            score = base + w_partial * partial
            exact[pos] = score
            parts[pos] = (overlap, ratio, partial)
            final = keep * score + cover_weight * coverage[entry_no]
            if final > entry_final.get(entry_no, -math.inf):
                entry_final[entry_no] = final
                if len(entry_final) >= limit:
                    kth = sorted(entry_final.values(), reverse=True)[limit - 1]
        # Best wording per entry in the original order of `top`, so ties resolve as before;
        # an entry keeps its place even when its first wording was skipped.
        best: dict[int, tuple[float, int, int] | None] = {}
        for pos, (_, doc) in enumerate(top):
            entry_no = doc_entry[doc]
            wording_score = exact.get(pos)
            if wording_score is None:
                best.setdefault(entry_no, None)
                continue
            current = best.get(entry_no)
            if current is None or current[0] < wording_score:
                best[entry_no] = (wording_score, doc, pos)
        scored = [
            (keep * found[0] + cover_weight * coverage[e], e, found[1], coverage[e], found[2])
            for e, found in best.items()
            if found is not None
        ]
        scored.sort(key=itemgetter(0), reverse=True)
        return [
            Match(self._entries[e], min(1.0, max(0.0, s)), doc_text[d], round(c, 4), *parts[pos])
            for s, e, d, c, pos in scored[:limit]
        ]
