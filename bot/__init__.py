"""Knowledge-base bot and agent assist: a pure library (no I/O, no clock) used by the hub.
Matches investor questions against a Chinese securities KB, decides answer/suggest/handoff."""

from bot.clustering import Cluster, cluster_questions
from bot.engine import (
    RISK_DISCLAIMER,
    Bot,
    BotConfig,
    BotReply,
    BotState,
    Suggestion,
    customer_tolerance,
    is_suitable,
)
from bot.index import Match, ScoringWeights
from bot.kb import CATEGORIES, RISK_LEVELS, KBEntry, KBFormatError, KnowledgeBase, load_demo_kb
from bot.normalize import Normalizer
from bot.templates import QuickReply, load_quick_replies, placeholders, render_template

__all__ = [
    "CATEGORIES",
    "RISK_DISCLAIMER",
    "RISK_LEVELS",
    "Bot",
    "BotConfig",
    "BotReply",
    "BotState",
    "Cluster",
    "KBEntry",
    "KBFormatError",
    "KnowledgeBase",
    "Match",
    "Normalizer",
    "QuickReply",
    "ScoringWeights",
    "Suggestion",
    "cluster_questions",
    "customer_tolerance",
    "is_suitable",
    "load_demo_kb",
    "load_quick_replies",
    "placeholders",
    "render_template",
]
