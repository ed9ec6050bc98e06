"""The HTTP server's deadlines and caps: connections, event streams and stateful sessions."""

from pydantic import Field

from kamiyo.config.base import Section, section_config


class HttpSettings(Section):
    """How long ``kamiyo serve --transport http`` waits on a connection, and how many it holds.

    A request head, a request body and an idle kept-alive connection each have a deadline; a
    client address may hold so many connections and streams, and the server so many in all
    (never more than its open-file limit leaves room for). See README, "Limits and timeouts".
    """

    model_config = section_config("KAMIYO_HTTP_")

    head_timeout_s: float = Field(
        default=10,
        gt=0,
        description="Seconds a request head may take to arrive, counted from the connection "
        "opening (or, on a kept-alive connection, from its first byte).",
    )
    body_timeout_s: float = Field(
        default=10,
        gt=0,
        description="Seconds a request body may take, plus one per body_min_rate bytes received.",
    )
    body_min_rate: int = Field(
        default=500,
        ge=1,
        description="Bytes per second a body must average, beyond body_timeout_s, to go on.",
    )
    keep_alive_s: int = Field(
        default=5, ge=1, description="Seconds an idle kept-alive connection stays open."
    )
    send_timeout_s: float = Field(
        default=30,
        gt=0,
        description="Seconds a client may leave the answer unread (writes stalled) before the "
        "connection is dropped.",
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Connections held at once, in all; lowered to what the open-file limit "
        "leaves room for.",
    )
    max_connections_per_client: int = Field(
        default=64,
        ge=1,
        description="Connections one client address may hold (trusted proxies are not capped).",
    )
    max_streams: int = Field(
        default=500,
        ge=1,
        description="Open event streams (GET /mcp, GET /sse), in all; at most half the "
        "connection cap.",
    )
    max_streams_per_client: int = Field(
        default=8, ge=1, description="Open event streams one client address may hold."
    )
    anonymous_stream_s: float = Field(
        default=300,
        gt=0,
        description="Seconds an event stream opened without a credential stays open; the "
        "client reconnects.",
    )
    # A stateful session costs about 40 kB held idle and 115 kB with its event stream open
    # (bench/sessions.py), so these two bound what sessions can take of an instance's memory.
    session_idle_s: float = Field(
        default=1800,
        gt=0,
        description="Seconds a stateful MCP session may go without a request (and without an "
        "open event stream) before it is closed; its client then opens a new one.",
    )
    max_sessions: int = Field(
        default=10_000,
        ge=1,
        description="Stateful MCP sessions one instance holds at once; over it, opening another "
        "answers 503 (existing sessions go on).",
    )
