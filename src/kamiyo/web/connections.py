"""Deadlines and caps on the HTTP connections ``kamiyo serve --transport http`` holds.

uvicorn closes an idle kept-alive connection (``timeout_keep_alive``), and its
``limit_concurrency`` answers 503 to everyone over a count, ``/healthz`` included. It has no
deadline for a request head or body, nothing per client address, and no deadline for a fresh
connection that never sends a byte, so 300 such connections held a server for as long as their
clients liked (issue 11). The registry here holds every connection of a server; uvicorn's own
protocol classes (h11, or httptools when it is installed) report to it (web/http_protocol.py):

- A connection is in one of four phases: ``HEAD`` (waiting for, or reading, a request head),
  ``BODY`` (reading a request body), ``BUSY`` (the app is answering, a stream included) and
  ``IDLE`` (kept alive between requests; uvicorn's keep-alive timer closes it).
- A head must be complete ``head_timeout_s`` after the connection opened, or after the first
  byte of the next request on a kept-alive connection. A body gets ``body_timeout_s`` plus one
  second per ``body_min_rate`` bytes received (Apache's mod_reqtimeout model): a slow client
  that keeps sending goes on, a trickle is cut. Either answers 408 and closes. An answer the
  client leaves unread for ``send_timeout_s`` (writes paused) drops the connection.
- Caps, checked when a connection opens: ``per_client`` per client address (not for trusted
  proxies, which carry many clients; the proxy caps those) and ``total`` in all. At a cap a
  connection that costs little to lose makes room: the oldest idle kept-alive one (its client
  reconnects, as after a keep-alive timeout), else the one that has been sending its request
  (head or body) the longest. Heads do not go before bodies: a fresh connection is in its head
  for a moment, and a flood of slow bodies would then close every newcomer (``/healthz``
  included) before it could say what it wants. Nothing else is closed to make room: when every
  connection is busy answering, the new one is turned away (429 per client, 503 in all). So a
  flood of slow or idle connections, whatever its size, cannot keep ``/healthz`` (or any quick
  request) from being served: a request sent at once on a new connection is answered long
  before the flood makes its connection the oldest.

Deadlines are checked by one sweep a second (a timer per connection would cost more than the
second's precision is worth). Every closing is counted in a ``Throttle``: one log line at once,
then one line a minute while they go on.
"""

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kamiyo.web.throttled_log import Throttle

log = logging.getLogger(__name__)

SWEEP_S = 1.0


class Phase(enum.Enum):
    HEAD = "head"
    BODY = "body"
    BUSY = "busy"
    IDLE = "idle"


# Which connections may make room at a cap: idle ones first, then unfinished requests (heads
# and bodies alike, oldest first).
EVICTABLE = (Phase.IDLE, Phase.HEAD, Phase.BODY)
UNFINISHED = (Phase.HEAD, Phase.BODY)


class Closure(enum.Enum):
    """Why a connection is closed, what the log calls it, and what its client is answered."""

    HEAD_TIMEOUT = ("request head too slow", 408)
    BODY_TIMEOUT = ("request body too slow", 408)
    SEND_STALLED = ("answer left unread", None)
    EVICTED = ("closed to make room", None)
    PER_CLIENT = ("over the per-address cap", 429)
    TOTAL = ("over the connection cap", 503)

    def __init__(self, label: str, status: int | None) -> None:
        self.label = label
        self.status = status


@dataclass(frozen=True)
class ConnectionLimits:
    head_timeout_s: float
    body_timeout_s: float
    body_min_rate: int
    send_timeout_s: float
    total: int
    per_client: int


@dataclass(eq=False)  # each connection is its own key
class Tracked:
    """One connection as the registry sees it; ``close`` answers (maybe) and closes it."""

    peer: str
    capped: bool  # counted against its address's cap (not a trusted proxy)
    close: Callable[[Closure], None]
    phase: Phase = Phase.HEAD
    since: float = 0.0
    received: int = 0  # bytes since the phase began (head or body bytes)
    stalled_since: float | None = None
    gone: bool = field(default=False)


