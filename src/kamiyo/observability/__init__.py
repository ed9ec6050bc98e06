"""Logging: always to stderr, because stdout carries the stdio MCP transport.

Every record our handler writes is bounded first (``BoundedRecords``): callers send names, URIs,
paths and headers, and code that logs one in full (ours, the SDK's, uvicorn's) would otherwise
let one request write megabytes of log and, with the pretty handler, hold the event loop for
seconds while it is laid out. Then ``Redacted`` (redaction.py) blanks out credentials, and
``RequestIds`` (request_context.py) puts the id of the request being served on the record: the
JSON log writes it as ``request_id``, the pretty log shows its first characters.
"""

import asyncio
import logging
import sys
import traceback
from collections.abc import Iterable
from typing import Any, Final, Literal

from pythonjsonlogger.json import JsonFormatter
from rich.console import Console
from rich.logging import RichHandler

from kamiyo.observability.redaction import Redacted
from kamiyo.observability.request_context import SHORT_ID, RequestIds

# The most of any one argument or extra field a log line shows, and of a whole message: enough
# for every value we mean to log (ids, tool names, paths), far short of what a caller can send.
MAX_LOGGED_VALUE: Final = 256
MAX_LOGGED_MESSAGE: Final = 512
# A traceback keeps its frames; each of its lines (the exception's message is one) is bounded,
# and a traceback longer than this many lines keeps its first and last halves.
MAX_TRACEBACK_LINES: Final = 400
# Attributes every record has: the rest are extras, which the JSON formatter writes out.
_PLAIN_RECORD: Final = frozenset(logging.makeLogRecord({}).__dict__)
_RECORD_ATTRIBUTES: Final = _PLAIN_RECORD | {"message", "asctime", "taskName"}


def bounded(text: str, limit: int = MAX_LOGGED_VALUE) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[{len(text) - limit:,} more characters]"


class BoundedRecords(logging.Filter):
    """Bounds each record before it is formatted: every string or bytes argument, every string
    extra, the rendered message and each traceback line, each cut marked as such.

    On the normal path (short values, no traceback) this costs a few length checks and one
    extra rendering of the message; only records that are too long are changed.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple):
            for arg in args:  # a loop, not a comprehension: this runs for every record
                if isinstance(arg, str | bytes | bytearray) and len(arg) > MAX_LOGGED_VALUE:
                    record.args = tuple(map(_bounded_argument, args))
                    break
        elif isinstance(args, dict):
            record.args = {key: _bounded_argument(arg) for key, arg in args.items()}
        try:
            message = record.getMessage()
        except Exception:  # a broken call: the handler reports it as it always has
            return True
        if len(message) > MAX_LOGGED_MESSAGE:
            record.msg, record.args = bounded(message, MAX_LOGGED_MESSAGE), None
        if len(record.__dict__) > len(_PLAIN_RECORD):  # it has extras
            for key in record.__dict__.keys() - _RECORD_ATTRIBUTES:
                value = record.__dict__[key]
                if isinstance(value, str) and len(value) > MAX_LOGGED_VALUE:
                    record.__dict__[key] = bounded(value)
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            exc_type, exc, tb = record.exc_info
            chunks = traceback.format_exception(exc_type, exc, tb)
            record.exc_text = _bounded_lines(chunks)
            if record.exc_text != "".join(chunks).rstrip("\n"):
                # The JSON formatter renders exc_info afresh, and would write it all.
                record.exc_info = None
        if record.stack_info:
            record.stack_info = _bounded_lines(record.stack_info.splitlines(keepends=True))
        return True


def _bounded_argument(arg: Any) -> Any:
    if isinstance(arg, str) and len(arg) > MAX_LOGGED_VALUE:
        return bounded(arg)
    if isinstance(arg, bytes | bytearray) and len(arg) > MAX_LOGGED_VALUE:
        return f"{bytes(arg[:MAX_LOGGED_VALUE])!r}…[{len(arg) - MAX_LOGGED_VALUE:,} more bytes]"
    return arg


def _bounded_lines(chunks: list[str]) -> str:
    lines = "".join(chunks).rstrip("\n").split("\n")
    if len(lines) > MAX_TRACEBACK_LINES:
        half = MAX_TRACEBACK_LINES // 2
        cut = len(lines) - 2 * half
        lines = [*lines[:half], f"…[{cut:,} more lines]", *lines[-half:]]
    return "\n".join(bounded(line, MAX_LOGGED_MESSAGE) for line in lines)


class CancelledResets(logging.Filter):
    """SQLAlchemy's pool logs "Exception during reset" with a traceback when the task that held
    a connection was cancelled while it was given back (a stream that ended, a server that
    stops): an ordinary event here, said in one line without the traceback. The pool discards
    such a connection itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        cancelled = record.exc_info is not None and isinstance(
            record.exc_info[1], asyncio.CancelledError
        )
        if cancelled and record.name.startswith("sqlalchemy.pool"):
            record.msg = "a database connection was given back by a cancelled task; discarded"
            record.args = ()
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class ShortRequestIds(logging.Formatter):
    """The pretty log's lines: the message, after the first characters of the request id when
    there is one (enough to tell requests apart on screen)."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"[{request_id[:SHORT_ID]}] {line}" if isinstance(request_id, str) else line


def configure_logging(
    level: str = "INFO",
    fmt: Literal["pretty", "json"] = "pretty",
    secrets: Iterable[str] = (),
) -> None:
    """Logs to stderr, each record bounded, redacted (``secrets``: the configured secret
    values, blanked wherever they appear) and tagged with its request id."""
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
        handler.setFormatter(ShortRequestIds("%(message)s", datefmt="[%X]"))
    handler.addFilter(CancelledResets())  # before BoundedRecords renders the traceback
    handler.addFilter(BoundedRecords())
    handler.addFilter(Redacted(secrets))  # after BoundedRecords: the message is rendered, short
    handler.addFilter(RequestIds())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Alembic narrates every step at INFO; the runtime logs what matters about migrations.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
    # Library warnings (solana-py's deprecations, say) go through the handler too, so a JSON
    # log stays JSON.
    logging.captureWarnings(True)
    # HTTP clients log every request's full URL at INFO, and RPC URLs carry provider API keys.
    for name in ("httpx", "httpx2", "httpcore", "httpcore2"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # The Stripe library logs whole response bodies at DEBUG, and a customer portal session's
    # body holds its URL, a single-use log-in to someone's billing: never below INFO.
    logging.getLogger("stripe").setLevel(max(logging.INFO, root.level))
