"""Learning loop: clustering unanswered questions."""

from bot import cluster_questions


def test_similar_questions_cluster_with_counts() -> None:
    questions = [
        "期货怎么开户",
        "期货怎么开户？",
        "怎么开期货户",
        "期货开户流程",
        "比特币在哪买",
        "比特币怎么买",
        "今天天气怎么样",
    ]
    clusters = cluster_questions(questions, threshold=0.5)
    assert clusters[0].representative == "期货怎么开户"
    assert clusters[0].count >= 3
    assert "期货怎么开户？" in clusters[0].members
    bitcoin = [c for c in clusters if "比特币怎么买" in c.members]
    assert len(bitcoin) == 1 and "比特币在哪买" in bitcoin[0].members
    assert sum(c.count for c in clusters) == len(questions)
    weather = [c for c in clusters if "今天天气怎么样" in c.members]
    assert weather[0].count == 1


def test_clusters_are_sorted_by_size_and_skip_empty_text() -> None:
    clusters = cluster_questions(["😀", "", "a b", "销户", "销户", "销户吗"], threshold=0.6)
    assert [c.count for c in clusters] == sorted((c.count for c in clusters), reverse=True)
    assert all("😀" not in c.members for c in clusters)
    assert clusters[0].count == 3


def test_threshold_one_separates_everything_distinct() -> None:
    clusters = cluster_questions(["开户", "销户", "转户"], threshold=1.0)
    assert len(clusters) == 3


def test_empty_input() -> None:
    assert cluster_questions([]) == []
