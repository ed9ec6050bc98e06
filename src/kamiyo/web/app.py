"""The ASGI app served by ``kamiyo serve --transport http``."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from kamiyo import __version__
from kamiyo.config import Settings
from kamiyo.mcpserver.calls import ServerState
from kamiyo.mcpserver.server import build_server, default_gate
from kamiyo.runtime import open_runtime


def create_app(
    settings: Settings,
    *,
    stateless: bool = False,
    json_response: bool = False,
    host: str = "127.0.0.1",
) -> Starlette:
    """MCP at ``/mcp`` (Streamable HTTP) and ``/sse`` + ``/messages/`` (legacy SSE).

    ``stateless`` serves every request on its own, with no session to keep (any instance can
    answer any request); ``json_response`` answers with plain JSON instead of an SSE stream.
    On a loopback ``host`` the SDK's DNS-rebinding guard only lets loopback Host and Origin in.
    """
    state = ServerState(settings=settings, gate=default_gate(settings))
    server = build_server(state)
    streamable = server.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=stateless,
        json_response=json_response,
        host=host,
    )
    sse = server.sse_app(sse_path="/sse", message_path="/messages/", host=host)

    async def healthz(request: Request) -> JSONResponse:
        try:
            async with state.require_runtime().sessions() as session:
                await session.execute(text("SELECT 1"))
        except Exception as exc:  # report, do not raise: this is what load balancers poll
            return JSONResponse({"status": "unavailable", "error": type(exc).__name__}, 503)
        return JSONResponse({"status": "ok", "version": __version__})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_runtime(settings) as runtime:
            state.runtime = runtime
            state.gate.bind(runtime.sessions)
            async with server.session_manager.run():
                yield
            state.runtime = None

    routes: list[BaseRoute] = [Route("/healthz", healthz), *streamable.routes, *sse.routes]
    return Starlette(routes=routes, lifespan=lifespan)
