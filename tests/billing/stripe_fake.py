"""A stand-in for Stripe's API on loopback, for the calls KAMIYO makes.

It is a real HTTP server (the ``stripe`` library talks to it over a socket, as to Stripe), answers
``POST /v1/checkout/sessions`` and ``POST /v1/billing_portal/sessions`` in Stripe's format (the
checkout answer is Stripe's recorded fixture with the request's values put in), lists the
subscriptions a test puts in ``subscriptions`` at ``GET /v1/subscriptions``, checks the
secret key like Stripe does, replays answers for a repeated ``Idempotency-Key`` like Stripe does,
and records every request for the tests to inspect. ``fail_next`` makes it answer errors.
"""

import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

FIXTURES = Path(__file__).parent.parent / "fixtures" / "stripe" / "objects"
SECRET_KEY = "sk_test_kamiyo_fake_0123456789abcdef"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    form: dict[str, str]  # Stripe's form encoding, flat: "metadata[tier]" -> "personal"
    headers: dict[str, str]  # lower-case names
    query: str = ""  # a GET's parameters as sent (also parsed into ``form``)

    def nested(self, prefix: str) -> dict[str, str]:
        """The fields under ``prefix[...]``, e.g. nested("metadata") -> {"tier": ...}."""
        start = prefix + "["
        return {
            key[len(start) : -1]: value
            for key, value in self.form.items()
            if key.startswith(start) and key.endswith("]") and "][" not in key[len(start) :]
        }


@dataclass
class _Failure:
    status: int
    retry: bool | None  # the Stripe-Should-Retry header, None to leave it out
    remaining: int


@dataclass
class FakeStripe:
    url: str = ""
    secret_key: str = SECRET_KEY
    requests: list[Recorded] = field(default_factory=list)
    # What GET /v1/subscriptions lists, in Stripe's order (newest first): subscription objects.
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    _failures: list[_Failure] = field(default_factory=list)
    _replays: dict[tuple[str, str], tuple[dict[str, str], int, bytes]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, status: int, *, times: int = 1, retry: bool | None = False) -> None:
        """Answer the next ``times`` requests with a Stripe error of this status."""
        with self._lock:
            self._failures.append(_Failure(status, retry, times))

    def posts(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and r.path == path]

    def gets(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == "GET" and r.path == path]

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        query = ""
        if method == "GET":
            # Stripe's GET parameters travel in the query string, form-encoded like a body.
            split = urlsplit(path)
            path, query = split.path, split.query
            form = dict(parse_qsl(query, keep_blank_values=True))
        record = Recorded(method, path, form, headers, query)
        with self._lock:
            self.requests.append(record)
            failure = next((f for f in self._failures if f.remaining > 0), None)
            if failure is not None:
                failure.remaining -= 1
        if headers.get("authorization") != f"Bearer {self.secret_key}":
            return _error(401, "invalid_request_error", "Invalid API Key provided: sk_****")
        if failure is not None:
            extra = {}
            if failure.retry is not None:
                extra["Stripe-Should-Retry"] = "true" if failure.retry else "false"
            kind = "api_error" if failure.status >= 500 else "invalid_request_error"
            status, out_headers, out = _error(failure.status, kind, "Fake Stripe was told to fail.")
            return status, out_headers | extra, out
        replay_key = (headers.get("authorization", ""), headers.get("idempotency-key", ""))
        if replay_key[1] and replay_key in self._replays:
            sent_form, status, out = self._replays[replay_key]
            if sent_form != form:
                return _error(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters "
                    "they were first used with.",
                )
            return status, {"Idempotent-Replayed": "true"}, out
        if method == "POST" and path == "/v1/checkout/sessions":
            answer = checkout_session(form)
        elif method == "POST" and path == "/v1/billing_portal/sessions":
            answer = portal_session(form)
        elif method == "GET" and path == "/v1/subscriptions":
            with self._lock:
                listed = list(self.subscriptions)
            found = subscription_list(listed, form)
            if isinstance(found, tuple):
                return found
            answer = found
        else:
            return _error(404, "invalid_request_error", f"Unrecognized request URL ({path}).")
        out = json.dumps(answer).encode()
        if replay_key[1]:
            self._replays[replay_key] = (form, 200, out)
        return 200, {}, out


def checkout_session(form: dict[str, str]) -> dict[str, Any]:
    session: dict[str, Any] = json.loads((FIXTURES / "checkout.session.json").read_text())
    session_id = "cs_test_" + secrets.token_hex(24)
    now = int(time.time())
    metadata = Recorded("", "", form, {}).nested("metadata")
    session |= {
        "id": session_id,
        "url": f"https://checkout.stripe.com/c/pay/{session_id}",
        "mode": form.get("mode", "payment"),
        "metadata": metadata,
        "client_reference_id": form.get("client_reference_id"),
        "customer": form.get("customer"),
        "customer_email": form.get("customer_email"),
        "success_url": form.get("success_url"),
        "cancel_url": form.get("cancel_url"),
        "created": now,
        "expires_at": now + 24 * 3600,
        "status": "open",
        "payment_status": "unpaid",
    }
    if session["mode"] == "subscription":
        session["payment_intent"] = None  # Checkout makes the subscription's invoice later
    return session


def subscription_list(
    subscriptions: list[dict[str, Any]], form: dict[str, str]
) -> dict[str, Any] | tuple[int, dict[str, str], bytes]:
    """One page of ``subscriptions`` as Stripe lists them: ``status`` (default: all but
    canceled; ``all``; ``ended``; or one status), ``limit`` (1 to 100, default 10) and the cursor
    ``starting_after`` (an id on an earlier page)."""
    status = form.get("status")
    if status is None:
        chosen = [s for s in subscriptions if s.get("status") != "canceled"]
    elif status == "all":
        chosen = list(subscriptions)
    elif status == "ended":
        chosen = [s for s in subscriptions if s.get("status") in ("canceled", "incomplete_expired")]
    else:
        chosen = [s for s in subscriptions if s.get("status") == status]
    raw_limit = form.get("limit", "10")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
        return _error(400, "invalid_request_error", "Invalid integer: limit must be 1 to 100.")
    limit = int(raw_limit)
    after = form.get("starting_after")
    if after is not None:
        ids = [s.get("id") for s in chosen]
        if after not in ids:
            return _error(400, "invalid_request_error", f"No such subscription: '{after}'")
        chosen = chosen[ids.index(after) + 1 :]
    return {
        "object": "list",
        "data": chosen[:limit],
        "has_more": len(chosen) > limit,
        "url": "/v1/subscriptions",
    }


def portal_session(form: dict[str, str]) -> dict[str, Any]:
    return {
        "id": "bps_" + secrets.token_hex(12),
        "object": "billing_portal.session",
        "customer": form.get("customer"),
        "url": "https://billing.stripe.com/p/session/test_" + secrets.token_urlsafe(24),
        "return_url": form.get("return_url"),
        "created": int(time.time()),
        "livemode": False,
    }


def _error(status: int, kind: str, message: str) -> tuple[int, dict[str, str], bytes]:
    body = {"error": {"type": kind, "message": message}}
    return status, {}, json.dumps(body).encode()


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_POST(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, extra, out = self.server.fake.handle(self.command, self.path, headers, body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.send_header("Request-Id", "req_" + secrets.token_hex(7))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the recorded requests say what happened


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeStripe) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


@contextmanager
def running_fake_stripe() -> Iterator[FakeStripe]:
    fake = FakeStripe()
    server = _Server(fake)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-stripe", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
