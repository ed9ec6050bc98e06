"""A pool of Solana JSON-RPC endpoints: failover, per-endpoint rate limits, batched status reads.

Solana payments are verified by reading transactions from RPC nodes. The x402 package's signers
take one URL and have no failover, so one provider's outage or rate limit would stop payments.
This pool spreads reads over several endpoints, steps around failing ones for a cooldown, and
coalesces the status polls of concurrent verifications into one ``getSignatureStatuses`` call.

Provider URLs carry API keys (query string, path or userinfo): endpoints appear in logs, errors
and metrics only as ``host[:port]``.
"""

import asyncio
import itertools
import logging
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Self

import httpx2
from solders.signature import Signature

from kamiyo.payments.metrics import RPC_ERRORS

log = logging.getLogger(__name__)

MAX_BATCH = 256  # the most signatures getSignatureStatuses accepts
# JSON-RPC errors that blame the node rather than the request (unhealthy; behind minContextSlot).
NODE_ERRORS = frozenset({-32005, -32016})
BACKOFF_S = 0.1
BACKOFF_CAP_S = 1.0
TRANSACTION_CONFIG = {
    "encoding": "jsonParsed",
    "commitment": "confirmed",
    "maxSupportedTransactionVersion": 0,
}

Status = dict[str, Any]


async def pause(seconds: float) -> None:
    """Backoff and rate-limit waits (one name, so tests can see what was waited for)."""
    await asyncio.sleep(seconds)


class SolanaRpcError(Exception):
    """Base of the errors this pool raises."""


class RpcRequestError(SolanaRpcError):
    """The node refused the request itself (bad params, unknown method): retrying cannot help."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"JSON-RPC error {code}: {message}")
        self.code = code
        self.message = message


class RpcUnavailableError(SolanaRpcError):
    """Every attempt failed on the endpoints' side."""


class RpcTimeoutError(SolanaRpcError):
    """The call's deadline passed (retries and rate-limit waits included)."""


class _EndpointError(Exception):
    """An attempt failed because of the endpoint; ``reason`` never contains the URL."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _HiddenUrlTransport(httpx2.AsyncBaseTransport):
    """Sends to the endpoint's full URL while the client, which logs requests at INFO, sees
    only its origin: the API key stays out of httpx2's log."""

    def __init__(self, url: httpx2.URL) -> None:
        self._url = url
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        real = httpx2.Request(
            request.method,
            self._url,
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return await self._inner.handle_async_request(real)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass(eq=False)
class _Endpoint:
    label: str
    client: httpx2.AsyncClient
    next_slot: float = 0.0  # monotonic time of the next request the rate limit allows
    down_until: float | None = None  # None while healthy


def _parse(url: str) -> httpx2.URL:
    try:
        parsed = httpx2.URL(url)
    except httpx2.InvalidURL:
        raise ValueError("an RPC URL does not parse") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"RPC URLs must be http(s) with a host, not {parsed.scheme or '?'}:")
    return parsed


