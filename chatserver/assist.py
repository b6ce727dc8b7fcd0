"""Agent assist off the message path: the advisor's suggestions are worked out after the acks.

An investor's message is acknowledged and delivered first; the KB suggestions for the advisor's
console follow from this queue. When the hub is busy and several messages of one chat wait, only
the newest is worth computing: the advisor answers the latest question.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from chatserver.tasks import stop_task

log = logging.getLogger("chatserver.assist")


class AssistQueue:
    """One job waiting per conversation (a newer one replaces it in place), run one at a time."""

    def __init__(self, compute: Callable[..., Awaitable[None]]) -> None:
        self._compute = compute
        self._waiting: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.coalesced = 0  # jobs replaced by a newer one of the same chat before they ran

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
            _, args = self._waiting.popitem(last=False)
            try:
                await self._compute(*args)
            except Exception:  # noqa: BLE001 - assist is best effort; the message is delivered
                log.exception("suggestions failed")
            # Acks and deliveries that became ready meanwhile go before the next job.
            await asyncio.sleep(0)
