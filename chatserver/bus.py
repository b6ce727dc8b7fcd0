"""The message bus that carries events to whichever node holds the recipient's connection.

LocalBus serves one process (the embedded default); RedisBus (chatserver/redis_bus.py) lets any
node deliver to a connection on any other node. Both carry already-encoded JSON strings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from chatserver.tasks import wait_event  # noqa: F401 - kept importable from here

log = logging.getLogger("chatserver.bus")

Handler = Callable[[str], None]


def user_topic(user_id: str) -> str:
    return f"user:{user_id}"


def conversation_topic(conversation_id: str) -> str:
    return f"conv:{conversation_id}"


SUPERVISORS = "role:supervisor"
ADVISORS = "role:advisor"
CONTROL = "control"  # hub-to-hub notices: reload rules or KB, routing changes


class Bus(Protocol):
    """Topic-based publish/subscribe of encoded events; handlers must not block."""

    @property
    def healthy(self) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, topic: str, payload: str) -> None: ...

    async def subscribe(self, topic: str, handler: Handler) -> None: ...

    async def unsubscribe(self, topic: str, handler: Handler) -> None: ...


class LocalBus:
    """In-process bus: publish calls each subscriber's handler directly."""

    def __init__(self) -> None:
        self._handlers: dict[str, set[Handler]] = {}

    @property
    def healthy(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._handlers.clear()

    async def publish(self, topic: str, payload: str) -> None:
        self.deliver_local(topic, payload)

    def deliver_local(self, topic: str, payload: str) -> None:
        for handler in tuple(self._handlers.get(topic, ())):
            try:
                handler(payload)
            except Exception:  # noqa: BLE001 - one bad subscriber must not stop delivery to others
                log.exception("bus handler failed on %s", topic)

    async def subscribe(self, topic: str, handler: Handler) -> None:
        self._handlers.setdefault(topic, set()).add(handler)

    async def unsubscribe(self, topic: str, handler: Handler) -> None:
        handlers = self._handlers.get(topic)
        if handlers is not None:
            handlers.discard(handler)
            if not handlers:
                del self._handlers[topic]

    def topics(self) -> set[str]:
        return set(self._handlers)
