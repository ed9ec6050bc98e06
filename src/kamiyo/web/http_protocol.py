"""uvicorn's HTTP protocol with the connection registry's watch (web/connections.py).

The phase of a connection is read off uvicorn's own state, the same in its h11 and httptools
protocols: a new ``cycle`` is a request whose head was parsed, its ``more_body`` says whether
the body is still coming, its ``response_complete`` whether the answer went out.
"""

import asyncio
from asyncio import Protocol
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.http.h11_impl import H11Protocol

from kamiyo.web.connections import Closure, Phase, Registry, Tracked

# What a client is told when its connection is closed with an answer.
ANSWERS = {
    408: ("Request Timeout", "The request took too long to arrive.", None),
    429: ("Too Many Requests", "Too many connections from your address; reuse one.", 5),
    503: ("Service Unavailable", "The server holds all the connections it can; retry.", 5),
}


def plain_answer(status: int) -> bytes:
    """A whole HTTP/1.1 answer that ends the connection, written past the parser: at these
    points h11 would refuse to send one (no request head was parsed yet)."""
    reason, text, retry_after = ANSWERS[status]
    body = text.encode() + b"\n"
    retry = f"retry-after: {retry_after}\r\n" if retry_after else ""
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n{retry}\r\n"
    )
    return head.encode() + body


if TYPE_CHECKING:
    _Protocol = H11Protocol
else:
    _Protocol = object


class GuardedProtocol(_Protocol):
    """uvicorn's HTTP protocol (the class it is mixed into), reporting to the registry."""

    registry: ClassVar[Registry]
    trusted: ClassVar[Callable[[str], bool]]  # proxies, whose connections carry many clients
    tracked: Tracked

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peer = self.client[0] if self.client else ""
        self.tracked = Tracked(peer, capped=not type(self).trusted(peer), close=self._close_for)
        self.registry.admit(self.tracked)

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.release(self.tracked)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.tracked.phase is Phase.IDLE:  # the next request begins
            self.registry.enter(self.tracked, Phase.HEAD)
        cycle = self.cycle
        super().data_received(data)
        self._follow(cycle, len(data))

    def on_response_complete(self) -> None:
        cycle = self.cycle
        super().on_response_complete()
        self._follow(cycle, 0)  # a pipelined request may have begun

    def _follow(self, previous: object, received: int) -> None:
        cycle, tracked, registry = self.cycle, self.tracked, self.registry
        if cycle is not None and cycle is not previous:
            registry.enter(tracked, Phase.BODY if cycle.more_body else Phase.BUSY)
            return
        registry.received(tracked, received)
        if cycle is None:
            return
        if tracked.phase is Phase.BODY and not cycle.more_body:
            registry.enter(tracked, Phase.IDLE if cycle.response_complete else Phase.BUSY)
        elif tracked.phase is Phase.BUSY and cycle.response_complete:
            registry.enter(tracked, Phase.IDLE)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.registry.writes_paused(self.tracked, paused=True)

    def resume_writing(self) -> None:
        super().resume_writing()
        self.registry.writes_paused(self.tracked, paused=False)

    def handle_websocket_upgrade(self, *args: Any) -> None:
        # The connection passes to the WebSocket protocol, whose loss we never hear of.
        self.registry.release(self.tracked)
        super().handle_websocket_upgrade(*args)

    def _close_for(self, closure: Closure) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        if closure is Closure.SEND_STALLED:
            transport.abort()  # close() would wait to hand over what the client does not read
            return
        if closure.status is not None and self._may_answer():
            transport.write(plain_answer(closure.status))
        transport.close()

    def _may_answer(self) -> bool:
        """Whether an answer now would be the answer to the request under way."""
        tracked = self.tracked
        if tracked.phase is Phase.HEAD:
            return tracked.received > 0  # a connection that never sent a byte is just closed
        return tracked.phase is Phase.BODY and not self.cycle.response_started


class GuardedH11Protocol(GuardedProtocol, H11Protocol):
    pass


def guarded_protocol(registry: Registry, trusted: Callable[[str], bool]) -> type[Protocol]:
    """The protocol class to give uvicorn (``Config.http``): the one it would pick itself
    (httptools when installed, else h11) with the watch, bound to ``registry``."""
    base: type[GuardedProtocol] = GuardedH11Protocol
    if AutoHTTPProtocol is not H11Protocol:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        class GuardedHttpToolsProtocol(GuardedProtocol, HttpToolsProtocol):  # type: ignore[misc]
            pass

        base = GuardedHttpToolsProtocol
    attributes = {"registry": registry, "trusted": staticmethod(trusted)}
    return type(base.__name__, (base,), attributes)
