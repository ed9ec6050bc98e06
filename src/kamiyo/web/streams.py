"""Caps on the event streams clients hold open, and a lifetime for anonymous ones.

A ``GET /mcp`` (the stream of a stateful Streamable HTTP session) or ``GET /sse`` (the legacy
transport) stays open as long as the client likes, and holds a connection that is never idle,
so no deadline of web/connections.py ends it. The SDK's ``session_idle_timeout`` does not
either: a session with an open GET stream is not idle. This ASGI wrapper, outermost around the
app (inside uvicorn's proxy-headers middleware, so the address is the client's, not a trusted
proxy's), caps open streams per client address (429) and in all (503), and ends a stream opened
without a credential after ``anonymous_s``: it tells the app the client went away (the SDK's own
path for a disconnect, which tidies the session's stream up) and then ends the HTTP answer
cleanly, so the client sees the stream end and opens another, as the MCP spec lets a server
make it do. A ``/sse`` session ends with its stream, so an anonymous legacy client starts a new
session. When the server stops (``stop``, web/graceful.py) every open stream ends the same way,
and new ones are refused (503), so no stream holds the shutdown up to its deadline.
"""

import logging
import math
from collections import Counter
from dataclasses import dataclass

import anyio
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kamiyo.web.throttled_log import Throttle

log = logging.getLogger(__name__)

# The streaming endpoints web/app.py serves (GET on its Streamable HTTP and SSE paths).
STREAM_PATHS = frozenset({"/mcp", "/sse"})
# How long the app has to stop once told its client left, and the client to take the end.
GRACE_S = 5.0
DISCONNECT: Message = {"type": "http.disconnect"}
RETRY_AFTER = (b"retry-after", b"5")


@dataclass(frozen=True)
class StreamCaps:
    total: int
    per_client: int
    anonymous_s: float


@dataclass
class _Answer:
    started: bool = False
    complete: bool = False


class StreamLimits:
    """The wrapper; one per app, counting the streams that app holds."""

    def __init__(self, app: ASGIApp, caps: StreamCaps) -> None:
        self.app = app
        self.caps = caps
        self.open = 0
        self.by_client: Counter[str] = Counter()
        self.report = Throttle(log, "refused event streams")
        self.stopping = False
        self.ending: set[anyio.Event] = set()  # one per open stream: set, it ends

    def stop(self) -> None:
        """End every open stream (as an anonymous one's lifetime ends) and refuse new ones."""
        self.stopping = True
        for end in self.ending:
            end.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_stream(scope):
            await self.app(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else ""
        refusal = self.refusal(client)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        self.open += 1
        self.by_client[client] += 1
        try:
            await self.bounded(scope, receive, send, anonymous(scope))
        finally:
            self.open -= 1
            self.by_client[client] -= 1
            if not self.by_client[client]:
                del self.by_client[client]

    def refusal(self, client: str) -> JSONResponse | None:
        caps = self.caps
        if self.stopping:
            reason = "the server is stopping"
            status, error = 503, "temporarily_unavailable"
        elif self.by_client[client] >= caps.per_client:
            reason = f"this address holds {caps.per_client} event streams, the most allowed"
            status, error = 429, "too_many_streams"
        elif self.open >= caps.total:
            reason = f"the server holds {caps.total} event streams, the most it allows"
            status, error = 503, "temporarily_unavailable"
        else:
            return None
        if self.report.admit(error):
            log.warning("Refused an event stream to %s: %s", client or "an unknown address", reason)
        return JSONResponse(
            {"error": error, "error_description": f"Refused: {reason}; close one or retry later."},
            status,
            headers={"Retry-After": "5"},
        )

    async def bounded(
        self, scope: Scope, receive: Receive, send: Send, anonymous_caller: bool
    ) -> None:
        """The app's answer, ended when the server stops, or after ``anonymous_s``."""
        expired = anyio.Event()
        answer = _Answer()

        async def receive_until_expired() -> Message:
            if expired.is_set():
                return DISCONNECT
            message = DISCONNECT
            async with anyio.create_task_group() as race:

                async def client() -> None:
                    nonlocal message
                    message = await receive()
                    race.cancel_scope.cancel()

                async def deadline() -> None:
                    await expired.wait()
                    race.cancel_scope.cancel()

                race.start_soon(client)
                race.start_soon(deadline)
            return message

        async def watched_send(message: Message) -> None:
            if answer.complete or expired.is_set():
                return  # as uvicorn drops what an app sends to a client that left
            await send_tracked(message)

        async def send_tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer.started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                answer.complete = True
            await send(message)

        async with anyio.create_task_group() as lifetime:

            async def expire() -> None:
                with anyio.move_on_after(self.caps.anonymous_s if anonymous_caller else math.inf):
                    await expired.wait()  # set by stop()
                expired.set()
                await anyio.sleep(GRACE_S)
                lifetime.cancel_scope.cancel()  # the app did not stop when told

            self.ending.add(expired)
            try:
                lifetime.start_soon(expire)
                await self.app(scope, receive_until_expired, watched_send)
                lifetime.cancel_scope.cancel()
            finally:
                self.ending.discard(expired)
        if answer.complete:
            return
        with anyio.move_on_after(GRACE_S):  # a client that reads nothing gets nothing
            if not answer.started:  # the app never answered within the lifetime
                await send_tracked(
                    {"type": "http.response.start", "status": 503, "headers": [RETRY_AFTER]}
                )
            await send_tracked({"type": "http.response.body", "body": b"", "more_body": False})


def is_stream(scope: Scope) -> bool:
    return scope["type"] == "http" and scope["method"] == "GET" and scope["path"] in STREAM_PATHS


def anonymous(scope: Scope) -> bool:
    return not any(name == b"authorization" for name, _ in scope["headers"])
