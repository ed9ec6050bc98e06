"""Prometheus metrics of serving: calls, refusals, subscriptions, ingest, alerts, dependencies
and MCP sessions. Payments' own (``kamiyo_x402_*``) are in payments/metrics.py.

Every name is declared here once: the dashboard (deploy/grafana/kamiyo.json) and the alert rules
(deploy/prometheus/) read them, and tests/web/test_metrics.py checks that each name they use is
exported by a running app. Labels stay bounded: a tool label is a catalogue name (anything else
a caller can make up, such as a resource URI, is folded into one value), and every other label
is one of a few values fixed in code (tiers, statuses, source names, channels), never an
account, a key, a query or an address.
"""

from collections.abc import Iterable
from functools import lru_cache
from typing import Final

from prometheus_client import Counter, Gauge, Histogram

# What a call to something outside the catalogue is counted under: a resource read
# (kamiyo://…, whose URI names a protocol or an address) or any other name.
RESOURCE_TOOL: Final = "(resource)"
OTHER_TOOL: Final = "(unknown)"
RESOURCE_SCHEME: Final = "kamiyo://"

# The latency the claud-coin design bounds (100 ms) sits on a bucket edge, so the rules'
# "p99 over 100 ms" reads a bucket boundary rather than an interpolation across a wide one.
CALL_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10)
PROBE_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2)

TOOL_CALLS = Counter(
    "kamiyo_tool_calls",
    "Calls of every surface (MCP tools and resources, REST, dashboard), by tool, tier and "
    "status (ok, error, invalid, unavailable, or the refusal's reason), as metered; on the open "
    "gate (no accounts, nothing metered) too, under tier open.",
    ["tool", "tier", "status"],
)
TOOL_CALL_SECONDS = Histogram(
    "kamiyo_tool_call_seconds",
    "Time from an admitted call's arrival at the gate to its end, by tool; calls refused at the "
    "gate (nothing ran) are not timed, so their quick answers do not flatter the quantiles.",
    ["tool"],
    buckets=CALL_BUCKETS,
)
REFUSALS = Counter(
    "kamiyo_refusals",
    "Calls refused, by reason: unauthenticated, forbidden, rate_limited, payment_required; "
    "unavailable (the gate could not decide: its database or Redis down); database_outage (an "
    "admitted call whose database went away while it ran).",
    ["reason"],
)
SUBSCRIPTIONS = Gauge(
    "kamiyo_subscriptions",
    "Subscriptions in the database, by tier and Stripe status (status=active: paying now); "
    "read at most every 10 s.",
    ["tier", "status"],
)
INGEST_RUNS = Counter(
    "kamiyo_ingest_runs",
    "Source refreshes run by this process, by source and result (ok, failed).",
    ["source", "result"],
)
INGEST_REPORTS = Counter(
    "kamiyo_ingest_reports",
    "Reports a source's refreshes handled in this process, by source and outcome (new, merged, "
    "updated, unchanged, failed).",
    ["source", "outcome"],
)
SOURCE_LAST_SUCCESS = Gauge(
    "kamiyo_source_last_success_timestamp_seconds",
    "When each source last refreshed without error, whichever process ran it (from the "
    "database; read at most every 10 s).",
    ["source"],
)
SOURCES_STALE_AFTER = Gauge(
    "kamiyo_sources_stale_after_seconds",
    "KAMIYO_SOURCES_STALE_AFTER: data older than this fails /readyz (0: unset, never stale).",
)
SOURCE_FAILING = Gauge(
    "kamiyo_source_failing",
    "1 when a source's latest refresh failed, 0 when it worked (from the database).",
    ["source"],
)
ALERT_DELIVERIES = Counter(
    "kamiyo_alert_deliveries",
    "Alert deliveries attempted by this process, by channel (webhook, mail) and outcome "
    "(delivered, retrying, failed; mail: sent, failed).",
    ["channel", "outcome"],
)
DEPENDENCY_SECONDS = Histogram(
    "kamiyo_dependency_check_seconds",
    "Round trips of the readiness checks (SELECT 1, Redis PING), by dependency; run at most "
    "every 2 s, on /readyz polls and on each scrape.",
    ["dependency"],
    buckets=PROBE_BUCKETS,
)
DEPENDENCY_FAILURES = Counter(
    "kamiyo_dependency_check_failures",
    "Readiness checks of a dependency that failed or timed out, by dependency.",
    ["dependency"],
)
MCP_SESSIONS = Gauge(
    "kamiyo_mcp_sessions",
    "MCP sessions this instance holds open, by transport (streamable_http, sse).",
    ["transport"],
)

