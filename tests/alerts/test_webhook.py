"""The webhook sender against a real receiver on loopback: signed POSTs that the
``standardwebhooks`` library's own verifier accepts, what each kind of answer comes to, and the
SSRF guard (checked after DNS, on the address actually connected to). Names other than
localhost are answered by a stand-in resolver, so nothing leaves the machine."""

import asyncio
import base64
import datetime as dt
import logging
import re
import secrets
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks

import kamiyo
from kamiyo.alerts import webhook
from kamiyo.alerts.webhook import Attempt, send
from kamiyo.alerts.webhook_url import MAX_URL_LENGTH, WebhookUrlError, check_webhook_url
from kamiyo.config import WebhookSettings
from tests.alerts.receiver import ENDLESS_LIMIT, Answer, Receiver, tls_contexts

pytestmark = pytest.mark.anyio

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
BODY = '{"data":{"alert_id":"alr_1"},"timestamp":"2026-12-02T10:00:00+00:00","type":"alert.test"}'
LOOPBACK_OK = WebhookSettings(allow_loopback=True, _env_file=None)
STRICT = WebhookSettings(_env_file=None)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


async def deliver(
    url: str, settings: WebhookSettings = LOOPBACK_OK, *, require_https: bool = False
) -> Attempt:
    return await send(
        url,
        webhook_id="msg_test1",
        body=BODY,
        secret=SECRET,
        timestamp=dt.datetime.now(dt.UTC),
        settings=settings,
        require_https=require_https,
    )


Lookups = dict[str, list[list[str]]]


@pytest.fixture
async def resolver(monkeypatch: pytest.MonkeyPatch) -> Callable[[Lookups], list[str]]:
    """Answer each given name's lookups in turn with the given addresses (the last answer kept;
    no addresses: the name does not exist); other names go to the real resolver. The returned
    function takes the answers and gives the names asked for so far, in order."""
    real = asyncio.get_running_loop().getaddrinfo
    asked: list[str] = []
    answers: Lookups = {}

    async def getaddrinfo(host: str, port: int, **kwargs: Any) -> list[tuple[Any, ...]]:
        asked.append(host)
        if host not in answers:
            return await real(host, port, **kwargs)
        lookups = answers[host]
        addresses = lookups.pop(0) if len(lookups) > 1 else lookups[0]
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)

    def configure(names: Lookups) -> list[str]:
        answers.update(names)
        return asked

    return configure


Resolver = Callable[[Lookups], list[str]]


# check_webhook_url: the form, at rule creation and before every attempt.


@pytest.mark.parametrize(
    ("url", "require_https", "message"),
    [
        ("", False, "is empty"),
        ("https://" + "a" * MAX_URL_LENGTH, False, f"longer than {MAX_URL_LENGTH}"),
        ("ftp://files.example/hook", False, "must start with https:// or http://"),
        ("http://hooks.example/x", True, "must start with https://$"),
        ("https://user:pass@hooks.example/x", False, "user name or password"),
        ("https://token@hooks.example/x", False, "user name or password"),
        ("https:///path", False, "has no host"),
        ("https://", False, "has no host"),
        ("https://hooks.example:0/x", False, "between 1 and 65535"),
        ("https://hooks.example:99999/x", False, "does not parse"),
        ("https://hooks.example/x#frag", False, "#fragment"),
    ],
)
def test_check_webhook_url_refuses(url: str, require_https: bool, message: str) -> None:
    with pytest.raises(WebhookUrlError, match=message):
        check_webhook_url(url, require_https=require_https)


def test_check_webhook_url_accepts() -> None:
    assert check_webhook_url(" https://hooks.example/a?b=1 ", require_https=True) == (
        "https://hooks.example/a?b=1"
    )
    assert check_webhook_url("http://127.0.0.1:8080/a", require_https=False)


# Delivery


async def test_a_signed_post_arrives_and_verifies(receiver: Receiver) -> None:
    attempt = await deliver(receiver.url(path="/hook?x=1"))
    assert attempt == Attempt(delivered=True, status_code=200, error=None, retryable=False)
    [post] = receiver.posts
    assert post.path == "/hook?x=1"
    assert post.body == BODY.encode()
    assert post.headers["content-type"] == "application/json"
    assert post.headers["user-agent"] == f"kamiyo-webhooks/{kamiyo.__version__}"
    assert post.headers["webhook-id"] == "msg_test1"
    assert post.headers["host"] == f"127.0.0.1:{receiver.port}"
    verifier = standardwebhooks.Webhook(SECRET)
    assert verifier.verify(post.body, post.headers)["data"] == {"alert_id": "alr_1"}
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verifier.verify(post.body.replace(b"alr_1", b"alr_2"), post.headers)
    other = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(other).verify(post.body, post.headers)


