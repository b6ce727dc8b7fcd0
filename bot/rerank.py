"""A small linear re-ranker for the top few entries of a search, learned from the KB itself.
Features of one (query, candidate) pair, the model that turns them into a score change, and
its pure-Python logistic-regression training on leave-one-out pseudo-queries."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

# What a question asks for, read from its interrogative words after normalisation (咋→怎么,
# 啥→什么, 能不能→能 are already folded). Two wordings of one entry usually ask for the same
# thing; neighbouring entries of one topic often differ only here ("多久到账" / "怎么转出").
_KIND_PATTERNS: tuple[tuple[str, str], ...] = (
    ("time", r"多久|多长时间|什么时候|几点|几天|何时|哪天|多少天|时间"),
    ("amount", r"多少|费用|收费|几个|比例|利率|利息|门槛|最低|上限"),
    ("fix", r"怎么办|怎么处理|解决|失败|不了|不能|没法|无法"),
    ("why", r"为什么|为何|怎么回事|原因"),
    ("how", r"怎么(?!办|回事|处理)|如何|怎样|流程|步骤|方法"),
    ("yes_no", r"是否|能否|可以|能不能|可不可以|会不会|要不要|是不是|有没有"),
    ("where", r"哪里|在哪|哪儿|什么地方|入口"),
    ("what", r"(?<!为)什么(?!时候)|哪些|是啥|区别|意思|含义"),
)
_KIND_RE = [(kind, re.compile(pattern)) for kind, pattern in _KIND_PATTERNS]


def question_kinds(normalized: str) -> frozenset[str]:
    """The kinds of answer a normalised question asks for (time, amount, how, why …)."""
    return frozenset(kind for kind, pattern in _KIND_RE if pattern.search(normalized))


def char_bigrams(text: str) -> set[str]:
    """Character pairs of a text without spaces (a one-character text is its own pair)."""
    if len(text) < 2:
        return {text} if text else set()
    return {text[i : i + 2] for i in range(len(text) - 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 0.0
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared)


# The feature vector, in this order. `score` is the first-stage score; the model's weight on it
# sets the scale, so the others are shipped as score units (see `Reranker`).
FEATURE_NAMES: tuple[str, ...] = (
    "score",  # first-stage entry score (0.7·wording + 0.3·coverage)
    "overlap",  # idf feature overlap of the best wording
    "ratio",  # fuzz.ratio of the best wording
    "partial",  # fuzz.partial_ratio of the best wording
    "coverage",  # share of the query's word weight found in the entry's wordings
    "kind_match",  # the query and the best wording ask the same kind of question
    "kind_clash",  # both ask a kind of question, never the same kind
    "bigram_jaccard",  # character-pair Jaccard of query and best wording (stop pairs kept)
    "length_ratio",  # shorter / longer length of query and best wording
    "shared_rare",  # highest idf of a query word the entry has (÷ highest possible idf)
    "missing_rare",  # highest idf of a known query word the entry lacks (÷ highest idf)
)


@dataclass(frozen=True, slots=True)
class Reranker:
    """score' = score + Σ weight_i · (feature_i − mean_i) over the features after `score`.

    The weights are the fitted pairwise weights divided by the fitted weight of `score`, so a
    change is in score units; subtracting the training means keeps the average score where it
    was, so the confidence bands need only a re-check, not a new scale."""

    weights: tuple[float, ...]  # one per FEATURE_NAMES[1:]
    means: tuple[float, ...]
    depth: int = 6  # entries re-scored (the first stage returns at least this many)

    def adjust(self, row: Sequence[float]) -> float:
        """Score change for one candidate's feature row (FEATURE_NAMES order)."""
        return sum(w * (f - m) for w, f, m in zip(self.weights, row[1:], self.means, strict=True))

    def to_json(self) -> str:
        return json.dumps(
            {
                "features": list(FEATURE_NAMES[1:]),
                "weights": [round(w, 6) for w in self.weights],
                "means": [round(m, 6) for m in self.means],
                "depth": self.depth,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> Reranker:
        data = json.loads(text)
        if data.get("features") != list(FEATURE_NAMES[1:]):
            raise ValueError("re-ranker weights were trained for other features")
        return cls(tuple(data["weights"]), tuple(data["means"]), int(data["depth"]))


# A training list: feature rows of the candidates for one pseudo-query, and the position of
# the right entry among them.
TrainingList = tuple[list[tuple[float, ...]], int]


def fit_reranker(
    lists: Sequence[TrainingList],
    *,
    use: Sequence[str] = FEATURE_NAMES,
    l2: float = 0.01,
    iterations: int = 25,
    depth: int = 6,
    listwise: bool = False,
) -> Reranker:
    """Logistic regression with an L2 penalty, fitted by Newton's method from zero
    (deterministic for the same lists): pairwise (the right candidate above each wrong one in
    its list) or `listwise` (the right candidate's softmax share of its list). Features not in
    `use` get weight 0; lists without their right entry only count towards the means."""
    columns = [FEATURE_NAMES.index(name) for name in use]
    if FEATURE_NAMES.index("score") not in columns:
        raise ValueError("the score feature anchors the scale and must be used")
    means = [0.0] * len(FEATURE_NAMES)
    count = 0
    groups: list[tuple[list[list[float]], int]] = []
    for rows, right in lists:
        for row in rows:
            for i, value in enumerate(row):
                means[i] += value
            count += 1
        if not 0 <= right < len(rows) or len(rows) < 2:
            continue
        picked = [[row[c] for c in columns] for row in rows]
        if listwise:
            groups.append((picked, right))
        else:
            groups += [([picked[right], x], 0) for j, x in enumerate(picked) if j != right]
    if not groups:
        raise ValueError("no training pairs: no list holds its right entry")
    means = [m / count for m in means]
    w = _newton_softmax(groups, l2, iterations)
    full = dict.fromkeys(FEATURE_NAMES, 0.0)
    for c, wi in zip(columns, w, strict=True):
        full[FEATURE_NAMES[c]] = wi
    anchor = full["score"]
    if anchor <= 0.0:
        raise ValueError("fitted score weight is not positive: the features do not rank")
    weights = tuple(full[name] / anchor for name in FEATURE_NAMES[1:])
    return Reranker(weights, tuple(means[1:]), depth)


def _newton_softmax(
    groups: list[tuple[list[list[float]], int]], l2: float, iterations: int
) -> list[float]:
    """Weights minimising the mean −log softmax probability of each group's right row
    (+ l2/2·|w|²). A group of two rows is one pair of pairwise logistic regression."""
    k = len(groups[0][0][0])
    n = len(groups)
    w = [0.0] * k
    for _ in range(iterations):
        grad = [l2 * wi for wi in w]
        hess = [[l2 if a == b else 0.0 for b in range(k)] for a in range(k)]
        for rows, right in groups:
            zs = [sum(wi * xi for wi, xi in zip(w, x, strict=True)) for x in rows]
            top = max(zs)
            es = [math.exp(z - top) for z in zs]
            total = sum(es)
            ps = [e / total for e in es]
            mean = [sum(p * x[a] for p, x in zip(ps, rows, strict=True)) for a in range(k)]
            for a in range(k):
                grad[a] += (mean[a] - rows[right][a]) / n
            for p, x in zip(ps, rows, strict=True):
                for a in range(k):
                    pa = p * x[a] / n
                    row = hess[a]
                    for b in range(a, k):
                        row[b] += pa * x[b]
            for a in range(k):
                ma = mean[a] / n
                row = hess[a]
                for b in range(a, k):
                    row[b] -= ma * mean[b]
        for a in range(k):
            for b in range(a):
                hess[a][b] = hess[b][a]
        step = _solve(hess, grad)
        w = [wi - si for wi, si in zip(w, step, strict=True)]
        if max(abs(si) for si in step) < 1e-9:
            break
    return w


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (the Hessian is small and positive definite)."""
    k = len(vector)
    m = [row[:] + [vector[i]] for i, row in enumerate(matrix)]
    for col in range(k):
        pivot = max(range(col, k), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, k):
            factor = m[r][col] / m[col][col]
            for c in range(col, k + 1):
                m[r][c] -= factor * m[col][c]
    x = [0.0] * k
    for r in range(k - 1, -1, -1):
        x[r] = (m[r][k] - sum(m[r][c] * x[c] for c in range(r + 1, k))) / m[r][r]
    return x
