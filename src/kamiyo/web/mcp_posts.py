"""Two things the SDK's MCP endpoints get wrong about a POST, put right in front of them.

- **A request with a malformed id** (``"id": {…}``, ``1.5``, ``true`` or ``null``) is read by the
  SDK as a notification, because its notification model ignores unknown keys, and answered
  ``202`` with no answer at all (python-sdk issue #2057; its 2026-07-28 entry already checks for
  an ``id`` key). JSON-RPC owes such a request an Invalid Request error with a null id, and MCP
  says ids are strings or integers, never null. The body is only looked at when the SDK is about
  to answer ``202`` (a notification, rare on the hot path), so no other request is parsed twice.
- **A client that leaves mid-body** makes the SDK log "Error handling POST request" with a
  traceback at ERROR and try to answer 500 (python-sdk issue #1648). Here it is one INFO line.
  The SDK reads the whole body before its handler runs (its body-size limit), so the disconnect
  is seen there, raised from ``receive`` and caught here, before the SDK's handler sees it.

And one thing it logs wrong: the SSE transport logs a posted body that is not a JSON-RPC message
(the caller's mistake, answered 400) with a traceback at ERROR; ``QuietParseFailures`` makes
that one INFO line.
"""

import json
import logging
from collections.abc import Sequence
from typing import Any, Final

from pydantic import ValidationError
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kamiyo.web.access_log import logged_path

log = logging.getLogger(__name__)

INVALID_REQUEST: Final = -32600
MALFORMED_ID: Final = (
    'Invalid Request: "id" must be a string or an integer (not null); a notification has no "id".'
)


SSE_LOGGER: Final = "mcp.server.sse"


class QuietParseFailures(logging.Filter):
    """On the SDK's SSE logger: "Failed to parse message" with its ValidationError becomes one
    INFO line without the traceback (the caller gets its 400 from the SDK as before)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError) and record.msg == "Failed to parse message":
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            record.msg = "POST %s: refused a body that is not one JSON-RPC message"
            record.args = ("/messages/",)
            record.exc_info, record.exc_text = None, None
        return True


_QUIET_PARSE_FAILURES = QuietParseFailures()


def wrap(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """The same MCP routes, each behind ``McpPosts`` (and the SSE logger made quiet about
    unparsable bodies)."""
    logging.getLogger(SSE_LOGGER).addFilter(_QUIET_PARSE_FAILURES)  # added once
    wrapped: list[BaseRoute] = []
    for route in routes:
        if isinstance(route, Route):
            app = McpPosts(route.app)
            wrapped.append(Route(route.path, app, methods=route.methods, name=route.name))
        elif isinstance(route, Mount):
            wrapped.append(Mount(route.path, app=McpPosts(route.app), name=route.name))
        else:
            raise TypeError(f"cannot wrap {route!r}")
    return wrapped


class _ClientLeftError(Exception):
    def __init__(self, received: int) -> None:
        super().__init__(f"client left after {received} bytes of the body")
        self.received = received


class McpPosts:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = _Body(receive)
        try:
            await self.app(scope, body.receive, _Answer(send, body, scope).send)
        except _ClientLeftError as left:
            log.info(
                "POST %s: the client left after %d bytes of its body",
                logged_path(scope["path"]),
                left.received,
            )


class _Body:
    """Passes the body on as it arrives, keeping its chunks (references, not copies)."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.chunks: list[bytes] = []
        self.complete = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.chunks.append(message.get("body", b""))
            self.complete = not message.get("more_body", False)
        elif message["type"] == "http.disconnect" and not self.complete:
            raise _ClientLeftError(sum(map(len, self.chunks)))
        return message


class _Answer:
    """Passes the answer on, except a 202 to a request with a malformed id: that gets the
    Invalid Request error instead, and the SDK's empty 202 body is dropped."""

    def __init__(self, send: Send, body: _Body, scope: Scope) -> None:
        self._send = send
        self._body = body
        self._scope = scope
        self._replaced = False

    async def send(self, message: Message) -> None:
        if self._replaced:
            return
        if message["type"] == "http.response.start" and message["status"] == 202:
            kind = _malformed_id(self._body)
            if kind is not None:
                self._replaced = True
                log.info(
                    "POST %s: refused a request whose id is %s",
                    logged_path(self._scope["path"]),
                    kind,
                )
                await _invalid_request(self._send)
                return
        await self._send(message)


def _malformed_id(body: _Body) -> str | None:
    """What the id is (its JSON type), when the body is one request (an object with "method"
    and "id") whose id is neither a string nor an integer."""
    if not body.complete:
        return None
    try:
        message: Any = json.loads(b"".join(body.chunks))
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or "method" not in message or "id" not in message:
        return None
    ident = message["id"]
    if isinstance(ident, str) or (isinstance(ident, int) and not isinstance(ident, bool)):
        return None  # a well-formed request (the SSE transport answers every message 202)
    return _JSON_TYPES.get(type(ident), "neither a string nor an integer")


_JSON_TYPES: Final[dict[type, str]] = {
    dict: "an object",
    list: "an array",
    float: "a decimal number",
    bool: "a boolean",
    type(None): "null",
}


async def _invalid_request(send: Send) -> None:
    answer = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": INVALID_REQUEST, "message": MALFORMED_ID},
    }
    content = json.dumps(answer).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})