async def test_the_signature_is_over_the_given_time_in_any_zone(receiver: Receiver) -> None:
    when = dt.datetime(2026, 12, 2, 12, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    await send(
        receiver.url(),
        webhook_id="msg_zone",
        body=BODY,
        secret=SECRET,
        timestamp=when,
        settings=LOOPBACK_OK,
        require_https=False,
    )
    [post] = receiver.posts
    assert post.headers["webhook-timestamp"] == str(int(when.timestamp()))
    expected = standardwebhooks.Webhook(SECRET).sign("msg_zone", when.astimezone(dt.UTC), BODY)
    assert post.headers["webhook-signature"] == expected


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (408, True), (404, False)]
)
async def test_failed_answers(receiver: Receiver, status: int, retryable: bool) -> None:
    receiver.reply = Answer(status)
    attempt = await deliver(receiver.url())
    assert attempt == Attempt(False, status, f"HTTP {status}", retryable)
    assert len(receiver.posts) == 1


async def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.reply = Answer(302, headers={"location": receiver.url(path="/elsewhere")})
    attempt = await deliver(receiver.url())
    assert attempt == Attempt(False, 302, "redirects are not followed (HTTP 302)", False)
    assert [post.path for post in receiver.posts] == ["/hook"]


async def test_an_endless_answer_is_read_only_up_to_the_cap(receiver: Receiver) -> None:
    # A sender reading it all would time out, or fail when the receiver gives up at its limit.
    receiver.reply = Answer(200, endless=True)
    # A timeout far beyond the run: reading on to it would be "timed out", not delivered.
    settings = WebhookSettings(
        allow_loopback=True, max_response_bytes=64 * 1024, timeout_s=60, _env_file=None
    )
    assert await deliver(receiver.url(), settings) == Attempt(True, 200, None, False)
    assert receiver.sent < ENDLESS_LIMIT  # the sender hung up, long before the receiver's stop


async def test_a_slow_receiver_times_out(receiver: Receiver) -> None:
    # The receiver answers only once the attempt is over: any answer seen would be a bug.
    answer_now = threading.Event()
    receiver.reply = Answer(200, until=answer_now)
    settings = WebhookSettings(allow_loopback=True, timeout_s=0.3, _env_file=None)
    try:
        attempt = await deliver(receiver.url(), settings)
    finally:
        answer_now.set()
    assert attempt == Attempt(False, None, "timed out after 0.3 s", True)
    assert len(receiver.posts) == 1  # it reached the receiver, which had not answered yet


async def test_nothing_listening_is_worth_a_retry() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    attempt = await deliver(f"http://127.0.0.1:{port}/hook")
    assert attempt == Attempt(
        False, None, "could not connect to 127.0.0.1: Connection refused", True
    )


async def test_a_bad_url_is_a_permanent_failure() -> None:
    attempt = await deliver("ftp://files.example/hook")
    assert attempt == Attempt(
        False, None, "the webhook URL must start with https:// or http://", False
    )


# SSRF


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("127.0.0.1", "refused: 127.0.0.1 is a loopback address"),
        ("[::1]", "refused: ::1 is a loopback address"),
        ("[::ffff:127.0.0.1]", "refused: ::ffff:127.0.0.1 is a loopback address"),
        ("localhost", r"refused: localhost \((127\.0\.0\.1|::1)\) is a loopback address"),
        ("169.254.169.254", "refused: 169.254.169.254 is a link-local address"),
        ("10.0.0.5", "refused: 10.0.0.5 is a private address"),
        ("192.168.1.1", "refused: 192.168.1.1 is a private address"),
        ("0.0.0.0", "refused: 0.0.0.0 is an unspecified address"),
    ],
)
async def test_private_addresses_are_refused_before_connecting(
    receiver: Receiver, host: str, message: str
) -> None:
    attempt = await deliver(receiver.url(host=host), STRICT)
    # The refusal itself says no connection was tried: one to 10.x would end in "timed out"
    # or "could not connect", and one to loopback would reach the receiver.
    assert attempt.error is not None
    assert re.fullmatch(message, attempt.error), attempt.error
    assert attempt == Attempt(False, None, attempt.error, retryable=False)
    assert receiver.connections == 0


