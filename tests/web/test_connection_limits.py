"""The connection registry's deadlines and caps, the log throttle and the server's sizing, in
process with a clock of our own; and asyncio's accept() errors, in a process of their own with
a low open-file limit."""

import dataclasses
import logging
import resource
import socket
import subprocess
import sys
import textwrap

import pytest

from kamiyo.config import ConfigurationError
from kamiyo.web.connections import Closure, ConnectionLimits, Phase, Registry, Tracked
from kamiyo.web.serving import Sizing, sizing
from kamiyo.web.throttled_log import Throttle

# The registry's sweep timer needs a running loop; it sweeps on the test's clock, as the tests
# do by hand.
pytestmark = pytest.mark.anyio

LIMITS = ConnectionLimits(
    head_timeout_s=10, body_timeout_s=10, body_min_rate=500, send_timeout_s=30, total=4,
    per_client=2,
)  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(clock: Clock) -> Registry:
    report = Throttle(logging.getLogger("test"), "closed", clock=clock)
    return Registry(LIMITS, clock=clock, report=report)


class Connections:
    """Connections made for a registry, and how each was closed."""

    def __init__(self, registry: Registry, clock: Clock) -> None:
        self.registry = registry
        self.clock = clock
        self.closed: dict[str, Closure] = {}

    def open(self, name: str, peer: str = "192.0.2.1", *, trusted: bool = False) -> Tracked:
        def close(closure: Closure) -> None:
            self.closed[name] = closure

        conn = Tracked(peer, capped=not trusted, close=close)
        self.registry.admit(conn)
        return conn

    def at(self, seconds: float) -> None:
        self.clock.now = seconds
        self.registry.sweep()


@pytest.fixture
def conns(registry: Registry, clock: Clock) -> Connections:
    return Connections(registry, clock)


async def test_a_head_has_its_deadline_from_the_connection_opening(conns: Connections) -> None:
    conns.open("slow")
    conns.at(9.9)
    assert conns.closed == {}
    conns.at(10)
    assert conns.closed == {"slow": Closure.HEAD_TIMEOUT}
    assert conns.registry.count == 0


async def test_a_body_gets_a_second_more_per_min_rate_bytes(conns: Connections) -> None:
    conn = conns.open("upload")
    conns.registry.enter(conn, Phase.BODY)
    conns.registry.received(conn, 1000)  # two more seconds at 500 bytes/s
    conns.at(11.9)
    assert conns.closed == {}
    conns.at(12)
    assert conns.closed == {"upload": Closure.BODY_TIMEOUT}


async def test_busy_and_idle_connections_have_no_deadline_here(conns: Connections) -> None:
    busy, idle = conns.open("busy"), conns.open("idle", peer="192.0.2.2")
    conns.registry.enter(busy, Phase.BUSY)
    conns.registry.enter(idle, Phase.IDLE)  # uvicorn's keep-alive timer closes it
    conns.at(3600)
    assert conns.closed == {}


async def test_an_unread_answer_drops_the_connection(conns: Connections) -> None:
    conn = conns.open("reader")
    conns.registry.enter(conn, Phase.BUSY)
    conns.registry.writes_paused(conn, paused=True)
    conns.at(29)
    conns.registry.writes_paused(conn, paused=False)  # it read some: the clock starts again
    conns.registry.writes_paused(conn, paused=True)
    conns.at(58)
    assert conns.closed == {}
    conns.at(59)
    assert conns.closed == {"reader": Closure.SEND_STALLED}


async def test_at_the_cap_idle_goes_first_then_the_oldest_unfinished_request(
    conns: Connections, clock: Clock
) -> None:
    registry = conns.registry
    body = conns.open("body", peer="192.0.2.2")
    registry.enter(body, Phase.BODY)
    clock.now = 1
    head = conns.open("head", peer="192.0.2.1")
    idle = conns.open("idle", peer="192.0.2.3")
    registry.enter(idle, Phase.IDLE)
    busy = conns.open("busy", peer="192.0.2.4")
    registry.enter(busy, Phase.BUSY)
    clock.now = 2
    conns.open("new1", peer="198.51.100.1")
    assert conns.closed == {"idle": Closure.EVICTED}
    conns.open("new2", peer="198.51.100.2")
    assert conns.closed["body"] is Closure.EVICTED  # the oldest request under way
    conns.open("new3", peer="198.51.100.3")
    assert conns.closed["head"] is Closure.EVICTED  # older than new1, also in its head
    assert set(conns.closed) == {"idle", "body", "head"}  # never busy, never the newest
    assert registry.count == LIMITS.total
    assert (head.gone, idle.gone, body.gone, busy.gone) == (True, True, True, False)


async def test_a_flood_of_slow_bodies_does_not_close_each_newcomer(conns: Connections) -> None:
    """A new connection is in its head for a moment; at the cap, with every other connection
    sending a body, the next newcomer must close a body, not it."""
    for n in range(LIMITS.total):
        conns.registry.enter(conns.open(f"body{n}", peer=f"192.0.2.{n}"), Phase.BODY)
    conns.clock.now = 1
    healthz = conns.open("healthz", peer="127.0.0.1", trusted=True)
    conns.open("attacker", peer="192.0.2.99")
    assert not healthz.gone
    assert conns.closed == {"body0": Closure.EVICTED, "body1": Closure.EVICTED}


