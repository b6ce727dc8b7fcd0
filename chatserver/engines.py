"""The live bot and compliance engines, built off the event loop and swapped in one assignment.

Their source of truth is the versioned knowledge base and rule set in the database; any node
that stores a new version tells the others over the bus, and each rebuilds and swaps.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from bot import Bot, BotConfig, KnowledgeBase, load_demo_kb
from chatserver.storage.sql import SQLStore
from chatserver.tasks import stop_task
from compliance import ComplianceEngine, RuleSet, load_default_rules, load_demo_products

# How long shutdown lets a background engine refresh finish its read before stopping it.
REFRESH_DRAIN_S = 2.0

log = logging.getLogger("chatserver.engines")


@dataclass(frozen=True, slots=True)
class Versioned:
    version: int
    jsonl: str


class Engines:
    """Holds the current Bot and ComplianceEngine; readers just use the attributes."""

    def __init__(self, store: SQLStore, bot_config: BotConfig | None = None):
        self._store = store
        self._bot_config = bot_config or BotConfig()
        self.bot: Bot | None = None
        self.compliance: ComplianceEngine | None = None
        self.kb: KnowledgeBase | None = None
        self.rules: RuleSet | None = None
        self.kb_version = 0
        self.kb_jsonl = ""  # the KB the bot was built from (the suggestion worker builds its copy from it)
        self.rules_version = 0
        self._lock = asyncio.Lock()
        self._refreshing: set[asyncio.Task[None]] = set()

    async def seed(self, now: float | None = None) -> None:
        """Store the shipped KB and rule set as version 1 if the database has none yet."""
        now = time.time() if now is None else now
        if await self._store.latest_version("kb") is None:
            await self._store.add_version("kb", load_demo_kb().to_jsonl(), None, "demo knowledge base", now)
        if await self._store.latest_version("rules") is None:
            await self._store.add_version("rules", load_default_rules().to_jsonl(), None, "default rule set", now)

    async def load(self, now: float | None = None) -> None:
        """Build both engines from the newest stored versions, seeding them on first start."""
        await self.seed(now)
        kb = await self._store.latest_version("kb")
        rules = await self._store.latest_version("rules")
        assert kb is not None and rules is not None
        await asyncio.gather(self.use_kb(*kb), self.use_rules(*rules))

    async def use_kb(self, version: int, jsonl: str) -> None:
        async with self._lock:
            if version <= self.kb_version:
                return
            kb, bot = await asyncio.to_thread(self._build_bot, jsonl)
            self.kb, self.bot, self.kb_version, self.kb_jsonl = kb, bot, version, jsonl
            freeze_heap()
            log.info("knowledge base version %d in use (%d entries)", version, len(kb.entries))

    async def use_rules(self, version: int, jsonl: str) -> None:
        async with self._lock:
            if version <= self.rules_version:
                return
            rules, engine = await asyncio.to_thread(_build_compliance, jsonl)
            self.rules, self.compliance, self.rules_version = rules, engine, version
            freeze_heap()
            log.info("compliance rules version %d in use", version)

    def refresh_soon(self) -> None:
        """`refresh` in the background, for a bus notice's callback, which cannot wait for it.

        The task is held here and stopped by `close`: one left running when the process shuts
        down would be dropped in the middle of a read, its database connection never returned.
        """
        task = asyncio.get_running_loop().create_task(self.refresh(), name="engines-refresh")
        self._refreshing.add(task)
        task.add_done_callback(self._refreshed)

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        self._refreshing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("engines not refreshed; the next notice tries again", exc_info=task.exception())

    async def close(self) -> None:
        """End background refreshes before the store they read from closes: each gets
        `REFRESH_DRAIN_S` to finish its read (milliseconds), then what is left is stopped. A
        read cancelled in the middle can leave its connection to the garbage collector
        (SQLAlchemy then warns that it terminated a connection never checked in)."""
        if self._refreshing:
            await asyncio.wait(set(self._refreshing), timeout=REFRESH_DRAIN_S)
        for task in list(self._refreshing):
            await stop_task(task)

    async def refresh(self) -> None:
        """Pick up versions stored by another node (called on a bus notice)."""
        for kind, use in (("kb", self.use_kb), ("rules", self.use_rules)):
            latest = await self._store.latest_version(kind)
            if latest:
                await use(*latest)

    def _build_bot(self, jsonl: str) -> tuple[KnowledgeBase, Bot]:
        if self.bot is not None:
            # An edit: reuse the loaded tokenizer and only rebuild the index (much faster).
            kb = KnowledgeBase.from_jsonl(jsonl)
            return kb, self.bot.with_kb(kb)
        return _built_bot(hashlib.sha256(jsonl.encode()).hexdigest(), jsonl, self._bot_config)

    @property
    def bot_config(self) -> BotConfig:
        return self._bot_config

    def status(self) -> dict[str, Any]:
        return {"kb_version": self.kb_version, "rules_version": self.rules_version}


# Engines are immutable, so a version already built in this process is shared rather than
# rebuilt (building the bot initialises jieba, about a second).
@functools.lru_cache(maxsize=4)
def _built_bot(digest: str, jsonl: str, config: BotConfig) -> tuple[KnowledgeBase, Bot]:
    kb = KnowledgeBase.from_jsonl(jsonl)
    return kb, Bot(kb, config)


@functools.lru_cache(maxsize=4)
def _built_compliance(digest: str, jsonl: str) -> tuple[RuleSet, ComplianceEngine]:
    rules = RuleSet.from_jsonl(jsonl)
    return rules, ComplianceEngine(rules, products=load_demo_products())


def _build_compliance(jsonl: str) -> tuple[RuleSet, ComplianceEngine]:
    return _built_compliance(hashlib.sha256(jsonl.encode()).hexdigest(), jsonl)


def freeze_heap() -> None:
    """Move what is alive now (tokenizer dictionary, indexes, automata) out of the collector's sight.

    The engines hold a few hundred thousand long-lived objects; every full collection would walk
    them all (about 60 ms here), a pause every message in flight waits out. Frozen objects are
    never scanned; the ones an edit replaces stay in memory, a bounded cost per KB or rule edit.
    """
    gc.collect()
    gc.freeze()
