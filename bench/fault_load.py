"""A steady load of authenticated ``search_exploits`` calls, every answer recorded and sorted.

Workers alternate MCP (a JSON-RPC ``tools/call`` over stateless Streamable HTTP) and REST
(``GET /api/v1/exploits``), instances (the client is the load balancer: round robin, and an
instance that refuses connections is still tried, as a proxy without health checks would) and
API keys. Each call asks something new (a counter in ``min_loss_usd``) so the answer cache
cannot answer in the database's place.

An answer is sorted into one kind: ``ok``; a clear error (``mcp <code>`` from a tool result's
``structuredContent.error``, ``http <status> <code>`` from the REST envelope ``{"error":
{"code", "message"}}`` or OAuth's ``{"error", "error_description"}`` (the MCP endpoint's
bearer guard), ``jsonrpc <code>``); ``connection <exception>`` when nothing answered;
or ``unclear ...`` for anything else (a plain 500, a body that is not the envelope); each kind
is prefixed with the transport (``mcp: ``, ``rest: ``). Any body
holding traceback text is counted apart: the standard is none.
"""

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2

MCP_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-11-25",
}
CALL_TIMEOUT_S = 15.0
TRACEBACK_MARKS = ("Traceback (most recent call last)", 'File "/')


@dataclass(frozen=True)
class Answer:
    started: float  # monotonic
    ended: float  # wall clock (time.time()), to compare with the database's timestamps
    instance: str
    transport: str  # mcp | rest
    kind: str
    message: str
    traceback: bool

    @property
    def ok(self) -> bool:
        return self.kind.endswith(": ok")


def _has_traceback(text: str) -> bool:
    return any(mark in text for mark in TRACEBACK_MARKS)


def sort_mcp(response: httpx2.Response) -> tuple[str, str]:
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        return f"unclear http {response.status_code}", response.text[:120]
    if response.status_code != 200 or "error" in body:
        return _sort_envelope(response.status_code, body, prefix="jsonrpc")
    result = body.get("result", {})
    if not result.get("isError"):
        return "ok", ""
    error = result.get("structuredContent", {}).get("error")
    text = " ".join(part.get("text", "") for part in result.get("content", []))
    if isinstance(error, str) and text:
        return f"mcp {error}", text[:160]
    return "unclear mcp isError", text[:160]


def sort_rest(response: httpx2.Response) -> tuple[str, str]:
    if response.status_code == 200:
        return "ok", ""
    try:
        body = response.json()
    except ValueError:
        return f"unclear http {response.status_code}", response.text[:120]
    return _sort_envelope(response.status_code, body, prefix="http")


def _sort_envelope(status: int, body: Any, prefix: str) -> tuple[str, str]:
    error = body.get("error") if isinstance(body, dict) else None
    problem = body.get("problem") if isinstance(body, dict) else None
    if isinstance(error, str) and isinstance(problem, dict) and problem.get("message"):
        # A 402: x402's PaymentRequired (its ``error`` a reason code) with the envelope beside.
        return f"http {status} {error}", str(problem["message"])[:160]
    if isinstance(error, str) and body.get("error_description"):
        # OAuth's error body (RFC 6750), what the MCP endpoint's bearer guard answers.
        return f"http {status} {error}", str(body["error_description"])[:160]
    if isinstance(error, dict) and error.get("message"):
        code = error.get("code")
        label = f"{prefix} {status} {code}" if prefix == "http" else f"{prefix} {code}"
        return label, str(error["message"])[:160]
    return f"unclear http {status}", str(body)[:120]


@dataclass
class Load:
    """``rate`` calls a second over ``urls`` (name -> base URL) with ``keys``."""

    urls: dict[str, str]
    keys: Sequence[str]
    rate: float = 20.0
    workers: int = 8
    answers: list[Answer] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _distinct: "itertools.count[int]" = field(default_factory=lambda: itertools.count(1))

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        limits = httpx2.Limits(max_connections=self.workers * 2)
        async with httpx2.AsyncClient(timeout=CALL_TIMEOUT_S, limits=limits) as client:
            await asyncio.gather(*(self._worker(client, n) for n in range(self.workers)))

    async def _worker(self, client: httpx2.AsyncClient, n: int) -> None:
        names = list(self.urls)
        interval = self.workers / self.rate
        for step in itertools.count(n):
            if self._stop.is_set():
                return
            began = time.monotonic()
            name = names[step % len(names)]
            transport = "mcp" if (step // len(names)) % 2 == 0 else "rest"
            key = self.keys[step % len(self.keys)]
            self.answers.append(await self.call(client, name, transport, key))
            # Paced, not a closed loop: a fault that slows answers does not slow the offered load
            # much below the rate, and a fast answer does not raise it.
            pause = interval - (time.monotonic() - began)
            if pause > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), pause)

    async def call(self, client: httpx2.AsyncClient, name: str, transport: str, key: str) -> Answer:
        url = self.urls[name]
        began = time.monotonic()
        loss = next(self._distinct)
        auth = {"Authorization": f"Bearer {key}"}
        try:
            if transport == "mcp":
                response = await client.post(
                    f"{url}/mcp",
                    json={
                        "jsonrpc": "2.0",
                        "id": loss,
                        "method": "tools/call",
                        "params": {
                            "name": "search_exploits",
                            "arguments": {"query": "euler", "min_loss_usd": loss},
                        },
                    },
                    headers=MCP_HEADERS | auth,
                )
                kind, message = sort_mcp(response)
            else:
                response = await client.get(
                    f"{url}/api/v1/exploits",
                    params={"query": "euler", "min_loss_usd": loss},
                    headers=auth,
                )
                kind, message = sort_rest(response)
        except httpx2.HTTPError as exc:
            kind, message = f"connection {type(exc).__name__}", str(exc)[:160]
            return Answer(
                began, time.time(), name, transport, f"{transport}: {kind}", message, False
            )
        traceback = _has_traceback(response.text)
        return Answer(
            began, time.time(), name, transport, f"{transport}: {kind}", message, traceback
        )


def kinds(answers: Sequence[Answer]) -> Counter[str]:
    return Counter(answer.kind for answer in answers)


def examples(answers: Sequence[Answer]) -> dict[str, str]:
    """One message per kind of error, as callers read it."""
    found: dict[str, str] = {}
    for answer in answers:
        if not answer.ok and answer.kind not in found:
            found[answer.kind] = answer.message
    return found


def recovery_s(answers: Sequence[Answer], back: float, instance: str | None = None) -> float | None:
    """Seconds from ``back`` (the service answering again) to the first ok call after the last
    failed one; 0 when none failed after it, None when calls still failed at the end."""
    mine = [a for a in answers if instance is None or a.instance == instance]
    later = sorted((a for a in mine if a.started >= back), key=lambda a: a.started)
    failed = [a for a in later if not a.ok]
    if not failed:
        return 0.0
    last = failed[-1].started
    good = [a.started for a in later if a.ok and a.started > last]
    return max(0.0, good[0] - back) if good else None