class SolanaRpc:
    """Async JSON-RPC over several endpoints of one network.

    ``timeout_s`` bounds a whole call, retries and rate-limit waits included; one HTTP attempt
    gets at most half of it, so a hung endpoint leaves time to fail over. A failing endpoint is
    skipped for ``cooldown_s``, then probed with ``getHealth``. When every endpoint is down the
    pool still tries them (longest-cooled first) rather than refuse outright.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        requests_per_second: float = 20.0,
        timeout_s: float = 5.0,
        attempts: int = 4,
        cooldown_s: float = 5.0,
        batch_window_s: float = 0.02,
    ) -> None:
        if isinstance(urls, str) or not urls:
            raise ValueError("at least one RPC URL is required")
        if (
            min(requests_per_second, timeout_s, attempts) <= 0
            or min(cooldown_s, batch_window_s) < 0
        ):
            raise ValueError("rates, timeouts and attempts must be positive, delays not negative")
        parsed = [_parse(url) for url in urls]
        self._spacing_s = 1.0 / requests_per_second
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._cooldown_s = cooldown_s
        self._window_s = batch_window_s
        self._endpoints: list[_Endpoint] = []
        for url in parsed:
            label = url.netloc.decode("ascii")
            taken = sum(1 for e in self._endpoints if e.label.split("#")[0] == label)
            auth = (url.username, url.password) if url.username else None
            client = httpx2.AsyncClient(
                base_url=url.copy_with(userinfo=b"", path="/", query=None, fragment=None),
                transport=_HiddenUrlTransport(url.copy_with(userinfo=b"", fragment=None)),
                auth=auth,
                timeout=timeout_s / 2,
            )
            self._endpoints.append(_Endpoint(f"{label}#{taken + 1}" if taken else label, client))
        self._turn = 0
        self._ids = itertools.count(1)
        self._queue: list[tuple[str, asyncio.Future[Status | None]]] = []
        self._timer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The endpoints' labels (``host[:port]``), as used in logs, errors and metrics."""
        return tuple(e.label for e in self._endpoints)

    async def call(self, method: str, params: list[Any]) -> Any:
        """``method(params)`` on some healthy endpoint; returns the answer's ``result``."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._call(method, params)
        except TimeoutError:
            raise RpcTimeoutError(f"{method} took longer than {self._timeout_s:g} s") from None

    async def get_transaction(self, signature: str) -> dict[str, Any] | None:
        """The confirmed transaction in ``jsonParsed`` encoding, or None if not found."""
        result = await self.call("getTransaction", [signature, dict(TRANSACTION_CONFIG)])
        if result is None or isinstance(result, dict):
            return result
        raise RpcUnavailableError("getTransaction answered with neither an object nor null")

    async def signature_status(self, signature: str) -> Status | None:
        """The signature's status (``confirmationStatus``, ``err``, …), or None if unknown.

        Calls within ``batch_window_s`` of each other share one ``getSignatureStatuses``.
        """
        try:
            Signature.from_string(signature)
        except ValueError:
            # Checked here: one malformed signature would fail the whole batch at the node.
            raise RpcRequestError(-32602, "Invalid param: not a signature") from None
        future: asyncio.Future[Status | None] = asyncio.get_running_loop().create_future()
        self._queue.append((signature, future))
        if len(self._queue) >= MAX_BATCH:
            batch, self._queue = self._queue, []
            self._spawn(self._flush(batch))
        elif self._timer is None:
            self._timer = self._spawn(self._flush_after_window())
        return await future

    async def check_health(self) -> dict[str, bool]:
        """Probe the down endpoints whose cooldown has passed; every endpoint's state by label."""
        await asyncio.gather(*(self._probe(e) for e in self._take_due()))
        return {e.label: e.down_until is None for e in self._endpoints}

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._timer = None
        for _, future in self._queue:
            if not future.done():
                future.set_exception(RpcUnavailableError("the Solana RPC pool was closed"))
        self._queue = []
        await asyncio.gather(*(e.client.aclose() for e in self._endpoints))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _call(self, method: str, params: list[Any]) -> Any:
        tried: dict[str, None] = {}
        reason = ""
        for attempt in range(self._attempts):
            if attempt:
                await pause(min(BACKOFF_S * 2 ** (attempt - 1), BACKOFF_CAP_S))
            endpoint = self._pick()
            try:
                result = await self._send(endpoint, method, params)
            except _EndpointError as failure:
                self._mark_down(endpoint, failure.reason)
                tried[endpoint.label] = None
                reason = failure.reason
                continue
            except RpcRequestError:
                self._mark_up(endpoint)  # it answered: the fault is the request's
                raise
            self._mark_up(endpoint)
            return result
        raise RpcUnavailableError(
            f"{method} failed on every Solana RPC endpoint tried ({', '.join(tried)}); "
            f"last error: {reason}"
        )

    def _pick(self) -> _Endpoint:
        """Round robin over healthy endpoints; probes ones due a retry in the background."""
        for endpoint in self._take_due():
            self._spawn(self._probe(endpoint))
        healthy = [e for e in self._endpoints if e.down_until is None]
        if not healthy:
            return min(self._endpoints, key=lambda e: e.down_until or 0.0)
        self._turn += 1
        return healthy[(self._turn - 1) % len(healthy)]

    async def _send(self, endpoint: _Endpoint, method: str, params: list[Any]) -> Any:
        # Rate limit as minimum spacing: reserve the next slot now, so concurrent callers queue.
        now = time.monotonic()
        slot = max(now, endpoint.next_slot)
        endpoint.next_slot = slot + self._spacing_s
        if slot > now:
            await pause(slot - now)
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        try:
            response = await endpoint.client.post("", json=body)
            answer = response.json() if response.status_code == 200 else None
        except httpx2.HTTPError as exc:  # connection errors and timeouts
            raise _EndpointError(type(exc).__name__) from None
        except ValueError:
            raise _EndpointError("answer is not JSON") from None
        if response.status_code != 200:
            raise _EndpointError(f"HTTP {response.status_code}")
        if not isinstance(answer, dict) or ("result" not in answer and "error" not in answer):
            raise _EndpointError("answer is not a JSON-RPC response")
        error = answer.get("error")
        if error is None:
            return answer.get("result")
        code = error.get("code") if isinstance(error, dict) else None
        message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
        if not isinstance(code, int) or code in NODE_ERRORS:
            raise _EndpointError(f"JSON-RPC error {code}: {message}")
        raise RpcRequestError(code, message)

    def _take_due(self) -> list[_Endpoint]:
        """Down endpoints past their cooldown, pushed back one more so only one probe runs."""
        now = time.monotonic()
        due = [e for e in self._endpoints if e.down_until is not None and e.down_until <= now]
        for endpoint in due:
            endpoint.down_until = now + self._cooldown_s
        return due

    async def _probe(self, endpoint: _Endpoint) -> None:
        try:
            await self._send(endpoint, "getHealth", [])
        except _EndpointError as failure:
            self._mark_down(endpoint, failure.reason)
            return
        except RpcRequestError:
            pass  # it serves JSON-RPC, though not getHealth
        self._mark_up(endpoint)

    def _mark_down(self, endpoint: _Endpoint, reason: str) -> None:
        RPC_ERRORS.labels(endpoint=endpoint.label).inc()
        if endpoint.down_until is None:
            log.warning("Solana RPC endpoint %s is down (%s)", endpoint.label, reason)
        endpoint.down_until = time.monotonic() + self._cooldown_s

    def _mark_up(self, endpoint: _Endpoint) -> None:
        if endpoint.down_until is not None:
            endpoint.down_until = None
            log.info("Solana RPC endpoint %s is back", endpoint.label)

    async def _flush_after_window(self) -> None:
        await asyncio.sleep(self._window_s)
        self._timer = None
        batch, self._queue = self._queue, []
        await self._flush(batch)

    async def _flush(self, batch: list[tuple[str, asyncio.Future[Status | None]]]) -> None:
        if not batch:
            return
        signatures = list(dict.fromkeys(signature for signature, _ in batch))
        error: Exception = RpcUnavailableError("the Solana RPC pool was closed")
        try:
            config = {"searchTransactionHistory": True}
            answer = await self.call("getSignatureStatuses", [signatures, config])
            values = answer.get("value") if isinstance(answer, dict) else None
            if not isinstance(values, list) or len(values) != len(signatures):
                raise RpcUnavailableError("getSignatureStatuses answered in an unexpected shape")
            statuses = dict(zip(signatures, values, strict=True))
            for signature, future in batch:
                if not future.done():
                    future.set_result(statuses[signature])
        except Exception as exc:
            error = exc
        finally:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
