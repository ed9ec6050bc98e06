import asyncio
import json
import logging
import sys
from collections.abc import Iterator
from typing import Literal

import pytest
from pydantic import SecretStr

from kamiyo.config import DatabaseSettings, Settings, SmtpSettings
from kamiyo.observability import (
    MAX_LOGGED_MESSAGE,
    MAX_LOGGED_VALUE,
    BoundedRecords,
    bounded,
    configure_logging,
)
from kamiyo.observability.redaction import REDACTED, known_secrets
from kamiyo.observability.request_context import SHORT_ID, serving
from tests.web.raw_http import longest_run


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """configure_logging replaces the root handlers with one on this test's captured stderr,
    which closes after it: later tests (and threads) must not log there."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_logs_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("kamiyo.test").info("hello %s", "world", extra={"tool": "search"})
    captured = capsys.readouterr()
    assert captured.out == ""
    record = json.loads(captured.err.strip().splitlines()[-1])
    assert record["message"] == "hello world"
    assert record["level"] == "INFO"
    assert record["logger"] == "kamiyo.test"
    assert record["tool"] == "search"


def test_pretty_logs_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("WARNING", "pretty")
    logging.getLogger("kamiyo.test").warning("careful")
    logging.getLogger("kamiyo.test").info("not shown")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "careful" in captured.err
    assert "not shown" not in captured.err


HUGE = "x" * 4_000_000
# The most of a hostile value any line may carry: a bound of a few hundred characters.
FEW_HUNDRED = 600


@pytest.mark.parametrize("fmt", ["json", "pretty"])
def test_long_values_are_cut_in_every_part_of_a_record(
    capsys: pytest.CaptureFixture[str], fmt: Literal["json", "pretty"]
) -> None:
    """Arguments, an f-string message, extras, bytes and a traceback's exception message: each
    bounded, each cut marked, whatever logged it."""
    configure_logging("DEBUG", fmt)
    log = logging.getLogger("kamiyo.test")
    log.info("Resource %r failed: %r", HUGE, "Unknown resource: " + HUGE)
    log.warning(f"Invalid Host header: {HUGE}")
    log.debug("Getting resource", extra={"uri": HUGE})
    log.info("Received JSON: %s", HUGE.encode())
    try:
        raise ValueError(HUGE)
    except ValueError:
        log.exception("failed on %s", "a value")
    err = capsys.readouterr().err
    assert len(err) < 20_000  # the unbounded record was 20 MB
    assert longest_run(err) <= FEW_HUNDRED
    # Four cut values, and in JSON the extra too (the pretty format does not show extras).
    assert err.count("more characters]") >= (5 if fmt == "json" else 4)
    assert "more bytes]" in err
    assert "ValueError:" in err  # the traceback keeps the exception type, its message cut


def test_json_lines_stay_json_when_cut(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("kamiyo.test").info("tool %s", HUGE, extra={"uri": HUGE})
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert record["message"].startswith("tool xxx")
    assert record["message"].endswith(" more characters]")
    assert len(record["message"]) <= MAX_LOGGED_MESSAGE + 40
    assert len(record["uri"]) <= MAX_LOGGED_VALUE + 40


def test_ordinary_records_pass_unchanged() -> None:
    """The normal path: arguments, message and exception untouched."""
    bounding = BoundedRecords()
    record = logging.LogRecord("k", logging.INFO, "p", 1, "%s of %d", ("one", 2), None)
    assert bounding.filter(record)
    assert record.args == ("one", 2)
    assert record.getMessage() == "one of 2"
    try:
        raise KeyError("short")
    except KeyError:
        failed = logging.LogRecord("k", logging.ERROR, "p", 1, "failed", None, sys.exc_info())
    assert bounding.filter(failed)
    assert failed.exc_info is not None  # kept for other handlers (pytest's caplog, say)
    assert failed.exc_text is not None
    assert failed.exc_text.endswith("KeyError: 'short'")


def test_a_broken_logging_call_is_left_to_the_handler() -> None:
    """A filter that raised would raise into the code that logged; the handler reports it."""
    record = logging.LogRecord("k", logging.INFO, "p", 1, "%s %s", ("only one",), None)
    assert BoundedRecords().filter(record)


def test_bounded_says_how_much_was_cut() -> None:
    assert bounded("abc", 5) == "abc"
    assert bounded("abcdefgh", 5) == "abcde…[3 more characters]"


def test_a_connection_reset_cancelled_with_its_task_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    pool = logging.getLogger("sqlalchemy.pool.impl.AsyncAdaptedQueuePool")
    try:
        raise asyncio.CancelledError
    except asyncio.CancelledError:
        pool.error("Exception during reset or similar", exc_info=True)
    try:
        raise RuntimeError("a real failure")
    except RuntimeError:
        pool.error("Exception during reset or similar", exc_info=True)
    lines = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    assert [line["level"] for line in lines] == ["INFO", "ERROR"]
    assert "Traceback" not in json.dumps(lines[0])
    assert "cancelled task" in lines[0]["message"]
    assert "RuntimeError: a real failure" in lines[1]["exc_info"]


# Credentials a line may come to carry, each with the secret in it.
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
LEAKS = {
    "bearer header": ("Authorization: Bearer {}", "opaqueOAuthToken0123456789"),
    "logged headers": ("{{'cookie': '{}'}}", "kamiyo_session=abcDEF0123456789xyz"),
    "JSON header": ('{{"payment-signature": "{}"}}', "eyJ4NDAyIjoyfQ"),
    "x402 v1": ("X-PAYMENT={}", "eyJ4NDAyIjoxfQ"),
    "stripe signature": ("Stripe-Signature: {}", "t=1,v1=deadbeef"),
    "form field": ("refresh_token={}&client_id=c", "someRefreshToken0123"),
    "API key": ("key {} revoked", "kmy_live_" + "a" * 43),
    "bundle token": ("paid from {}", "kb_" + "b" * 32),
    "webhook secret": ("secret {}", "whsec_" + "c" * 32),
    "Stripe key": ("{} refused", "sk_test_" + "d" * 24),
    "JWT": ("token {} ok", JWT),
}


@pytest.mark.parametrize("case", LEAKS)
def test_credentials_are_redacted_wherever_they_are_logged(
    capsys: pytest.CaptureFixture[str], case: str
) -> None:
    form, secret = LEAKS[case]
    line = form.format(secret)
    configure_logging("INFO", "json")
    log = logging.getLogger("kamiyo.test")
    log.info("saw %s", line)  # in an argument
    log.info("extra", extra={"header": line})  # in an extra
    try:
        raise ValueError(line)
    except ValueError:
        log.exception("failed")  # in a traceback
    records = [json.loads(text) for text in capsys.readouterr().err.splitlines()]
    shown = [records[0]["message"], records[1]["header"], records[2]["exc_info"]]
    for text in shown:
        assert secret not in text
        # Only the secret goes: the words around it stay.
        assert text.count(REDACTED) == 1, text
        assert form.format(REDACTED).split(REDACTED)[0].strip("{'\" ") in text


def test_configured_secrets_are_redacted_by_value(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(
        smtp=SmtpSettings(password=SecretStr("plain-smtp-password")),
        database=DatabaseSettings(url="postgresql://kamiyo:db-password-123@db/kamiyo"),
        environment="test",
        _env_file=None,
    )
    known = known_secrets(settings)
    assert {"plain-smtp-password", "db-password-123"} <= set(known)
    configure_logging("INFO", "pretty", known)
    logging.getLogger("kamiyo.test").warning("login failed with plain-smtp-password to db")
    logging.getLogger("kamiyo.test").warning("url %s", "postgresql://kamiyo:db-password-123@db")
    err = capsys.readouterr().err
    assert "plain-smtp-password" not in err
    assert "db-password-123" not in err
    assert "login failed with" in err


def test_the_pretty_log_shows_a_short_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "pretty")
    with serving("0123456789abcdef0123456789abcdef"):
        logging.getLogger("kamiyo.test").warning("inside")
    logging.getLogger("kamiyo.test").warning("outside")
    err = capsys.readouterr().err
    assert f"[{'0123456789abcdef'[:SHORT_ID]}] inside" in err
    assert "0123456789abcdef0123" not in err  # only the first characters
    assert "] outside" not in err
