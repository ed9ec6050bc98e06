"""The fetch layer against a real HTTP server on loopback: conditional requests, retries and
Retry-After, failures that stop at once, truncated and oversized bodies, local files, the
refusal of private addresses, per-host spacing. Waits are recorded, never slept."""

import asyncio
import datetime as dt
import email.utils
import importlib.metadata
import ipaddress
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import kamiyo
from kamiyo.config import Settings, SourceSettings, describe_settings_error, parse_duration
from kamiyo.intel.sources.base import FetchError
from kamiyo.intel.sources.fetch import Fetcher, user_agent
from kamiyo.intel.sources.fetch_rules import HostPacer, check_public, shown
from kamiyo.outbound.addresses import refusal
from tests.intel.feed_server import FeedServer, Reply

pytestmark = pytest.mark.anyio
LAST_MODIFIED = "Wed, 21 Oct 2026 07:28:00 GMT"


class Time:
    """A clock that only moves when the fetcher sleeps, and the sleeps it was asked for."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(round(seconds, 3))
        self.now += seconds

    def clock(self) -> float:
        return self.now


MakeFetcher = Callable[..., Fetcher]


@pytest.fixture
async def make(anyio_backend: str) -> AsyncIterator[tuple[MakeFetcher, Time]]:
    """Fetchers on recorded time, with jitter at its ceiling (so backoffs are exact)."""
    time = Time()
    made: list[Fetcher] = []

    def build(
        *,
        validators: dict[str, dict[str, str]] | None = None,
        allow_private: bool = True,
        allow_local: bool = False,
        **limits: Any,
    ) -> Fetcher:
        settings = SourceSettings(_env_file=None, **{"min_interval_s": 0, **limits})
        fetcher = Fetcher(
            "test",
            settings,
            validators=validators,
            allow_private=allow_private,
            allow_local=allow_local,
        )
        fetcher.sleep, fetcher.clock, fetcher.jitter = time.sleep, time.clock, lambda: 1.0
        made.append(fetcher)
        return fetcher

    yield build, time
    for fetcher in made:
        await fetcher.aclose()


async def test_a_200_gives_the_document_and_keeps_its_validators(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time]
) -> None:
    feed_server.serve(
        "/feed.xml", "<rss/>", content_type="application/rss+xml", etag='"v1"',
        last_modified=LAST_MODIFIED,
    )  # fmt: skip
    validators: dict[str, dict[str, str]] = {}
    url = feed_server.url("/feed.xml")
    async with make[0](validators=validators) as fetch:
        document = await fetch(url)
    assert document is not None
    assert (document.location, document.body) == (url, b"<rss/>")
    assert document.content_type == "application/rss+xml"
    assert validators == {url: {"etag": '"v1"', "last_modified": LAST_MODIFIED}}
    (request,) = feed_server.requests
    assert request.header("if-none-match") is None
    assert request.header("if-modified-since") is None
    assert request.header("user-agent") == user_agent()
    assert user_agent().startswith("KAMIYO/")
    assert user_agent().endswith(" source-refresh")


async def test_not_modified_is_none_and_a_new_version_is_read(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time]
) -> None:
    url = feed_server.url("/hacks")
    feed_server.serve("/hacks", b"[1]", etag='"v1"', last_modified=LAST_MODIFIED)
    validators = {url: {"etag": '"v1"', "last_modified": LAST_MODIFIED}}
    fetch = make[0](validators=validators)
    assert await fetch(url) is None
    assert validators == {url: {"etag": '"v1"', "last_modified": LAST_MODIFIED}}
    request = feed_server.requests[-1]
    assert request.header("if-none-match") == '"v1"'
    assert request.header("if-modified-since") == LAST_MODIFIED
    # The second version of the feed: a new ETag, a 200 and the new validators.
    feed_server.serve("/hacks", b"[1, 2]", etag='"v2"')
    document = await fetch(url)
    assert document is not None
    assert document.body == b"[1, 2]"
    assert validators == {url: {"etag": '"v2"'}}


async def test_last_modified_alone_makes_a_conditional_request(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time]
) -> None:
    url = feed_server.url("/page")
    feed_server.serve("/page", b"<html/>", last_modified=LAST_MODIFIED)
    validators: dict[str, dict[str, str]] = {}
    fetch = make[0](validators=validators)
    assert await fetch(url) is not None
    assert await fetch(url) is None
    assert feed_server.requests[-1].header("if-modified-since") == LAST_MODIFIED
    # Validators the source no longer sends are dropped, so the next request is plain.
    feed_server.serve("/page", b"<html>2</html>")
    document = await fetch(url)
    assert document is not None
    assert document.body == b"<html>2</html>"
    assert url not in validators
    await fetch(url)
    assert feed_server.requests[-1].header("if-modified-since") is None


async def test_304_to_a_plain_request_is_an_error(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time]
) -> None:
    feed_server.script("/odd", [304])
    with pytest.raises(FetchError, match="304 to an unconditional request"):
        await make[0]()(feed_server.url("/odd"))


async def test_429_waits_as_long_as_retry_after_says(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time]
) -> None:
    feed_server.script("/hacks", [Reply(429, headers={"Retry-After": "7"}), Reply(200, b"[]")])
    build, time = make
    document = await build()(feed_server.url("/hacks"))
    assert document is not None
    assert document.body == b"[]"
    assert time.waits == [7.0]
    assert len(feed_server.requests_to("/hacks")) == 2


async def test_retry_after_as_an_http_date(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time]
) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    date = email.utils.format_datetime(when, usegmt=True)
    feed_server.script("/x", [Reply(503, headers={"Retry-After": date}), Reply(200, b"ok")])
    build, time = make
    assert await build()(feed_server.url("/x")) is not None
    (wait,) = time.waits
    assert 27 <= wait <= 30


async def test_a_retry_after_beyond_the_cap_fails_at_once(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time]
) -> None:
    feed_server.script("/x", [Reply(429, headers={"Retry-After": "3600"})])
    build, time = make
    with pytest.raises(FetchError, match=r"asks to wait 3600 s, longer than .* \(120 s\)"):
        await build()(feed_server.url("/x"))
    assert time.waits == []
    assert len(feed_server.requests) == 1


async def test_a_500_is_retried_then_succeeds(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time]
) -> None:
    feed_server.script("/x", [500, 502, Reply(200, b"fine")])
    build, time = make
    document = await build()(feed_server.url("/x"))
    assert document is not None
    assert document.body == b"fine"
    assert time.waits == [1.0, 2.0]  # backoff_s doubling (jitter held at its ceiling)


async def test_500_forever_fails_after_the_attempts(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time], caplog: pytest.LogCaptureFixture
) -> None:
    feed_server.script("/x", [500])
    build, time = make
    caplog.set_level(logging.DEBUG, logger="kamiyo.intel.sources.fetch")
    url = feed_server.url("/x?api_key=SECRET")
    with pytest.raises(FetchError) as failure:
        await build(attempts=5, backoff_s=1, backoff_cap_s=3)(url)
    message = str(failure.value)
    assert "HTTP 500" in message
    assert "after 5 attempts" in message
    assert "SECRET" not in message
    assert "\n" not in message
    assert len(feed_server.requests_to("/x")) == 5
    assert time.waits == [1.0, 2.0, 3.0, 3.0]  # capped
    levels = [r.levelno for r in caplog.records]
    # Each retry at INFO; the failure itself at DEBUG: the run or adapter reports it, once.
    assert levels == [logging.INFO] * 4 + [logging.DEBUG]
    assert not any("SECRET" in r.getMessage() for r in caplog.records)


async def test_real_jitter_stays_under_the_ceiling(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time]
) -> None:
    feed_server.script("/x", [500])
    build, time = make
    fetch = build(attempts=4, backoff_s=1, backoff_cap_s=30)
    fetch.jitter = random.Random(7).random
    with pytest.raises(FetchError):
        await fetch(feed_server.url("/x"))
    assert len(time.waits) == 3
    assert all(0 <= wait <= ceiling for wait, ceiling in zip(time.waits, [1, 2, 4], strict=True))
    assert len(set(time.waits)) == 3


@pytest.mark.parametrize(
    ("status", "expected"), [(404, "not found"), (410, "not found"), (403, "refused")]
)
async def test_other_4xx_fail_at_once(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time], status: int, expected: str
) -> None:
    feed_server.script("/gone", [status])
    build, time = make
    with pytest.raises(FetchError, match=expected) as failure:
        await build()(feed_server.url("/gone?token=SECRET"))
    assert f"{feed_server.url('/gone')}?…" in str(failure.value)
    assert "SECRET" not in str(failure.value)
    assert len(feed_server.requests) == 1
    assert time.waits == []


async def test_a_route_nobody_set_is_not_found(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time]
) -> None:
    with pytest.raises(FetchError, match="/nothing: not found"):
        await make[0]()(feed_server.url("/nothing"))


async def test_a_truncated_body_is_an_error_and_keeps_the_old_validators(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time]
) -> None:
    url = feed_server.url("/big")
    feed_server.script("/big", [Reply(200, b"x" * 5000, etag='"new"', sent=100)])
    validators = {url: {"etag": '"old"'}}
    with pytest.raises(FetchError, match=r"truncated \(received 100 of 5000 bytes\)"):
        await make[0](validators=validators, attempts=2)(url)
    assert validators == {url: {"etag": '"old"'}}
    assert len(feed_server.requests) == 2


async def test_a_truncated_body_once_is_read_whole_on_the_next_try(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time]
) -> None:
    feed_server.script("/big", [Reply(200, b"x" * 5000, sent=10), Reply(200, b"y" * 5000)])
    document = await make[0]()(feed_server.url("/big"))
    assert document is not None
    assert document.body == b"y" * 5000


async def test_an_empty_body_is_an_empty_document(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time]
) -> None:
    feed_server.serve("/empty", b"", content_type="text/html")
    document = await make[0]()(feed_server.url("/empty"))
    assert document is not None
    assert document.body == b""


async def test_a_body_over_the_cap_is_refused(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time]
) -> None:
    feed_server.serve("/huge", b"x" * 4096)
    with pytest.raises(FetchError, match=r"4096 bytes, above .*MAX_DOCUMENT_BYTES \(2048\)"):
        await make[0](max_document_bytes=2048)(feed_server.url("/huge"))
    # Compressed on the wire, over the cap once decoded: stopped while reading.
    feed_server.serve("/bomb", b"\0" * 100_000, gzip=True)
    with pytest.raises(FetchError, match=r"over .* bytes, above"):
        await make[0](max_document_bytes=2048)(feed_server.url("/bomb"))
    # Under the cap, compressed: decoded.
    feed_server.serve("/small", b"a" * 1500, gzip=True)
    document = await make[0](max_document_bytes=2048)(feed_server.url("/small"))
    assert document is not None
    assert document.body == b"a" * 1500


async def test_a_slow_source_times_out(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time]
) -> None:
    feed_server.script("/slow", [Reply(200, b"late", delay_s=1.0)])
    with pytest.raises(FetchError, match=r"timed out after 0.2 s \(after 1 attempt\)"):
        await make[0](timeout_s=0.2, attempts=1)(feed_server.url("/slow"))


async def test_redirects_are_followed(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time]
) -> None:
    feed_server.script("/old", [Reply(301, headers={"Location": "/new"})])
    feed_server.serve("/new", b"here")
    document = await make[0]()(feed_server.url("/old"))
    assert document is not None
    assert document.location == feed_server.url("/new")
    feed_server.script("/away", [Reply(302, headers={"Location": "ftp://example.com/x"})])
    with pytest.raises(FetchError, match="redirected off http"):
        await make[0]()(feed_server.url("/away"))


async def test_local_files_are_read_only_when_allowed(
    tmp_path: Path, make: tuple[MakeFetcher, Time]
) -> None:
    path = tmp_path / "hacks.json"
    path.write_bytes(b'[{"name": "x"}]')
    build, _ = make
    local = build(allow_local=True)
    for location in (str(path), path.as_uri()):
        document = await local(location)
        assert document is not None
        assert (document.body, document.content_type) == (b'[{"name": "x"}]', "application/json")
    with pytest.raises(FetchError, match="no such file"):
        await local(str(tmp_path / "missing.json"))
    with pytest.raises(FetchError, match="not a file"):
        await local(str(tmp_path))
    big = tmp_path / "big.json"
    big.write_bytes(b"x" * 2000)
    with pytest.raises(FetchError, match="2000 bytes, above"):
        await build(allow_local=True, max_document_bytes=1024)(str(big))
    with pytest.raises(FetchError, match="only with --from"):
        await build()(str(path))


async def test_other_schemes_are_refused(make: tuple[MakeFetcher, Time]) -> None:
    for location in ("ftp://example.com/feed", "gopher://example.com/", "data:,hello"):
        with pytest.raises(FetchError, match="only http"):
            await make[0](allow_local=True)(location)


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]", "10.1.2.3", "169.254.169.254",
     "224.0.0.1", "0.0.0.0", "[fe80::1]", "100.64.0.1", "192.168.1.1", "[fc00::1]"],
)  # fmt: skip
async def test_private_addresses_are_refused(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time], host: str
) -> None:
    port = feed_server.base_url.rpartition(":")[2]
    with pytest.raises(FetchError, match=r"refused: .* address; set KAMIYO_SOURCES_ALLOW_PRIVATE"):
        await make[0](allow_private=False)(f"http://{host}:{port}/feed")
    assert feed_server.requests == []


@pytest.mark.parametrize(
    ("address", "kind"),
    [("127.0.0.2", "loopback"), ("::1", "loopback"), ("::ffff:10.0.0.1", "private"),
     ("2002:c0a8:0101::1", "private"), ("169.254.1.1", "link-local"), ("ff02::1", "multicast"),
     ("240.0.0.1", "reserved"), ("198.18.0.1", "private"), ("8.8.8.8", None),
     ("2606:4700:4700::1111", None), ("::ffff:8.8.8.8", None)],
)  # fmt: skip
def test_refusal_kinds(address: str, kind: str | None) -> None:
    assert refusal(ipaddress.ip_address(address)) == kind


async def test_every_resolved_address_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[str] = []

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        if host == "nowhere.example":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    answers[:] = ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]
    await check_public("https://feed.example/x", "feed.example", 443)  # public: passes
    answers[:] = ["93.184.215.14", "10.0.0.7"]
    with pytest.raises(FetchError, match=r"feed.example \(10.0.0.7\) is a private address"):
        await check_public("https://feed.example/x", "feed.example", 443)
    with pytest.raises(FetchError, match=r"nowhere\.example does not resolve"):
        await check_public("https://nowhere.example/", "nowhere.example", 443)


async def test_requests_to_one_host_are_spaced(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time]
) -> None:
    feed_server.serve("/a", b"a")
    feed_server.serve("/b", b"b")
    build, time = make
    fetch = build(min_interval_s=1.5)
    for path in ("/a", "/b", "/a"):
        assert await fetch(feed_server.url(path)) is not None
    assert time.waits == [1.5, 1.5]
    time.now += 10  # long after: no wait
    assert await fetch(feed_server.url("/b")) is not None
    assert time.waits == [1.5, 1.5]


def test_the_pacer_reserves_slots_per_host() -> None:
    pacer = HostPacer(2.0)
    assert [pacer.delay("a:443", 0.0) for _ in range(3)] == [0.0, 2.0, 4.0]
    assert pacer.delay("b:443", 0.0) == 0.0
    assert pacer.delay("a:443", 100.0) == 0.0


def test_locations_show_without_secrets() -> None:
    assert shown("https://u:p@api.example/v1/hacks?key=s#f") == "https://api.example/v1/hacks?…"
    assert shown("https://api.example/feed") == "https://api.example/feed"
    assert shown("/srv/mirror/hacks.json") == "/srv/mirror/hacks.json"


# The settings the fetch layer and the refresh read (``KAMIYO_SOURCES_*``).


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15m", 900), ("1h", 3600), ("1h30m", 5400), ("90s", 90), ("2d", 172800), ("0.5h", 1800),
     ("120", 120), (" 1H 5M ", 3900), ("", None), ("  ", None)],
)  # fmt: skip
def test_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["15x", "m15", "1h-5m", "fifteen minutes", "0m", "0"])
def test_bad_durations_say_what_to_write(text: str) -> None:
    with pytest.raises(ValueError, match="such as 90s, 15m, 1h"):
        parse_duration(text)


def test_source_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAMIYO_SOURCES_TIMEOUT_S", "5")
    monkeypatch.setenv("KAMIYO_SOURCES_ATTEMPTS", "2")
    monkeypatch.setenv("KAMIYO_SOURCES_MIN_INTERVAL_S", "0.5")
    monkeypatch.setenv("KAMIYO_SOURCES_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("KAMIYO_SOURCES_DISABLED", "rekt, slowmist")
    monkeypatch.setenv("KAMIYO_SOURCES_URLS", '{"rekt": "https://mirror.example/rekt.xml"}')
    monkeypatch.setenv("KAMIYO_SOURCES_REFRESH_EVERY", "15m")
    sources = Settings(_env_file=None).sources
    assert (sources.timeout_s, sources.attempts, sources.min_interval_s) == (5, 2, 0.5)
    assert sources.allow_private is True
    assert sources.disabled == ["rekt", "slowmist"]
    assert sources.urls == {"rekt": "https://mirror.example/rekt.xml"}
    assert sources.refresh_every == 900
    monkeypatch.setenv("KAMIYO_SOURCES_DISABLED", '["defillama"]')
    assert Settings(_env_file=None).sources.disabled == ["defillama"]


def test_source_settings_defaults() -> None:
    sources = SourceSettings(_env_file=None)
    assert (sources.timeout_s, sources.attempts, sources.backoff_s) == (20, 4, 1.0)
    assert (sources.backoff_cap_s, sources.retry_after_cap_s, sources.min_interval_s) == (
        30,
        120,
        1.0,
    )
    assert (sources.allow_private, sources.disabled, sources.urls) == (False, [], {})
    assert sources.refresh_every is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("KAMIYO_SOURCES_REFRESH_EVERY", "15x", "KAMIYO_SOURCES_REFRESH_EVERY is not a duration"),
        ("KAMIYO_SOURCES_URLS", '{"rekt": "ftp://m/x"}', "is not an http(s) URL for rekt"),
        ("KAMIYO_SOURCES_URLS", "{rekt", "KAMIYO_SOURCES_URLS is not valid JSON"),
        ("KAMIYO_SOURCES_DISABLED", '["ours"', "KAMIYO_SOURCES_DISABLED is not a JSON list"),
        ("KAMIYO_SOURCES_ATTEMPTS", "0", "KAMIYO_SOURCES_ATTEMPTS"),
    ],
)
def test_bad_source_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as failure:
        Settings(_env_file=None)
    described = describe_settings_error(failure.value)
    assert message in described
    assert value not in described


def test_every_source_setting_is_in_the_readme() -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    for field in SourceSettings.model_fields:
        assert f"`{SourceSettings.env_name(field)}`" in readme or (
            f"`sources.{field}`" in readme
        ), field


def test_the_user_agent_names_the_project_url_the_metadata_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = Message()
    message["Project-URL"] = "Documentation, https://docs.example/kamiyo"
    message["Project-URL"] = "Homepage, https://kamiyo.example"
    monkeypatch.setattr(importlib.metadata, "metadata", lambda name: message)
    assert user_agent() == f"KAMIYO/{kamiyo.__version__} (+https://kamiyo.example) source-refresh"
    monkeypatch.setattr(importlib.metadata, "metadata", lambda name: Message())
    assert user_agent() == f"KAMIYO/{kamiyo.__version__} source-refresh"


async def test_fetchers_sharing_a_pacer_space_their_requests(
    feed_server: FeedServer, make: tuple[MakeFetcher, Time]
) -> None:
    feed_server.serve("/hacks", b"[]")
    feed_server.serve("/protocols", b"[]")
    build, time = make
    first, second = build(), build()
    second.pacer = first.pacer = HostPacer(2.0)
    await first(feed_server.url("/hacks"))
    await second(feed_server.url("/protocols"))
    assert time.waits == [2.0]