async def test_one_private_answer_among_public_ones_is_enough(
    receiver: Receiver, resolver: Resolver
) -> None:
    resolver({"hooks.example": [["93.184.215.14", "127.0.0.1"]]})
    attempt = await deliver(receiver.url(host="hooks.example"), STRICT)
    assert attempt.error == "refused: hooks.example (127.0.0.1) is a loopback address"
    assert receiver.connections == 0


async def test_the_checked_address_is_the_one_connected_to(
    receiver: Receiver, resolver: Resolver
) -> None:
    # The first lookup says loopback (allowed here), any later one a private address: a sender
    # that looked the name up again to connect would be rebound to 10.0.0.5 and fail.
    asked = resolver({"hooks.example": [["127.0.0.1"], ["10.0.0.5"]]})
    attempt = await deliver(receiver.url(host="hooks.example"))
    assert attempt.delivered, attempt.error
    assert asked.count("hooks.example") == 1
    [post] = receiver.posts
    assert post.headers["host"] == f"hooks.example:{receiver.port}"


async def test_localhost_is_reached_when_loopback_is_allowed(receiver: Receiver) -> None:
    # localhost may resolve to ::1 first, where nothing listens: the next address is tried.
    attempt = await deliver(receiver.url(host="localhost"))
    assert attempt.delivered, attempt.error
    assert receiver.posts[0].headers["host"] == f"localhost:{receiver.port}"


async def test_an_unknown_name_is_worth_a_retry(resolver: Resolver) -> None:
    resolver({"nowhere.example": [[]]})
    attempt = await deliver("https://nowhere.example/hook", STRICT)
    assert attempt == Attempt(False, None, "the host nowhere.example does not resolve", True)


async def test_production_requires_https(receiver: Receiver, resolver: Resolver) -> None:
    attempt = await deliver(receiver.url(host="hooks.example"), STRICT, require_https=True)
    assert attempt == Attempt(False, None, "the webhook URL must start with https://", False)
    # allow_loopback lets plain http reach this machine only, never a public address.
    resolver({"public.example": [["93.184.215.14"]]})
    attempt = await deliver(receiver.url(host="public.example"), require_https=True)
    assert attempt.error == (
        "the webhook URL must start with https:// (plain http reaches loopback only)"
    )
    assert receiver.connections == 0
    assert (await deliver(receiver.url(), require_https=True)).delivered


async def test_https_checks_the_certificate_against_the_name(
    tmp_path: Path, resolver: Resolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver({"hooks.example": [["127.0.0.1"]], "other.example": [["127.0.0.1"]]})
    server_tls, client_tls = tls_contexts("hooks.example", tmp_path)
    monkeypatch.setattr(webhook, "tls_context", lambda: client_tls)
    with Receiver(tls=server_tls) as receiver:
        url = receiver.url(host="hooks.example", scheme="https")
        attempt = await deliver(url, require_https=True)
        assert attempt.delivered, attempt.error
        [post] = receiver.posts
        assert post.headers["host"] == f"hooks.example:{receiver.port}"
        assert standardwebhooks.Webhook(SECRET).verify(post.body, post.headers)
        # The same server under another name: its certificate does not name that one.
        attempt = await deliver(receiver.url(host="other.example", scheme="https"))
        assert attempt == Attempt(
            False,
            None,
            "could not connect to other.example (127.0.0.1): certificate verify failed "
            "(Hostname mismatch, certificate is not valid for 'other.example'.)",
            retryable=True,
        )
        assert len(receiver.posts) == 1


async def test_the_log_shows_the_host_never_the_secret(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kamiyo.alerts.webhook")
    await deliver(receiver.url(path="/hooks/t0ken-in-path?key=query-secret"))
    receiver.reply = Answer(500)
    await deliver(receiver.url(path="/hooks/t0ken-in-path"))
    signature = receiver.posts[0].headers["webhook-signature"]
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        f"webhook msg_test1 to 127.0.0.1:{receiver.port} delivered (HTTP 200)",
        f"webhook msg_test1 to 127.0.0.1:{receiver.port} failed: HTTP 500 (retryable)",
    ]
    assert [record.levelno for record in caplog.records] == [logging.INFO, logging.WARNING]
    text = caplog.text
    for secret in (SECRET, SECRET.removeprefix("whsec_"), signature, "t0ken", "query-secret"):
        assert secret not in text


def test_the_tls_context_checks_certificates() -> None:
    context = webhook.tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
