"""``/metrics``: Prometheus exposition (kamiyo/metrics.py, payments/metrics.py), for a scraper
holding ``KAMIYO_METRICS_TOKEN``.

With a token set, a scrape must send ``Authorization: Bearer <token>`` (compared in constant
time); 401 otherwise. Without one, only a loopback caller is answered (an agent on the same
host), and in production nobody: behind a proxy on the same host whose forwarded addresses are
not trusted, every caller would look like loopback, so production serves metrics to the token
only. Refusals are logged for the operator, one line a minute at most (a scraper retries every
few seconds).

A scrape also brings the figures read from the database up to date (subscriptions, each
source's last refresh), at most once every ``DATABASE_EVERY_S``, and runs the readiness checks
(shared with ``/readyz``, at most every 2 s), so dependency latencies are measured even where no
proxy polls ``/readyz``.
"""

import asyncio
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from kamiyo import metrics
from kamiyo.config import ConfigurationError, MetricsSettings, Settings
from kamiyo.db.tables import SourceState, Subscription
from kamiyo.service.catalogue import OPERATIONS
from kamiyo.service.refreshing import select_adapters
from kamiyo.web.readiness import Readiness
from kamiyo.web.throttled_log import Throttle

log = logging.getLogger(__name__)

# Two small grouped counts; often enough that a scrape every 15 s sees a change soon.
DATABASE_EVERY_S = 10.0
PATH = "/metrics"
TOKEN_VARIABLE = MetricsSettings.env_name("token")
WORKER_PORT_VARIABLE = MetricsSettings.env_name("worker_port")


class MetricsEndpoint:
    def __init__(
        self,
        settings: Settings,
        sessions: Callable[[], async_sessionmaker[AsyncSession]] | None = None,
        readiness: Readiness | None = None,
    ) -> None:
        """``sessions`` and ``readiness``: a serving instance's (None: the worker's metrics,
        only what its process counts)."""
        token = settings.metrics.token
        self._token = token.get_secret_value().encode() if token else None
        self._production = settings.production
        self._sessions = sessions
        self._readiness = readiness
        self._sources = frozenset(a.info.name for a in select_adapters(settings.sources))
        self._read_at: float | None = None
        self._lock = asyncio.Lock()
        self._refused = Throttle(log, "refused scrapes of /metrics")
        metrics.declare_series((op.name.value for op in OPERATIONS), self._sources)
        metrics.SOURCES_STALE_AFTER.set(settings.sources.stale_after or 0)

    def routes(self) -> list[BaseRoute]:
        return [Route(PATH, self.endpoint)]

    async def endpoint(self, request: Request) -> Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        if self._readiness is not None:
            await self._readiness.verdict()
        if self._sessions is not None:
            await self._read_database(self._sessions)
        # Laid out in a thread: pure Python over every series (milliseconds), which would
        # otherwise hold the event loop, and every call in flight, for as long.
        exposition = await asyncio.to_thread(generate_latest, REGISTRY)
        return Response(exposition, media_type=CONTENT_TYPE_LATEST)

    def _refusal(self, request: Request) -> Response | None:
        if self._token is not None:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), self._token):
                return None
            self._log_refusal("no or wrong bearer token")
            return JSONResponse(
                {"error": "unauthorized", "message": "/metrics needs the metrics bearer token."},
                401,
                headers={"WWW-Authenticate": 'Bearer realm="kamiyo-metrics"'},
            )
        if self._production:
            self._log_refusal(f"{TOKEN_VARIABLE} is not set")
            message = f"/metrics is served in production only with {TOKEN_VARIABLE} set."
        elif _is_loopback(request):
            return None
        else:
            self._log_refusal("not a loopback caller, and no token is set")
            message = f"/metrics answers loopback callers only until {TOKEN_VARIABLE} is set."
        return JSONResponse({"error": "forbidden", "message": message}, 403)

    def _log_refusal(self, why: str) -> None:
        if self._refused.admit(why):
            log.warning("refused a scrape of %s: %s", PATH, why)

    async def _read_database(
        self, sessions: Callable[[], async_sessionmaker[AsyncSession]]
    ) -> None:
        """Subscriptions and sources' state, read again when the last read is old enough; an
        unreachable database keeps the last figures (the dependency metrics show the outage)."""
        async with self._lock:
            now = time.monotonic()
            if self._read_at is not None and now - self._read_at < DATABASE_EVERY_S:
                return
            self._read_at = now
            try:
                async with sessions()() as session:
                    counts = await session.execute(
                        select(Subscription.tier, Subscription.status, func.count()).group_by(
                            Subscription.tier, Subscription.status
                        )
                    )
                    subscriptions = counts.all()
                    sources = (await session.scalars(select(SourceState))).all()
            except Exception as exc:  # a scrape must still answer: keep the last figures
                log.debug("metrics could not read the database: %s", type(exc).__name__)
                return
        metrics.SUBSCRIPTIONS.clear()  # a tier or status no longer held drops out
        for tier, status, count in subscriptions:
            metrics.SUBSCRIPTIONS.labels(tier, status).set(count)
        metrics.SOURCE_LAST_SUCCESS.clear()
        metrics.SOURCE_FAILING.clear()
        for source in sources:
            if source.name not in self._sources:  # disabled: it would look stale forever
                continue
            if source.last_success_at is not None:
                metrics.SOURCE_LAST_SUCCESS.labels(source.name).set(
                    source.last_success_at.timestamp()
                )
            failed_last = source.last_error_at is not None and (
                source.last_success_at is None or source.last_error_at > source.last_success_at
            )
            metrics.SOURCE_FAILING.labels(source.name).set(1 if failed_last else 0)


@asynccontextmanager
async def worker_metrics(settings: Settings) -> AsyncIterator[None]:
    """``kamiyo worker``'s /metrics on ``KAMIYO_METRICS_WORKER_PORT`` while the block runs (its
    refreshes and deliveries are counted in its own process); nothing when the port is unset."""
    port = settings.metrics.worker_port
    if port is None:
        yield
        return
    app = Starlette(routes=MetricsEndpoint(settings).routes())
    config = uvicorn.Config(app, log_config=None, access_log=False)
    host = settings.metrics.worker_host
    try:  # bound here, so that a port in use is one clear line, not uvicorn's exit
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listening = socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ConfigurationError(
            f"{WORKER_PORT_VARIABLE}: cannot serve /metrics on {host}:{port} ({exc.strerror})"
        ) from None
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve([listening]), name="kamiyo-worker-metrics")
    try:
        yield
    finally:
        server.should_exit = True
        await serving
        listening.close()


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def count_streamable_sessions(sessions: Callable[[], int]) -> None:
    """The Streamable HTTP sessions held, read at each scrape."""
    metrics.MCP_SESSIONS.labels("streamable_http").set_function(sessions)


class _CountedStream:
    """An SSE stream's ASGI app, counting the sessions open: a legacy session lives exactly as
    long as its GET stream."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.gauge = metrics.MCP_SESSIONS.labels("sse")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET":
            await self.app(scope, receive, send)
            return
        self.gauge.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.gauge.dec()


def counting_sse_sessions(routes: Sequence[BaseRoute], stream_path: str) -> list[BaseRoute]:
    """The SSE routes, with the stream's (``stream_path``) sessions counted."""
    counted: list[BaseRoute] = []
    for route in routes:
        if isinstance(route, Route) and route.path == stream_path:
            app = _CountedStream(route.app)
            route = Route(route.path, app, methods=route.methods, name=route.name)
        counted.append(route)
    return counted
