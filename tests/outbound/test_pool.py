"""The generic endpoint pool over real HTTP on loopback: spreading, failover, health, limits."""

import logging
import socket
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import pytest

from kamiyo.outbound import (
    EndpointError,
    EndpointPool,
    PoolTimeoutError,
    PoolUnavailableError,
    http_endpoints,
    http_failure,
    redact,
)
from kamiyo.outbound import pool as pool_module
from tests.outbound.loopback import LoopbackServer

pytestmark = pytest.mark.anyio
LOGGER = "tests.outbound.feed"


class RefusedError(Exception):
    """The endpoint answered that the request itself is wrong (a 4xx)."""


async def fetch(client: httpx2.AsyncClient) -> dict[str, Any]:
    """How a client classifies failures for the pool: 5xx and transport errors blame the
    endpoint, 4xx the request."""
    try:
        response = await client.get("")
    except httpx2.HTTPError as exc:
        raise EndpointError(http_failure(exc)) from None
    if response.status_code >= 500:
        raise EndpointError(f"HTTP {response.status_code}")
    if response.status_code >= 400:
        raise RefusedError(response.status_code)
    answer: dict[str, Any] = response.json()
    return answer


async def health(client: httpx2.AsyncClient) -> None:
    response = await client.get("health", params={"probe": "1"})
    if response.status_code != 200:
        raise EndpointError(f"HTTP {response.status_code}")


def pool(urls: list[str], **options: Any) -> EndpointPool[httpx2.AsyncClient]:
    options.setdefault("requests_per_second", 1000)
    return EndpointPool(
        http_endpoints(urls, timeout_s=2),
        service="Test feed",
        logger=logging.getLogger(LOGGER),
        **options,
    )


@pytest.fixture
def servers() -> Iterator[tuple[LoopbackServer, LoopbackServer]]:
    with LoopbackServer("a") as a, LoopbackServer("b") as b:
        yield a, b


def recorded_pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(round(seconds, 1))

    monkeypatch.setattr(pool_module, "pause", record)
    return waits


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/feed"


async def test_round_robin_spreads_requests(servers: tuple[LoopbackServer, ...]) -> None:
    a, b = servers
    async with pool([a.url, b.url]) as feed:
        assert feed.endpoints == (a.host, b.host)
        answers = [await feed.run(fetch, what="fetch") for _ in range(6)]
    assert [answer["server"] for answer in answers] == ["a", "b"] * 3
    assert a.paths() == b.paths() == ["/feed"] * 3


