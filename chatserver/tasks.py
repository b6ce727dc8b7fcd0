"""Background-task plumbing the shell's loops share: stopping a task, waiting on an event.

Both are cancellation-safe on Python 3.11, where asyncio.wait_for can swallow a cancel.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("chatserver.tasks")


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for event up to timeout; True if it was set. Unlike asyncio.wait_for on 3.11, a
    cancellation arriving just as the event is set is never swallowed (bpo-42130)."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
        return True
    except TimeoutError:
        return False


async def stop_task(task: asyncio.Future[Any] | None, within: float | None = None) -> None:
    """Cancel a background task and wait until it has finished unwinding, or at most `within`
    seconds: a task that outlives its cancel is logged and left behind, so that one loop that
    swallowed its cancellation cannot hang a node's shutdown."""
    if task is None or task.done():
        return
    task.cancel()
    if within is not None:
        await asyncio.wait({task}, timeout=within)
        if not task.done():
            log.warning("task %s did not stop within %.1f s of its cancel", _name(task), within)
            return
    try:
        await task
    except asyncio.CancelledError:
        pass


def _name(task: asyncio.Future[Any]) -> str:
    return task.get_name() if isinstance(task, asyncio.Task) else repr(task)
