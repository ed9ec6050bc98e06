"""The ASGI app served by ``kamiyo serve --transport http``."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from mcp.server.mcpserver import MCPServer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from kamiyo import __version__
from kamiyo.access.gate import Gate
from kamiyo.config import Settings
from kamiyo.observability.error_reports import flush_error_reports
from kamiyo.observability.tracing import flush_spans
from kamiyo.service.running import running
from kamiyo.service.state import ServerState, default_gate
from kamiyo.web import access_log, api, dashboard, docs, mcp_posts, oauth, oauth_pruning, rest
from kamiyo.web.auth import ResourceServer
from kamiyo.web.metrics_endpoint import (
    MetricsEndpoint,
    count_streamable_sessions,
    counting_sse_sessions,
)
from kamiyo.web.oauth_limits import OAuthLimits
from kamiyo.web.readiness import Readiness
from kamiyo.web.request_ids import RequestIdMiddleware
from kamiyo.web.webhooks import stripe_webhook_route

# The HTTP parser waits for a request head up to this size (its default is 16 kB), so that an
# oversized credential reaches the guard and gets a clear 401 instead of a cut connection.
MAX_REQUEST_HEAD = 256 * 1024


# How the MCP server is built for a state (mcpserver.server.build_server): handed in, so the web
# face serves MCP without importing the MCP face.
McpFactory = Callable[[ServerState], MCPServer]


def flush_integrations() -> None:
    flush_spans()
    flush_error_reports()


def create_app(
    settings: Settings,
    build_mcp: McpFactory,
    *,
    gate: Gate | None = None,
    stateless: bool = False,
    json_response: bool = False,
    host: str = "127.0.0.1",
) -> Starlette:
    """MCP at ``/mcp`` (Streamable HTTP) and ``/sse`` + ``/messages/`` (legacy SSE).

    ``stateless`` serves every request on its own, with no session to keep (any instance can
    answer any request); ``json_response`` answers with plain JSON instead of an SSE stream.
    On a loopback ``host`` the SDK's DNS-rebinding guard only lets loopback Host and Origin in.

    The MCP endpoints answer 401 to a credential the gate refuses, pointing at the OAuth
    protected resource metadata under ``/.well-known/`` (see web/auth.py); ``/healthz`` and the
    metadata need no credential.
    """
    state = ServerState(settings=settings, gate=gate or default_gate(settings))
    state.open_explorers()  # a refused URL stops the start
    server = build_mcp(state)
    streamable = server.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=stateless,
        json_response=json_response,
        host=host,
        # The SDK's own defaults, declared as settings so an operator can size them.
        session_idle_timeout=settings.http.session_idle_s,
        max_sessions=settings.http.max_sessions,
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
        async with (
            running(state),
            server.session_manager.run(),
            oauth_pruning.pruning(settings, sessions),  # expired OAuth codes and tokens
        ):
            try:
                yield
            finally:
                state.shutting_down()
        await state.aclose()
        await asyncio.to_thread(flush_integrations)  # the last spans and error reports

    def sessions() -> async_sessionmaker[AsyncSession]:
        return state.require_runtime().sessions

    async def welcome(account_pk: int) -> None:
        # Its welcome mail was queued in the outbox with the change: send it now.
        if state.alerts is not None:
            state.alerts.wake()

    # /readyz: database, Redis, schema, data age (web/readiness.py); 503 once stopping begins.
    readiness = Readiness(settings, state.require_runtime)
    state.on_shutdown.append(readiness.stopping)
    state.on_close.append(readiness.aclose)
    # /metrics for the scraper's token (web/metrics_endpoint.py); the SDK keeps its sessions in
    # a table it offers no count of, read at each scrape.
    metrics = MetricsEndpoint(settings, sessions, readiness)
    count_streamable_sessions(lambda: len(server.session_manager._server_instances))

    resource = ResourceServer(settings.site, settings.auth, state.gate)
    board = dashboard.Dashboard(state)
    oauth_limits = OAuthLimits(settings)
    state.on_close.append(oauth_limits.aclose)
    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/readyz", readiness.endpoint),
        *metrics.routes(),
        *resource.metadata_routes(["/mcp", "/sse"]),
        *resource.guard(mcp_posts.wrap(streamable.routes), "/mcp"),
        # The SSE transport's message posts belong to the resource its stream was opened on.
        *resource.guard(mcp_posts.wrap(counting_sse_sessions(sse.routes, "/sse")), "/sse"),
        *api.routes(state, resource),
        *rest.routes(state, resource),
        *docs.routes(),  # the REST API's OpenAPI document and docs page
        # The dashboard (log-in, keys, setup, plan, usage, alerts) and the files under /static/.
        *dashboard.routes(board, server),  # the server: its prompts go in the .mcpb
        dashboard.static_files(),
        # KAMIYO as its own OAuth authorization server for /mcp (with a public URL); who
        # consents is who is logged in to the dashboard.
        *oauth.routes(
            settings,
            sessions,
            limits=oauth_limits,
            account_of=board.account_of,
            login_path=dashboard.LOGIN_PAGE,
        ),
        # Stripe's deliveries decide entitlements; a first paid activation gets the welcome mail.
        stripe_webhook_route(settings, sessions, welcome),
    ]
    access_log.install(routes)  # what access-log lines show of these routes' paths
    # Every request under an id, in its log lines and answers (web/request_ids.py).
    application = Starlette(
        routes=routes, lifespan=lifespan, middleware=[Middleware(RequestIdMiddleware)]
    )
    application.state.server_state = state  # for the server's stopping hooks (web/graceful.py)
    return application


def server_state(application: Starlette) -> ServerState:
    """The state ``create_app`` serves ``application`` with."""
    state: ServerState = application.state.server_state
    return state