class Registry:
    """Every connection one server holds, by phase and by client address."""

    def __init__(
        self,
        limits: ConnectionLimits,
        clock: Callable[[], float] = time.monotonic,
        report: Throttle | None = None,
    ) -> None:
        self.limits = limits
        self.clock = clock
        self.report = report or Throttle(log, "closed connections")
        # Insertion-ordered: each phase's connections in the order they entered it.
        self.phases: dict[Phase, dict[Tracked, None]] = {phase: {} for phase in Phase}
        self.by_peer: dict[str, dict[Tracked, None]] = {}
        self.stalled: dict[Tracked, None] = {}
        self.count = 0
        self.sweeper: asyncio.TimerHandle | None = None

    # A connection's life.

    def admit(self, conn: Tracked) -> bool:
        """Register a new connection, making room at a cap; False if it was turned away."""
        if conn.capped:
            neighbours = self.by_peer.get(conn.peer, {})
            if len(neighbours) >= self.limits.per_client and not self._evict(neighbours):
                self._close(conn, Closure.PER_CLIENT)
                return False
        if self.count >= self.limits.total and not self._evict(self._oldest_evictable()):
            self._close(conn, Closure.TOTAL)
            return False
        conn.since = self.clock()
        self.phases[conn.phase][conn] = None
        if conn.capped:
            self.by_peer.setdefault(conn.peer, {})[conn] = None
        self.count += 1
        self._start_sweeping()
        return True

    def enter(self, conn: Tracked, phase: Phase) -> None:
        """``conn`` moved to ``phase`` (a new request head began, a body began or ended…)."""
        if conn.gone or conn.phase is phase:
            return
        del self.phases[conn.phase][conn]
        conn.phase, conn.since, conn.received = phase, self.clock(), 0
        self.phases[phase][conn] = None

    def received(self, conn: Tracked, size: int) -> None:
        conn.received += size

    def writes_paused(self, conn: Tracked, paused: bool) -> None:
        if conn.gone:
            return
        if paused:
            conn.stalled_since = self.clock()
            self.stalled[conn] = None
        else:
            conn.stalled_since = None
            self.stalled.pop(conn, None)

    def release(self, conn: Tracked) -> None:
        """Forget ``conn`` (closed, or handed to another protocol); safe to call twice."""
        if conn.gone:
            return
        conn.gone = True
        del self.phases[conn.phase][conn]
        self.stalled.pop(conn, None)
        if conn.capped:
            neighbours = self.by_peer[conn.peer]
            del neighbours[conn]
            if not neighbours:
                del self.by_peer[conn.peer]
        self.count -= 1

    # Deadlines.

    def deadline(self, conn: Tracked) -> float | None:
        if conn.phase is Phase.HEAD:
            return conn.since + self.limits.head_timeout_s
        if conn.phase is Phase.BODY:
            allowed = self.limits.body_timeout_s + conn.received / self.limits.body_min_rate
            return conn.since + allowed
        return None

    def sweep(self) -> None:
        """Close every connection past its deadline."""
        now = self.clock()
        expired: list[tuple[Tracked, Closure]] = []
        for conn in self.phases[Phase.HEAD]:  # entered in order, so their deadlines are too
            if conn.since + self.limits.head_timeout_s > now:
                break
            expired.append((conn, Closure.HEAD_TIMEOUT))
        for conn in self.phases[Phase.BODY]:
            deadline = self.deadline(conn)
            if deadline is not None and deadline <= now:
                expired.append((conn, Closure.BODY_TIMEOUT))
        for conn in self.stalled:
            stalled = conn.stalled_since
            if stalled is not None and stalled + self.limits.send_timeout_s <= now:
                expired.append((conn, Closure.SEND_STALLED))
        for conn, closure in expired:
            self.release(conn)
            self._close(conn, closure)

    # Room at a cap.

    def _oldest_evictable(self) -> Iterable[Tracked]:
        """The oldest idle connection, else the oldest head and the oldest body (each phase
        holds its connections in the order they entered it, so finding room costs nothing per
        connection held)."""
        idle = next(iter(self.phases[Phase.IDLE]), None)
        if idle is not None:
            return [idle]
        oldest = (next(iter(self.phases[phase]), None) for phase in UNFINISHED)
        return [conn for conn in oldest if conn is not None]

    def _evict(self, among: Iterable[Tracked]) -> bool:
        """Close the best candidate for making room among ``among``; False if there is none."""
        candidates = [conn for conn in among if conn.phase in EVICTABLE]
        if not candidates:
            return False
        victim = min(candidates, key=lambda conn: (conn.phase is not Phase.IDLE, conn.since))
        self.release(victim)
        self._close(victim, Closure.EVICTED)
        return True

    def _close(self, conn: Tracked, closure: Closure) -> None:
        conn.gone = True  # released, or never admitted
        if self.report.admit(closure.label):
            log.warning(
                "Closed a connection from %s: %s (more are counted, not logged, for a minute)",
                conn.peer or "an unknown address",
                self.describe(closure),
            )
        conn.close(closure)

    def describe(self, closure: Closure) -> str:
        limits = self.limits
        return {
            Closure.HEAD_TIMEOUT: f"its request head was not complete after "
            f"{limits.head_timeout_s:g} s",
            Closure.BODY_TIMEOUT: f"its request body came slower than {limits.body_min_rate} "
            f"bytes/s after {limits.body_timeout_s:g} s",
            Closure.SEND_STALLED: f"it left the answer unread for {limits.send_timeout_s:g} s",
            Closure.EVICTED: f"it was idle or unfinished at a cap ({limits.per_client} per "
            f"address, {limits.total} in all) when another connection came",
            Closure.PER_CLIENT: f"its address holds {limits.per_client} connections, the most "
            "allowed, all busy",
            Closure.TOTAL: f"the server holds {limits.total} connections, the most it can, all "
            "busy",
        }[closure]

    # The sweep's timer: runs while there are connections.

    def _start_sweeping(self) -> None:
        if self.sweeper is None:
            self.sweeper = asyncio.get_running_loop().call_later(SWEEP_S, self._tick)

    def _tick(self) -> None:
        self.sweeper = None
        self.sweep()
        if self.count:
            self._start_sweeping()
