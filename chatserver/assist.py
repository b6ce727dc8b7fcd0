"""Agent assist off the message path: the advisor's suggestions are worked out after the acks.

An investor's message is acknowledged and delivered first; the KB suggestions for the advisor's
console follow from this queue. When the hub is busy and several messages of one chat wait, only
the newest is worth computing: the advisor answers the latest question.

Ranking a message against the KB costs a few hundred microseconds of Python, as much as the
rest of a message's path through the hub. So by default (`assist_workers=1`) the waiting jobs
go in batches to a worker process holding its own copy of the bot: the event loop pays one
round trip per batch instead of the ranking per message, and the ranking runs on another core.
With `assist_workers=0` they are computed in the hub process, one per loop turn.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from bot import Bot, BotConfig, KnowledgeBase, Suggestion
from chatserver.tasks import stop_task

if TYPE_CHECKING:
    from chatserver.engines import Engines

log = logging.getLogger("chatserver.assist")

# What one suggestion job needs: the investor's text and the customer's risk level (for the
# suitability flag on product entries).
Job = tuple[str, str | None]


class AssistQueue:
    """One job waiting per conversation (a newer one replaces it in place); batches run in turn.

    `run_batch` gets the waiting jobs' arguments, oldest chat first, at most `batch_max` at a
    time; with `gather_s` it waits that long after the first job so a batch carries many.
    """

    def __init__(self, run_batch: Callable[[list[tuple[Any, ...]]], Awaitable[None]], *,
                 batch_max: int = 1, gather_s: float = 0.0) -> None:
        self._run_batch = run_batch
        self._batch_max = batch_max
        self._gather_s = gather_s
        self._waiting: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.coalesced = 0  # jobs replaced by a newer one of the same chat before they ran
        self.batches = 0

    def submit(self, conversation_id: str, *args: Any) -> None:
        if conversation_id in self._waiting:
            self.coalesced += 1
        self._waiting[conversation_id] = args  # an existing key keeps its place in line
        self._idle.clear()
        self._ready.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="assist")

    async def idle(self) -> None:
        """Until nothing waits and nothing runs."""
        await self._idle.wait()

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None
        self._waiting.clear()
        self._idle.set()

    async def _run(self) -> None:
        while True:
            if not self._waiting:
                self._idle.set()
                self._ready.clear()
                await self._ready.wait()
            if self._gather_s:
                await asyncio.sleep(self._gather_s)
            batch = [self._waiting.popitem(last=False)[1]
                     for _ in range(min(self._batch_max, len(self._waiting)))]
            self.batches += 1
            try:
                await self._run_batch(batch)
            except Exception:  # noqa: BLE001 - assist is best effort; the messages are delivered
                log.exception("suggestions failed")
            # Acks and deliveries that became ready meanwhile go before the next batch.
            await asyncio.sleep(0)


class InlineSuggester:
    """Suggestions computed in the hub process, with the bot the hub answers with."""

    def __init__(self, engines: Engines) -> None:
        self._engines = engines

    async def suggest_many(self, jobs: Sequence[Job]) -> list[tuple[Suggestion, ...]]:
        bot = self._engines.bot
        if bot is None:
            return [() for _ in jobs]
        return [bot.suggest(text, risk) for text, risk in jobs]

    async def close(self) -> None:
        return None


class ProcessSuggester:
    """A worker process with its own copy of the bot; one round trip per batch of suggestions.

    The worker is started on first use (a hub that never hands a chat to an advisor never
    starts it) and gets the knowledge base with the first batch and again with the first batch
    after each new version, so an edit reaches the advisors' suggestions as it reaches the bot.
    A worker that dies is replaced on the next batch; the batch it took down is computed here.
    """

    def __init__(self, engines: Engines) -> None:
        self._engines = engines
        self._pool: ProcessPoolExecutor | None = None
        self._loaded: int | None = None  # the KB version the worker holds
        self._inline = InlineSuggester(engines)
        self.restarts = 0

    async def suggest_many(self, jobs: Sequence[Job]) -> list[tuple[Suggestion, ...]]:
        engines = self._engines
        if engines.bot is None:
            return [() for _ in jobs]
        version = engines.kb_version
        if self._pool is None:
            # spawn, not fork: the hub has threads (the SQLite writer), and a forked child
            # could inherit a lock one of them held.
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=start_worker)
        kb = engines.kb_jsonl if self._loaded != version else None
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._pool, suggest_in_worker, version, kb, engines.bot_config, list(jobs))
        except (BrokenProcessPool, StaleWorker) as exc:
            log.warning("suggestion worker unusable (%s): this batch is computed here, a new worker starts next",
                        type(exc).__name__)
            await self._discard()
            return await self._inline.suggest_many(jobs)
        self._loaded = version
        return results

    async def _discard(self) -> None:
        self._loaded = None
        self.restarts += 1
        await self.close()

    def worker_pids(self) -> list[int]:
        """The worker process's pid, once started (for tests and CPU accounting)."""
        processes = getattr(self._pool, "_processes", None) or {}
        return list(processes)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


def suggester_for(engines: Engines, workers: int) -> InlineSuggester | ProcessSuggester:
    return ProcessSuggester(engines) if workers > 0 else InlineSuggester(engines)


# -- in the worker process ---------------------------------------------------------------------
class StaleWorker(Exception):
    """The worker does not hold the KB version asked for (it restarted): resend the KB."""


_worker_bot: tuple[int, Bot] | None = None

# The worker's niceness above the hub's. Suggestions are best effort and may lag; the message
# path may not. On a machine whose cores are busy the scheduler then runs the hub's event loop
# and SQLite writer first (at half load on two cores shared with the load generator, the hub's
# threads waited for a core ~30% of the time; docs/benchmarks/pipeline.md, ninth session).
WORKER_NICE = 10


def start_worker() -> None:
    """Worker start: below the hub in priority, and gone with it: a hub killed outright
    (SIGKILL, out of memory) must not leave its worker behind, holding a copy of the bot, for
    every restart."""
    os.nice(WORKER_NICE)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_when_gone, args=(parent,), name="parent-watch", daemon=True).start()


def _exit_when_gone(parent: Any) -> None:
    parent.join()  # returns once the parent's sentinel closes, i.e. the hub process is gone
    os._exit(0)


def suggest_in_worker(version: int, kb_jsonl: str | None, config: BotConfig,
                      jobs: list[Job]) -> list[tuple[Suggestion, ...]]:
    global _worker_bot
    if kb_jsonl is not None:
        kb = KnowledgeBase.from_jsonl(kb_jsonl)
        # An edit reuses the loaded tokenizer and rebuilds only the index, as in the hub.
        bot = _worker_bot[1].with_kb(kb) if _worker_bot is not None else Bot(kb, config)
        _worker_bot = (version, bot)
    if _worker_bot is None or _worker_bot[0] != version:
        raise StaleWorker(f"worker holds KB version {_worker_bot[0] if _worker_bot else None}, not {version}")
    bot = _worker_bot[1]
    return [bot.suggest(text, risk) for text, risk in jobs]
