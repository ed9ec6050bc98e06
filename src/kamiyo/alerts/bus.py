"""The change bus: how an incident change reaches the MCP sessions of every instance.

The alerts worker publishes each change, and each rule it matched, once (on whichever instance
claimed it); every instance's listeners hear it. In one process the in-memory bus is enough;
instances sharing a database share Redis pub/sub (``redis_bus.py``).
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol

from kamiyo.alerts.events import AlertMatch, IncidentChange
from kamiyo.config import Settings

log = logging.getLogger(__name__)

Event = IncidentChange | AlertMatch
Listener = Callable[[Event], None]


class ChangeBus(Protocol):
    async def publish(self, event: Event) -> None:
        """Tell every listener, on every instance, of ``event``."""
        ...

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Register a listener (synchronous, must not raise); returns its unsubscribe."""
        ...


class MemoryBus:
    """One process's bus: publishing calls each local listener in turn."""

    def __init__(self) -> None:
        self._listeners: dict[object, Listener] = {}

    async def publish(self, event: Event) -> None:
        self.deliver(event)

    def deliver(self, event: Event) -> None:
        for listener in list(self._listeners.values()):
            try:
                listener(event)
            except Exception:  # one broken listener must not starve the others
                log.exception("a change listener failed")

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        token = object()
        self._listeners[token] = listener

        def unsubscribe() -> None:
            self._listeners.pop(token, None)

        return unsubscribe


@asynccontextmanager
async def change_bus(
    settings: Settings, local: MemoryBus | None = None
) -> AsyncIterator[ChangeBus]:
    """The bus to publish on: Redis pub/sub when instances share Redis, telling ``local`` (this
    instance's listeners) what arrives; without Redis, ``local`` itself."""
    local = local or MemoryBus()
    if not settings.redis.url:
        yield local
        return
    from kamiyo.alerts.redis_bus import RedisBus  # redis: only where instances share it

    bus = RedisBus(settings.redis.url, settings.redis.prefix, local)
    reader = asyncio.create_task(bus.read(), name="kamiyo-change-bus")
    try:
        yield bus
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await bus.aclose()
