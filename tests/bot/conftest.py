"""Shared fixtures for the bot tests: one Bot over the demo KB (jieba loads once)."""

import pytest

from bot import Bot, KnowledgeBase, load_demo_kb


@pytest.fixture(scope="session")
def demo_kb() -> KnowledgeBase:
    return load_demo_kb()


@pytest.fixture(scope="session")
def demo_bot(demo_kb: KnowledgeBase) -> Bot:
    return Bot(demo_kb)