async def test_a_failing_endpoint_is_skipped_for_its_cooldown(
    servers: tuple[LoopbackServer, ...], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = servers
    a.mode = "http_503"
    failures: list[str] = []
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with pool([a.url, b.url], cooldown_s=60, on_failure=failures.append) as feed:
        answers = [await feed.run(fetch, what="fetch") for _ in range(4)]
        assert await feed.check_health() == {a.host: False, b.host: True}
    assert {answer["server"] for answer in answers} == {"b"}
    assert len(a.requests) == 1  # one failed attempt, then skipped
    assert failures == [a.host]
    down = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert down == [f"Test feed endpoint {a.host} is down (HTTP 503)"]


async def test_a_refused_endpoint_fails_over_too(servers: tuple[LoopbackServer, ...]) -> None:
    _, b = servers
    async with pool([_closed_port_url(), b.url], cooldown_s=60) as feed:
        assert (await feed.run(fetch, what="fetch"))["server"] == "b"
        health_map = await feed.check_health()
    assert list(health_map.values()) == [False, True]


async def test_request_errors_reach_the_caller_without_failover(
    servers: tuple[LoopbackServer, ...],
) -> None:
    a, b = servers
    a.mode = b.mode = "http_400"
    async with pool([a.url, b.url]) as feed:
        with pytest.raises(RefusedError):
            await feed.run(fetch, what="fetch")
        assert await feed.check_health() == {a.host: True, b.host: True}
    assert len(a.requests) + len(b.requests) == 1


async def test_all_down_raises_after_backoff_and_names_no_secret(
    servers: tuple[LoopbackServer, ...],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = servers
    a.mode = b.mode = "http_503"
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx2")  # it logs request URLs: see them
    waits = recorded_pauses(monkeypatch)
    urls = [f"{a.url}?api-key=SECRET-QUERY", f"http://user:SECRET-USERINFO@{b.host}/v2/SECRET/"]
    async with pool(urls, attempts=3, cooldown_s=60) as feed:
        with pytest.raises(PoolUnavailableError) as caught:
            await feed.run(fetch, what="fetch")
    assert [wait for wait in waits if wait] == [0.1, 0.2]
    message = str(caught.value)
    assert message == (
        f"fetch failed on every Test feed endpoint tried ({a.host}, {b.host}); last error: HTTP 503"
    )
    logged = [record.getMessage() for record in caplog.records]
    assert any(text.startswith("HTTP Request: GET") for text in logged)
    assert not [text for text in [message, *logged] if "SECRET" in text]
    # The secrets still reach the endpoints, where they belong.
    assert a.requests[0] == "/feed?api-key=SECRET-QUERY"
    assert b.requests[0] == "/v2/SECRET/"
    assert b.authorizations[0] == "Basic dXNlcjpTRUNSRVQtVVNFUklORk8="


async def test_a_probe_brings_an_endpoint_back(
    servers: tuple[LoopbackServer, ...], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = servers
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with pool([a.url, b.url], cooldown_s=0, probe=health) as feed:
        a.mode = "http_503"
        await feed.run(fetch, what="fetch")
        assert await feed.check_health() == {a.host: False, b.host: True}  # probed: still 503
        a.mode = "ok"
        assert await feed.check_health() == {a.host: True, b.host: True}
    # The probe's path and parameters extend the endpoint's URL.
    assert a.requests[-1] == "/feed/health?probe=1"
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert messages == [
        f"Test feed endpoint {a.host} is down (HTTP 503)",
        f"Test feed endpoint {a.host} is back",
    ]


async def test_without_a_probe_a_real_request_retries_after_the_cooldown(
    servers: tuple[LoopbackServer, ...],
) -> None:
    a, b = servers
    async with pool([a.url, b.url], cooldown_s=0) as feed:
        a.mode = "http_503"
        await feed.run(fetch, what="fetch")
        a.mode = "ok"
        answers = {(await feed.run(fetch, what="fetch"))["server"] for _ in range(4)}
        assert await feed.check_health() == {a.host: True, b.host: True}
    assert answers == {"a", "b"}


async def test_the_rate_limit_spaces_requests_to_one_endpoint(
    servers: tuple[LoopbackServer, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = servers
    waits = recorded_pauses(monkeypatch)
    # Held still: the waits are then what the limit decides, not how late a busy loop ran.
    monkeypatch.setattr(pool_module, "clock", lambda: 1_000.0)
    async with pool([a.url], requests_per_second=5) as feed:

        async def one() -> None:
            await feed.run(fetch, what="fetch")

        async with anyio.create_task_group() as tasks:
            for _ in range(5):
                tasks.start_soon(one)
    assert len(a.requests) == 5
    assert sorted(waits) == [0.2, 0.4, 0.6, 0.8]


async def test_the_deadline_covers_rate_limit_waits(servers: tuple[LoopbackServer, ...]) -> None:
    a, _ = servers
    async with pool([a.url], requests_per_second=0.5, timeout_s=0.3) as feed:
        await feed.run(fetch, what="fetch")
        with pytest.raises(PoolTimeoutError, match=r"fetch took longer than 0\.3 s"):
            await feed.run(fetch, what="fetch")  # its slot comes 2 s after the first
    assert len(a.requests) == 1


def test_labels_are_host_and_port_and_distinct() -> None:
    assert redact("https://user:pw@rpc.example:8899/v2/KEY?api-key=SECRET") == "rpc.example:8899"
    endpoints = http_endpoints(
        ["https://rpc.example/a?k=1", "https://rpc.example/b?k=2"], timeout_s=1
    )
    assert [label for label, _ in endpoints] == ["rpc.example", "rpc.example#2"]


@pytest.mark.parametrize(
    ("urls", "options", "problem"),
    [
        ([], {}, "at least one"),
        ("http://127.0.0.1:1/", {}, "at least one"),
        (["ftp://feed.example/"], {}, "http"),
        (["feed.example"], {}, "http"),
        (["http://127.0.0.1:1/"], {"requests_per_second": 0}, "positive"),
        (["http://127.0.0.1:1/"], {"attempts": 0}, "positive"),
        (["http://127.0.0.1:1/"], {"cooldown_s": -1}, "negative"),
    ],
)
async def test_bad_configuration_is_refused(
    urls: Any, options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        await pool(urls, **options).aclose()