# Statuses of a usage record that are refusals (the others are how an admitted call ended).
REFUSAL_REASONS: Final = frozenset(
    {"unauthenticated", "forbidden", "rate_limited", "unavailable", "payment_required"}
)
# An admitted call metered "unavailable" was cut by a database outage; the gate's refusal of
# the same name is a call it could not decide on. Two causes: two reasons in kamiyo_refusals.
OUTAGE_STATUS: Final = "unavailable"
MID_CALL_OUTAGE: Final = "database_outage"
DEPENDENCIES: Final = ("database", "redis")
DELIVERY_OUTCOMES: Final = {
    "webhook": ("delivered", "retrying", "failed"),
    "mail": ("sent", "failed"),
}
INGEST_RESULTS: Final = ("ok", "failed")

_tools: set[str] = set()


def declare_series(tools: Iterable[str], sources: Iterable[str]) -> None:
    """The catalogue's tool names (the only ones a tool label takes) and the enabled sources.

    Series whose labels are known in advance start at zero: Prometheus's ``increase`` and
    ``rate`` see a counter's first event only if the counter existed before it.
    """
    for name in tools:
        _tools.add(name)
        TOOL_CALL_SECONDS.labels(name)
    for reason in (*REFUSAL_REASONS, MID_CALL_OUTAGE):
        REFUSALS.labels(reason)
    for dependency in DEPENDENCIES:
        DEPENDENCY_FAILURES.labels(dependency)
    for channel, outcomes in DELIVERY_OUTCOMES.items():
        for outcome in outcomes:
            ALERT_DELIVERIES.labels(channel, outcome)
    for source in sources:
        for result in INGEST_RESULTS:
            INGEST_RUNS.labels(source, result)


def tool_label(name: str) -> str:
    if name in _tools:
        return name
    return RESOURCE_TOOL if name.startswith(RESOURCE_SCHEME) else OTHER_TOOL


def count_call(tool: str, tier: str, status: str, seconds: float, *, admitted: bool) -> None:
    """One call: counted by tool, tier and status, and its refusal counted. ``admitted``: it
    ran (and is timed); else the gate refused it (or its arguments) before anything ran."""
    calls, duration, refusals = _call_series(tool_label(tool), tier, status, admitted)
    calls.inc()
    if admitted:
        duration.observe(seconds)
    if refusals is not None:
        refusals.inc()


# On every call: the library's ``labels()`` costs more than the count itself, and the label
# values are few (bounded above), so each combination's series are looked up once.
@lru_cache(maxsize=4096)
def _call_series(
    tool: str, tier: str, status: str, admitted: bool
) -> tuple[Counter, Histogram, Counter | None]:
    reason = MID_CALL_OUTAGE if admitted and status == OUTAGE_STATUS else status
    refusals = REFUSALS.labels(reason) if status in REFUSAL_REASONS else None
    return TOOL_CALLS.labels(tool, tier, status), TOOL_CALL_SECONDS.labels(tool), refusals


def count_ingest(source: str, failed: bool, reports: dict[str, int]) -> None:
    """One source's part of an ingest run, and how many reports it handled by outcome."""
    INGEST_RUNS.labels(source, INGEST_RESULTS[1] if failed else INGEST_RESULTS[0]).inc()
    for outcome, count in reports.items():
        INGEST_REPORTS.labels(source, outcome).inc(count)


def count_delivery(channel: str, outcome: str) -> None:
    """One delivery attempt; ``outcome`` is one of ``DELIVERY_OUTCOMES[channel]``."""
    ALERT_DELIVERIES.labels(channel, outcome).inc()


def observe_dependency(dependency: str, seconds: float | None) -> None:
    """A readiness check's round trip; None: it failed or timed out."""
    if seconds is None:
        DEPENDENCY_FAILURES.labels(dependency).inc()
    else:
        DEPENDENCY_SECONDS.labels(dependency).observe(seconds)
