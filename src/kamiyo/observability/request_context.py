"""The id of the request being served, carried to every log line, usage record and error answer
made while serving it.

An HTTP request's id is its ``X-Request-ID`` when that is a safe token (so a caller, or a proxy
in front, can follow its own id through our logs), else the trace id of its W3C
``traceparent`` (so logs join the trace), else a fresh one. A stdio call gets a fresh one per
JSON-RPC request. The id lives in a ``contextvars`` variable: tasks started while serving a
request inherit it, and ``RequestIds`` puts it on every log record.
"""

import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

REQUEST_ID_HEADER: Final = "X-Request-ID"
# Where the HTTP middleware (web/request_ids.py) leaves a request's id in its ASGI scope.
REQUEST_ID_STATE: Final = "request_id"
TRACEPARENT_HEADER: Final = "traceparent"
# What a caller's id may be: the characters of ids that proxies and SDKs make (UUIDs, hex,
# base64url, ULIDs, "svc-1234.5"), bounded, so that nothing a caller sends can forge a log line
# or carry a payload into it.
MAX_REQUEST_ID: Final = 128
_SAFE_ID: Final = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:\-]{{0,{MAX_REQUEST_ID - 1}}}")
# W3C Trace Context: version-traceid-parentid-flags, lowercase hex; an all-zero id is invalid.
_TRACEPARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_INVALID_TRACE_ID: Final = "0" * 32
# The pretty log shows this many characters of an id: enough to tell requests apart on screen.
SHORT_ID: Final = 8

_current: ContextVar[str | None] = ContextVar("kamiyo_request_id", default=None)


def new_request_id() -> str:
    """A fresh id: 32 hex digits, the shape of a trace id."""
    return secrets.token_hex(16)


def safe_request_id(given: str | None) -> str | None:
    """``given`` when it is an id we may carry and log as it is, else None."""
    if given is None:
        return None
    given = given.strip()
    return given if _SAFE_ID.fullmatch(given) else None


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a valid W3C ``traceparent`` header, else None."""
    if traceparent is None:
        return None
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match is None or match[1] == "ff" or match[2] == _INVALID_TRACE_ID:
        return None
    return match[2]


def request_id_for(request_id: str | None, traceparent: str | None) -> str:
    """The id a request is served under, from its headers' values."""
    return safe_request_id(request_id) or trace_id_of(traceparent) or new_request_id()


def request_id_in(request: object) -> str | None:
    """The id the HTTP middleware gave ``request`` (a Starlette request), None for anything
    else (no request: stdio)."""
    scope = getattr(request, "scope", None)
    state = scope.get("state") if isinstance(scope, dict) else None
    value = state.get(REQUEST_ID_STATE) if isinstance(state, dict) else None
    return value if isinstance(value, str) else None


def current_request_id() -> str | None:
    """The id of the request being served here, None outside any."""
    return _current.get()


@contextmanager
def serving(request_id: str) -> Iterator[str]:
    """Serve under ``request_id`` until the block ends."""
    token = _current.set(request_id)
    try:
        yield request_id
    finally:
        _current.reset(token)


class RequestIds(logging.Filter):
    """Puts ``request_id`` on every record (None outside a request): the JSON log writes it as
    a field; the pretty log shows its first characters."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):  # one given as an extra stays
            record.request_id = _current.get()
        return True
