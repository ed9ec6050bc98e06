"""A web3.py provider over several JSON-RPC endpoints of one EVM network, with failover.

x402's EVM signer reads, simulates and sends through one synchronous ``Web3`` built on one
URL. web3.py has no failover provider (its ``AutoProvider`` only picks the first node that
answers, once), so this one (hand-written, small) sends each request through KAMIYO's endpoint
pool (``kamiyo.outbound``): round robin, a per-endpoint rate limit, a failing endpoint stepped
around for a cooldown and probed with ``eth_blockNumber`` before it is used again, and
endpoint labels (``host[:port]``) in logs and metrics, never URLs, which carry API keys.

The pool is asynchronous and the signer is not (x402 runs it in worker threads), so the pool
lives on an event loop of its own, in a daemon thread; a request blocks only the thread that
made it. What blames the node (connection failure, timeout, HTTP status other than 200, an
answer that is not JSON-RPC, a rate-limit error) fails over; any other JSON-RPC error is the
request's own (a revert, nonce too low) and goes back to web3, which raises it.

Resending the same signed transaction elsewhere is harmless (same hash); a node that already
has it answers "already known", which is read as success.
"""

import asyncio
import functools
import logging
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar, cast

import httpx2
from eth_utils.crypto import keccak
from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

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

SEND_RAW = "eth_sendRawTransaction"
# JSON-RPC errors that blame the node, not the request: EIP-1474's "limit exceeded".
NODE_ERRORS = frozenset({-32005})
ALREADY_KNOWN = ("already known", "known transaction", "already imported")

PROBE = b'{"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber", "params": []}'

T = TypeVar("T")


class RpcUnreachableError(ConnectionError):
    """No endpoint answered ``method``; for a send, the transaction may or may not be out."""

    def __init__(self, method: str, reason: str) -> None:
        super().__init__(reason)
        self.method = method


class PooledProvider(JSONBaseProvider):
    """Synchronous web3 provider over every URL of one network (see the module's notes)."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        network: str,
        requests_per_second: float = 20.0,
        timeout_s: float = 30.0,
        attempts: int = 4,
        cooldown_s: float = 5.0,
    ) -> None:
        super().__init__()
        check_limits(
            requests_per_second=requests_per_second,
            timeout_s=timeout_s,
            attempts=attempts,
            cooldown_s=cooldown_s,
        )
        # ``timeout_s`` bounds a call, rate-limit waits included (web3's own HTTP timeout is
        # 30 s). With several endpoints one attempt gets at most half of it, so a hung endpoint
        # leaves time to fail over; a lone endpoint gets all of it, as there is nowhere to go.
        attempt_s = timeout_s / 2 if len(urls) > 1 else timeout_s
        endpoints = http_endpoints(urls, timeout_s=attempt_s, kind="RPC")
        self._pool = EndpointPool(
            endpoints,
            service=f"EVM RPC ({network})",
            requests_per_second=requests_per_second,
            timeout_s=timeout_s,
            attempts=attempts,
            cooldown_s=cooldown_s,
            probe=lambda client: _post(client, PROBE),
            on_failure=lambda label: RPC_ERRORS.labels(endpoint=label).inc(),
            logger=log,
        )
        # The loop's thread starts with the first request: a provider never used costs none.
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"evm-rpc {network}", daemon=True
        )
        self._starting = threading.Lock()
        self._closed = False
        self._sending = threading.local()

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The endpoints' labels (``host[:port]``), as used in logs and metrics."""
        return self._pool.endpoints

    def health(self) -> dict[str, bool]:
        """Probe the down endpoints whose cooldown has passed; every endpoint's state by label."""
        return self._run(self._pool.check_health())

    def last_sent(self) -> str | None:
        """The hash of the transaction this thread last sent (or tried to), if any."""
        sent: str | None = getattr(self._sending, "hash", None)
        return sent

    def forget_sent(self) -> None:
        self._sending.hash = None

    def outage(self) -> str | None:
        """Why the last request of this thread's call found no endpoint (None: none failed)."""
        reason: str | None = getattr(self._sending, "outage", None)
        return reason

    def note_outage(self, reason: str) -> None:
        """Another part of this call could not run for a reason outside the payment."""
        self._sending.outage = reason

    def begin_call(self) -> None:
        """Forget the previous call's outage and send: a verification or settlement starts."""
        self._sending.outage = None
        self._sending.hash = None

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        # web3's encoder turns bytes and HexBytes into the 0x-hex nodes expect.
        request = functools.partial(_post, content=self.encode_rpc_request(method, params))
        raw = _raw_transaction(params[0]) if method == SEND_RAW else b""
        if method == SEND_RAW:
            self._sending.hash = _hash(raw)
        try:
            answer = self._run(self._pool.run(request, what=method))
        except (PoolUnavailableError, PoolTimeoutError) as exc:
            self._sending.outage = str(exc)
            raise RpcUnreachableError(method, str(exc)) from None
        if method == SEND_RAW and _already_known(answer):
            # This node has the transaction already (an earlier attempt reached some node).
            known = {"jsonrpc": "2.0", "id": answer.get("id"), "result": _hash(raw)}
            return cast(RPCResponse, known)
        return cast(RPCResponse, answer)

    def is_connected(self, show_traceback: bool = False) -> bool:
        try:
            answer = self.make_request(RPCEndpoint("eth_chainId"), [])
        except RpcUnreachableError:
            if show_traceback:
                raise
            return False
        return "result" in answer

    def close(self) -> None:
        with self._starting:
            if self._closed:
                return
            self._closed = True
            started = self._thread.is_alive()
        if started:
            asyncio.run_coroutine_threadsafe(self._pool.aclose(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        else:
            self._loop.run_until_complete(self._pool.aclose())
        self._loop.close()

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        with self._starting:
            if self._closed:
                work.close()
                raise RpcUnreachableError("", "the EVM RPC provider is closed")
            if not self._thread.is_alive():
                self._thread.start()
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()


def _raw_transaction(param: Any) -> bytes:
    """The signed transaction web3 passes on (0x-hex by then; bytes accepted too)."""
    if isinstance(param, bytes | bytearray):
        return bytes(param)
    return bytes.fromhex(str(param).removeprefix("0x"))


def _hash(raw: bytes) -> str:
    return "0x" + keccak(raw).hex()


def _already_known(answer: dict[str, Any]) -> bool:
    error = answer.get("error")
    message = str(error.get("message", "")) if isinstance(error, dict) else ""
    return any(words in message.lower() for words in ALREADY_KNOWN)


async def _post(client: httpx2.AsyncClient, content: bytes) -> dict[str, Any]:
    try:
        response = await client.post(
            "", content=content, headers={"Content-Type": "application/json"}
        )
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
    code = error.get("code") if isinstance(error, dict) else None
    if error is not None and (not isinstance(code, int) or code in NODE_ERRORS):
        raise EndpointError(f"JSON-RPC error {code}")
    return answer