async def test_when_every_connection_is_busy_a_new_one_is_turned_away(conns: Connections) -> None:
    for n in range(LIMITS.total):
        conns.registry.enter(conns.open(f"busy{n}", peer=f"192.0.2.{n}"), Phase.BUSY)
    newcomer = conns.open("newcomer", peer="198.51.100.1")
    assert conns.closed == {"newcomer": Closure.TOTAL}
    assert newcomer.gone
    conns.registry.release(newcomer)  # uvicorn tells us of its loss later: nothing to undo
    assert conns.registry.count == LIMITS.total


async def test_one_address_is_capped_and_makes_room_among_its_own(conns: Connections) -> None:
    registry = conns.registry
    conns.open("other", peer="192.0.2.9")  # older, and in its head too, but elsewhere
    first = conns.open("first")
    second = conns.open("second")
    registry.enter(second, Phase.BUSY)
    third = conns.open("third")  # the address's own unfinished one makes room
    assert conns.closed == {"first": Closure.EVICTED}
    assert first.gone
    registry.enter(third, Phase.BUSY)
    conns.open("fourth")
    assert conns.closed["fourth"] is Closure.PER_CLIENT  # both of its connections are busy
    assert "other" not in conns.closed


async def test_a_trusted_proxy_is_not_capped_per_address(conns: Connections) -> None:
    for n in range(LIMITS.total):
        conns.open(f"proxied{n}", peer="127.0.0.1", trusted=True)
    assert conns.closed == {}


async def test_closings_are_logged_once_then_counted(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    report = Throttle(logging.getLogger("test"), "closed", clock=clock)
    roomy = dataclasses.replace(LIMITS, total=100, per_client=100)
    conns = Connections(Registry(roomy, clock=clock, report=report), clock)
    caplog.set_level(logging.WARNING)
    for n in range(50):
        clock.now = n * 0.2
        conns.open(f"slow{n}")
    for second in range(10, 21):
        conns.at(second)  # 50 head timeouts between 10 and 20 s
    assert len(conns.closed) == 50
    conns.open("late")
    conns.at(80)  # past the minute: this one is logged, after the count of the others
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "Closed a connection from 192.0.2.1: its request head was not complete after 10 s "
        "(more are counted, not logged, for a minute)",
        "closed: 49 more in the last 60 s (49 request head too slow)",
        lines[0],
    ]


def test_the_throttle_counts_by_kind(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    throttle = Throttle(logging.getLogger("test"), "refused", interval_s=10, clock=clock)
    caplog.set_level(logging.WARNING)
    assert throttle.admit("a")
    assert not throttle.admit("a")
    assert not throttle.admit("b")
    assert not throttle.admit("a")
    clock.now = 10
    assert throttle.admit("b")
    assert [r.getMessage() for r in caplog.records] == [
        "refused: 3 more in the last 10 s (2 a, 1 b)"
    ]


@pytest.mark.parametrize(
    ("open_files", "expected"),
    [
        (None, Sizing(1000, 2048)),  # no limit to fit in
        (256, Sizing(128, 16)),  # 64 kept free, and 4 backlogs of 16
        (1024, Sizing(512, 64)),
        (20_000, Sizing(1000, 1250)),
        (1_048_576, Sizing(1000, 2048)),
    ],
)
def test_the_connection_cap_fits_in_the_open_file_limit(
    open_files: int | None, expected: Sizing
) -> None:
    assert sizing(1000, open_files) == expected


def test_an_open_file_limit_too_low_to_serve_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"open-file limit is 100.*ulimit -n 144"):
        sizing(1000, 100)


def limited(soft: int, hard: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_open_file_limit_is_raised_to_the_hard_limit() -> None:
    code = "from kamiyo.web.serving import raise_open_file_limit; print(raise_open_file_limit())"
    done = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=lambda: limited(256, 512),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout.strip() == "512"


# An asyncio server holding every connection, with an open-file limit of 64, so that accept()
# runs out of descriptors; "throttled" installs KAMIYO's filter first. It prints its port.
HOLDING_SERVER = textwrap.dedent(
    """
    import asyncio, logging, resource, sys
    from kamiyo.web.throttled_log import throttle_accept_errors

    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    if sys.argv[1] == "throttled":
        throttle_accept_errors(64)
    held = []

    class Hold(asyncio.Protocol):
        def connection_made(self, transport):
            held.append(transport)

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Hold, "127.0.0.1", 0, backlog=200)
        print(server.sockets[0].getsockname()[1], flush=True)
        while len(held) < 40:  # the descriptors are nearly all taken: accept() fails next
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.5)  # and is tried again each second

    asyncio.run(main())
    """
)


def accept_errors_logged(mode: str) -> int:
    """How many times the holding server logged a failed accept() while 150 connections waited
    (asyncio tries again each second)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDING_SERVER, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    clients = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(150)]
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        for client in clients:
            client.close()
    return stderr.count("socket.accept() out of system resource")


def test_asyncio_logs_every_failed_accept_without_the_filter() -> None:
    # What issue 11 saw: many lines (Python 3.11 retries up to the backlog per turn).
    assert accept_errors_logged("plain") > 10


def test_failed_accepts_are_logged_once_with_the_filter() -> None:
    assert accept_errors_logged("throttled") == 1
