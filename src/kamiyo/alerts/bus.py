"""The change bus: how an incident change reaches the MCP sessions of every instance.

The alerts worker publishes each change, and each rule it matched, once (on whichever instance
claimed it); every instance's listeners hear it. In one process the in-memory bus is enough;
instances sharing a database share Redis pub/sub (``redis_bus.py``).
"""

import logging
from collections.abc import Callable
from typing import Protocol

from kamiyo.alerts.events import AlertMatch, IncidentChange

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
