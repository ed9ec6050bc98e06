"""Every HTTP request served under an id (observability/request_context.py), answered with it in
``X-Request-ID``, and traced when tracing is on (observability/tracing.py).

Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``: that one runs the app in a task of its
own and buffers streaming answers, and MCP's answers are SSE streams. The id is also put in the
request's scope state (``request_context.REQUEST_ID_STATE``), where the MCP tool handlers find
it: the SDK answers a request's JSON-RPC messages in tasks of its session, outside this
request's context.
"""

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kamiyo.observability import tracing
from kamiyo.observability.request_context import (
    REQUEST_ID_HEADER,
    REQUEST_ID_STATE,
    TRACEPARENT_HEADER,
    request_id_for,
    serving,
)
from kamiyo.web.access_log import logged_path


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = request_id_for(headers.get(REQUEST_ID_HEADER), headers.get(TRACEPARENT_HEADER))
        scope.setdefault("state", {})[REQUEST_ID_STATE] = request_id

        path = logged_path(scope["path"])
        with (
            serving(request_id),
            tracing.http_span(scope["method"], path, headers, scope["state"]) as span,
        ):

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
                    tracing.set_status_code(span, message["status"])
                await send(message)

            await self.app(scope, receive, send_with_id)
