"""Learning loop: group the questions the bot could not answer by similarity, with counts,
so editors see which missing KB entries would help the most investors."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from bot.normalize import Normalizer


@dataclass(frozen=True, slots=True)
class Cluster:
    """`representative` is the most frequent wording; `members` the distinct original texts;
    `count` all questions in the cluster including repeats."""

    representative: str
    members: tuple[str, ...]
    count: int


def cluster_questions(
    questions: Sequence[str],
    threshold: float = 0.6,
    normalizer: Normalizer | None = None,
) -> list[Cluster]:
    """Greedy leader clustering on normalised text, most frequent wordings first.

    A question joins the first cluster whose leader is at least `threshold` similar
    (rapidfuzz token-set ratio over characters, 0..1); otherwise it leads a new cluster.
    Questions that normalise to nothing (emoji, punctuation) are skipped.
    Clusters are returned largest first; ties keep first-seen order.
    """
    norm = normalizer or Normalizer()
    counts: Counter[str] = Counter()
    originals: dict[str, list[str]] = {}
    first_seen: dict[str, int] = {}
    for position, question in enumerate(questions):
        key = norm.normalize(question).replace(" ", "")
        if not key:
            continue
        counts[key] += 1
        first_seen.setdefault(key, position)
        variants = originals.setdefault(key, [])
        if question not in variants:
            variants.append(question)
    keys = sorted(counts, key=lambda k: (-counts[k], first_seen[k]))
    leaders: list[str] = []
    # Spaced characters make token_set_ratio compare character sets, robust to word order.
    leader_spaced: list[str] = []
    groups: list[list[str]] = []
    cutoff = threshold * 100.0
    for key in keys:
        spaced = " ".join(key)
        hit = process.extractOne(
            spaced, leader_spaced, scorer=_similarity, score_cutoff=cutoff
        ) if leader_spaced else None  # fmt: skip
        if hit is None:
            leaders.append(key)
            leader_spaced.append(spaced)
            groups.append([key])
        else:
            groups[hit[2]].append(key)
    clusters: list[Cluster] = []
    for group in groups:
        members = tuple(text for key in group for text in originals[key])
        total = sum(counts[key] for key in group)
        clusters.append(Cluster(originals[group[0]][0], members, total))
    clusters.sort(key=lambda c: -c.count)
    return clusters


def _similarity(a: str, b: str, **_: object) -> float:
    # Plain ratio punishes word order; token_set alone over-merges short questions.
    # Both arrive space-separated; plain ratio must not count the spaces as shared characters.
    plain = fuzz.ratio(a.replace(" ", ""), b.replace(" ", ""))
    return (plain + fuzz.token_set_ratio(a, b)) / 2.0
