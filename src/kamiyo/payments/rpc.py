"""A pool of Solana JSON-RPC endpoints: failover, per-endpoint rate limits, batched status reads.

Solana payments are verified by reading transactions from RPC nodes. The x402 package's signers
take one URL and have no failover, so one provider's outage or rate limit would stop payments.
This pool spreads reads over several endpoints, steps around failing ones for a cooldown, and
coalesces the status polls of concurrent verifications into one ``getSignatureStatuses`` call.

Round robin, rate limits, failover, cooldown and probes, and keeping provider secrets out of
logs are the generic endpoint pool's (``kamiyo.outbound``); this module adds what is Solana's:
JSON-RPC framing, which errors blame the node, ``getHealth`` as the probe, and the batching.
"""

import asyncio
import itertools
import logging
from collections.abc import Coroutine, Sequence
from typing import Any, Self

import httpx2

from kamiyo.outbound import (
    EndpointError,
    EndpointPool,
    PoolTimeoutError,
    PoolUnavailableError,
    check_limits,
    http_endpoints,
    http_failure,
)
from kamiyo.payments.metrics import RPC_ERRORS

log = logging.getLogger(__name__)

MAX_BATCH = 256  # the most signatures getSignatureStatuses accepts
# JSON-RPC errors that blame the node rather than the request (unhealthy; behind minContextSlot).
NODE_ERRORS = frozenset({-32005, -32016})
TRANSACTION_CONFIG = {
    "encoding": "jsonParsed",
    "commitment": "confirmed",
    "maxSupportedTransactionVersion": 0,
}

Status = dict[str, Any]


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
        check_limits(
            requests_per_second=requests_per_second,
            timeout_s=timeout_s,
            attempts=attempts,
            cooldown_s=min(cooldown_s, batch_window_s),
        )
        endpoints = http_endpoints(urls, timeout_s=timeout_s / 2, kind="RPC")
        self._ids = itertools.count(1)
        self._pool = EndpointPool(
            endpoints,
            service="Solana RPC",
            requests_per_second=requests_per_second,
            timeout_s=timeout_s,
            attempts=attempts,
            cooldown_s=cooldown_s,
            probe=lambda client: self._send(client, "getHealth", []),
            on_failure=lambda label: RPC_ERRORS.labels(endpoint=label).inc(),
            logger=log,
        )
        self._window_s = batch_window_s
        self._queue: list[tuple[str, asyncio.Future[Status | None]]] = []
        self._timer: asyncio.Task[None] | None = None

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The endpoints' labels (``host[:port]``), as used in logs, errors and metrics."""
        return self._pool.endpoints

    async def call(self, method: str, params: list[Any]) -> Any:
        """``method(params)`` on some healthy endpoint; returns the answer's ``result``."""
        try:
            return await self._pool.run(
                lambda client: self._send(client, method, params), what=method
            )
        except PoolTimeoutError as exc:
            raise RpcTimeoutError(str(exc)) from None
        except PoolUnavailableError as exc:
            raise RpcUnavailableError(str(exc)) from None

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
        from solders.signature import Signature  # here: a server that takes no transfer

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
        return await self._pool.check_health()

    async def aclose(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            await asyncio.gather(timer, return_exceptions=True)
        for _, future in self._queue:
            if not future.done():
                future.set_exception(RpcUnavailableError("the Solana RPC pool was closed"))
        self._queue = []
        await self._pool.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _send(self, client: httpx2.AsyncClient, method: str, params: list[Any]) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        try:
            response = await client.post("", json=body)
            answer = response.json() if response.status_code == 200 else None
        except httpx2.HTTPError as exc:  # connection errors and timeouts
            raise EndpointError(http_failure(exc)) from None
        except ValueError:
            raise EndpointError("answer is not JSON") from None
        if response.status_code != 200:
            raise EndpointError(f"HTTP {response.status_code}")
        if not isinstance(answer, dict) or ("result" not in answer and "error" not in answer):
            raise EndpointError("answer is not a JSON-RPC response")
        error = answer.get("error")
        if error is None:
            return answer.get("result")
        code = error.get("code") if isinstance(error, dict) else None
        message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
        if not isinstance(code, int) or code in NODE_ERRORS:
            raise EndpointError(f"JSON-RPC error {code}: {message}")
        raise RpcRequestError(code, message)

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
        return self._pool.spawn(work)
