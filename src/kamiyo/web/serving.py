"""uvicorn, set up for ``kamiyo serve --transport http``: its timeouts and caps (see
web/connections.py and web/streams.py), an open-file limit the caps fit in, and asyncio's
accept() errors throttled."""

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp
from uvicorn.config import STARTUP_FAILURE
from uvicorn.middleware.proxy_headers import _TrustedHosts

from kamiyo.config import ConfigurationError, HttpSettings
from kamiyo.web.connections import ConnectionLimits, Registry
from kamiyo.web.graceful import CUT_EXIT_STATUS, GracefulServer
from kamiyo.web.http_protocol import guarded_protocol
from kamiyo.web.streams import StreamCaps, StreamLimits
from kamiyo.web.throttled_log import throttle_accept_errors

log = logging.getLogger(__name__)

try:
    import resource
except ImportError:  # Windows: no open-file limit to read or raise
    resource = None  # type: ignore[assignment]

# File descriptors kept free of client connections: database and Redis pools, outbound HTTP
# (RPC endpoints, a facilitator, Stripe, SMTP), log files, the listening socket. A quarter of the
# limit when that is more, so that a large limit keeps a proportionate margin.
RESERVED_FILES = 64
MIN_CONNECTIONS = 16
# uvicorn's listen backlog, which is also how many connections asyncio accepts in one go before
# any of them reaches the connection cap (Python 3.11 accepts up to the backlog's length per
# loop turn, and a few turns pass before the first is counted): a sixteenth of the open-file
# limit, within these bounds, and four times it kept free on top of RESERVED_FILES.
BACKLOG_RANGE = (16, 2048)
BACKLOG_TURNS = 4
# Linux refuses an open-file limit above fs.nr_open (1,048,576 by default), "unlimited" included.
HIGHEST_LIMIT = 1_048_576


@dataclass(frozen=True)
class Sizing:
    connections: int
    backlog: int


def raise_open_file_limit() -> int | None:
    """Raise this process's soft open-file limit to its hard limit; the limit now, or None
    where there is none to read."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = HIGHEST_LIMIT if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return None if soft == resource.RLIM_INFINITY else soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):
        return soft
    return wanted


def sizing(configured: int, open_files: int | None) -> Sizing:
    """The connection cap (``configured``, lowered to fit) and the listen backlog, such that
    connections never take the descriptors of ``RESERVED_FILES`` nor the ones asyncio holds for
    connections it accepted and has not counted yet: accept() then never runs out of them."""
    low, high = BACKLOG_RANGE
    if open_files is None:
        return Sizing(configured, high)
    backlog = min(high, max(low, open_files // 16))
    room = open_files - max(RESERVED_FILES, open_files // 4) - BACKLOG_TURNS * backlog
    if room < MIN_CONNECTIONS:
        needed = RESERVED_FILES + BACKLOG_TURNS * low + MIN_CONNECTIONS
        raise ConfigurationError(
            f"the open-file limit is {open_files}, too low to serve HTTP: raise it "
            f"(ulimit -n {needed} or more)"
        )
    return Sizing(min(configured, room), backlog)


def http_server(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    settings: HttpSettings,
    head_size: int,
    grace_s: float,
    on_stopping: Sequence[Callable[[], None]] = (),
) -> GracefulServer:
    """The server for ``app``: not started yet, so a setting that cannot work stops here.

    Stopping gives calls in flight ``grace_s`` seconds (web/graceful.py); ``on_stopping`` runs
    first, with the event streams told to end.
    """
    open_files = raise_open_file_limit()
    sized = sizing(settings.max_connections, open_files)
    total = sized.connections
    streams = StreamCaps(
        # Streams never make room at the connection cap, so half of it stays for the rest.
        total=min(settings.max_streams, max(1, total // 2)),
        per_client=settings.max_streams_per_client,
        anonymous_s=settings.anonymous_stream_s,
    )
    limited = StreamLimits(app, streams)
    config = uvicorn.Config(
        limited,
        host=host,
        port=port,
        log_config=None,  # uvicorn logs through our handlers, to stderr like everything else
        server_header=False,
        h11_max_incomplete_event_size=head_size,
        timeout_keep_alive=settings.keep_alive_s,
        backlog=sized.backlog,
    )
    # The addresses uvicorn takes X-Forwarded-For from: proxies, whose connections carry many
    # clients, so the per-address connection cap is not theirs to bear (the proxy caps).
    trusted = _TrustedHosts(config.forwarded_allow_ips) if config.proxy_headers else None
    limits = ConnectionLimits(
        head_timeout_s=settings.head_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        body_min_rate=settings.body_min_rate,
        send_timeout_s=settings.send_timeout_s,
        total=total,
        per_client=settings.max_connections_per_client,
    )
    config.http = guarded_protocol(
        Registry(limits), lambda address: trusted is not None and address in trusted
    )
    throttle_accept_errors(open_files)
    if total < settings.max_connections:
        log.info(
            "Serving at most %d connections at once: the open-file limit of %s leaves room for "
            "no more (%s is %d)",
            total,
            open_files,
            HttpSettings.env_name("max_connections"),
            settings.max_connections,
        )
    server = GracefulServer(config, grace_s)
    server.on_stopping.extend([*on_stopping, limited.stop])
    return server


def serve_until_stopped(server: GracefulServer) -> None:
    """Run until SIGINT or SIGTERM, as ``uvicorn.run`` does; exit 1 when stopping cut calls."""
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
    if server.cut:
        sys.exit(CUT_EXIT_STATUS)
