"""Background-task plumbing the shell's loops share: stopping a task, waiting on an event.

Both are cancellation-safe on Python 3.11, where asyncio.wait_for can swallow a cancel.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for event up to timeout; True if it was set. Unlike asyncio.wait_for on 3.11, a
    cancellation arriving just as the event is set is never swallowed (bpo-42130)."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
        return True
    except TimeoutError:
        return False


async def stop_task(task: asyncio.Future[Any] | None) -> None:
    """Cancel a background task and wait until it has finished unwinding."""
    if task is None or task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
