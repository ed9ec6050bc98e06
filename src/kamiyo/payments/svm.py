"""The exact scheme on Solana: x402's mechanism, plus the spec's checks it leaves out, and a
fee-payer signer that reads and sends through our endpoint pool.

x402 (2.25) checks the instruction layout, the compute price cap, the mint, that the
destination is payTo's token account, the amount (at least) and memo rules, then simulates.
``scheme_exact_svm.md`` also asks that the fee payer appear in no instruction (else a payer
could make our fee payer's account part of its own transaction) and that the amount be exact;
and x402's confirmation counts a transaction that landed but failed as settled. Those three are
added here.

x402's signer takes one RPC URL. :class:`PooledKeypairSigner` sends every read and the send
through :class:`~kamiyo.payments.rpc.SolanaRpc` (failover, cooldown, health probes), polls
confirmations through its coalesced ``getSignatureStatuses``, and remembers payments it has
simulated (:class:`VerifiedPayments`) so a retry, and the verify x402 runs again at the start of
every settle, cost no second simulation.
"""

import base64
import binascii
import hashlib
import logging
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.from_thread
from anyio.lowlevel import EventLoopToken
from cachetools import TTLCache
from solana.rpc.api import Client as SolanaClient
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from solders.transaction_status import TransactionConfirmationStatus
from x402.mechanisms.svm import FacilitatorKeypairSigner
from x402.mechanisms.svm.constants import TOKEN_2022_PROGRAM_ADDRESS, TOKEN_PROGRAM_ADDRESS
from x402.mechanisms.svm.exact import ExactSvmFacilitatorScheme
from x402.schemas import PaymentPayload, PaymentRequirements, SettleResponse, VerifyResponse

from kamiyo.payments.rpc import (
    RpcRequestError,
    RpcTimeoutError,
    RpcUnavailableError,
    SolanaRpc,
)
from kamiyo.payments.settlements import SETTLEMENT_UNKNOWN

log = logging.getLogger(__name__)
T = TypeVar("T")

FEE_PAYER_IN_INSTRUCTION = "invalid_exact_svm_fee_payer_in_instruction"
AMOUNT_NOT_EXACT = "invalid_exact_svm_payload_amount_not_exact"
UNDECODABLE = "invalid_exact_svm_payload_transaction_could_not_be_decoded"
VERIFICATION_UNAVAILABLE = "verification_unavailable"  # as the cashier says it of an outage
TRANSFER_CHECKED = 12  # the SPL Token instruction tag
TOKEN_PROGRAMS = {
    Pubkey.from_string(TOKEN_PROGRAM_ADDRESS),
    Pubkey.from_string(TOKEN_2022_PROGRAM_ADDRESS),
}
CONFIRMED = (TransactionConfirmationStatus.Confirmed, TransactionConfirmationStatus.Finalized)


def spec_problem(payload: PaymentPayload, requirements: PaymentRequirements) -> str | None:
    """The reason this payment breaks a rule of the spec that x402 does not check, or None."""
    try:
        raw = base64.b64decode(str(payload.payload.get("transaction", "")), validate=True)
        message = VersionedTransaction.from_bytes(raw).message
    except (binascii.Error, ValueError):
        return UNDECODABLE
    keys = list(message.account_keys)
    fee_payer = str((requirements.extra or {}).get("feePayer", ""))
    for instruction in message.instructions:
        touched = [instruction.program_id_index, *bytes(instruction.accounts)]
        if any(index < len(keys) and str(keys[index]) == fee_payer for index in touched):
            return FEE_PAYER_IN_INSTRUCTION
        data = bytes(instruction.data)
        program = (
            keys[instruction.program_id_index] if instruction.program_id_index < len(keys) else None
        )
        if program in TOKEN_PROGRAMS and data[:1] == bytes([TRANSFER_CHECKED]) and len(data) >= 9:
            (amount,) = struct.unpack_from("<Q", data, 1)
            if amount != int(requirements.amount):
                return AMOUNT_NOT_EXACT
    return None


class CheckedExactSvm(ExactSvmFacilitatorScheme):
    def verify(
        self, payload: PaymentPayload, requirements: PaymentRequirements, context: Any = None
    ) -> VerifyResponse:
        problem = spec_problem(payload, requirements)
        if problem is not None:
            return VerifyResponse(is_valid=False, invalid_reason=problem)
        signer = self._signer
        pooled = signer if isinstance(signer, PooledKeypairSigner) else None
        if pooled is not None:
            pooled.take_outage()
        verdict = super().verify(payload, requirements, context)
        outage = pooled.take_outage() if pooled is not None else None
        if outage is not None and not verdict.is_valid:
            # x402 reports any simulation error as the payment's fault; an RPC outage is not.
            return VerifyResponse(
                is_valid=False,
                invalid_reason=VERIFICATION_UNAVAILABLE,
                invalid_message=outage,
                payer=verdict.payer,
            )
        return verdict

    def settle(
        self, payload: PaymentPayload, requirements: PaymentRequirements, context: Any = None
    ) -> SettleResponse:
        problem = spec_problem(payload, requirements)
        if problem is not None:
            return SettleResponse(
                success=False, error_reason=problem, transaction="", network=requirements.network
            )
        signer = self._signer
        pooled = signer if isinstance(signer, PooledKeypairSigner) else None
        if pooled is not None:
            pooled.take_unanswered()
        result = super().settle(payload, requirements, context)
        unanswered = pooled.take_unanswered() if pooled is not None else None
        if not result.success and unanswered is not None:
            # x402 reads a send without an answer as a failed one; it may land (settlements.py).
            return SettleResponse(
                success=False,
                error_reason=SETTLEMENT_UNKNOWN,
                error_message=result.error_message,
                transaction=unanswered,
                network=requirements.network,
                payer=result.payer,
            )
        return result


class ConfirmingKeypairSigner(FacilitatorKeypairSigner):
    """x402's fee-payer signer on one URL, whose confirmation also fails on a failed transaction.

    The path before the pool: bench/x402_rpc.py measures against it (``--old``).
    """

    def confirm_transaction(self, signature: str, network: str, timeout_seconds: int = 30) -> None:
        client = self._get_client(network)
        deadline = time.monotonic() + timeout_seconds
        delay = 0.1
        while time.monotonic() < deadline:
            statuses = client.get_signature_statuses([Signature.from_string(signature)]).value
            status = statuses[0] if statuses else None
            if status is not None and status.err is not None:
                raise RuntimeError(f"Transaction failed: {status.err}")
            if status is not None and status.confirmation_status in CONFIRMED:
                return
            time.sleep(delay)  # in a worker thread: the event loop goes on meanwhile
            delay = min(delay * 2, 1.0)
        raise RuntimeError("Transaction confirmation timeout")


# A blockhash lives 150 blocks (60-90 s): a transaction verified longer ago cannot land anyway.
VERIFIED_TTL_S = 60.0
VERIFIED_MAX = 10_000
# Confirmation polls fall on a shared grid (one Solana slot apart, about), so the polls of every
# settlement in flight meet in one batching window and share one getSignatureStatuses.
POLL_GRID_S = 0.4
CONFIRMED_STATES = ("confirmed", "finalized")
SIMULATE_CONFIG = {"encoding": "base64", "sigVerify": True, "commitment": "confirmed"}
# Preflight on: the node simulates the transaction again in the send itself, so a payment spent
# since we verified it (balance moved, already processed) is refused there, at no extra request.
SEND_CONFIG = {"encoding": "base64", "skipPreflight": False, "preflightCommitment": "confirmed"}


class VerifiedPayments:
    """Fully signed payment transactions this instance simulated successfully, not yet sent.

    Bounded (``maxsize``, ``ttl_s``) and per instance. Never the last word: sending runs the
    node's preflight and confirmation reads the landed status, so a payment spent in the
    meantime fails at settlement, and the cashier hands over no answer that did not settle.
    Thread-safe: x402's facilitator runs in worker threads.
    """

    def __init__(self, maxsize: int = VERIFIED_MAX, ttl_s: float = VERIFIED_TTL_S) -> None:
        self._entries: TTLCache[str, bool] = TTLCache(maxsize, ttl=ttl_s)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(tx_base64: str, network: str) -> str:
        return hashlib.sha256(f"{network}\n{tx_base64}".encode()).hexdigest()

    def seen(self, key: str) -> bool:
        with self._lock:
            known = key in self._entries
            if known:
                self.hits += 1
            else:
                self.misses += 1
            return known

    def add(self, key: str) -> None:
        with self._lock:
            self._entries[key] = True

    def discard(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)


class _Outage(threading.local):
    """Per worker thread: x402 turns the signer's errors into "simulation failed" verdicts, so
    the one verifying learns here whether the chain could not be read at all."""

    reason: str | None = None
    unanswered: str | None = None  # the signature of a send that timed out (it may land)


class PooledKeypairSigner(FacilitatorKeypairSigner):
    """x402's fee-payer signer whose RPC goes through a :class:`SolanaRpc` pool.

    x402 calls it synchronously, in the worker threads ``LocalFacilitator`` runs the facilitator
    in; the pool is async and lives on the server's event loop (its connections, its endpoints'
    health and the status batching are shared by every call). Each RPC is handed to that loop
    with ``anyio.from_thread.run`` and the loop's token, taken by :meth:`connect` at start-up:
    the worker thread waits, the loop goes on, and concurrent confirmations meet in one batch.
    """

    def __init__(self, keypair: Keypair, verified: VerifiedPayments | None = None) -> None:
        super().__init__(keypair)
        self.verified = verified or VerifiedPayments()
        self._rpc: SolanaRpc | None = None
        self._token: EventLoopToken | None = None
        self._outage = _Outage()

    def take_outage(self) -> str | None:
        """Why this thread's last simulation could not run (an RPC outage), once; else None."""
        reason, self._outage.reason = self._outage.reason, None
        return reason

    def take_unanswered(self) -> str | None:
        """The signature this thread last sent without an answer, once; else None."""
        signature, self._outage.unanswered = self._outage.unanswered, None
        return signature

    def connect(self, rpc: SolanaRpc) -> None:
        """Use ``rpc``, on the running event loop (call from that loop)."""
        self._rpc = rpc
        self._token = anyio.lowlevel.current_token()

    async def disconnect(self) -> None:
        rpc, self._rpc, self._token = self._rpc, None, None
        if rpc is not None:
            await rpc.aclose()

    def _get_client(self, network: str) -> SolanaClient:
        raise RuntimeError("this signer reads through the endpoint pool, not one URL")

    def _run(self, work: Callable[[SolanaRpc], Awaitable[T]]) -> T:
        rpc, token = self._rpc, self._token
        if rpc is None or token is None:
            raise RuntimeError("the Solana signer was used before the facilitator started")

        async def on_loop() -> T:
            return await work(rpc)

        return anyio.from_thread.run(on_loop, token=token)

    def simulate_transaction(self, tx_base64: str, network: str) -> None:
        key = VerifiedPayments.key(tx_base64, network)
        if self.verified.seen(key):
            return
        params = [tx_base64, dict(SIMULATE_CONFIG)]
        try:
            result = self._run(lambda rpc: rpc.call("simulateTransaction", params))
        except (RpcUnavailableError, RpcTimeoutError) as exc:
            self._outage.reason = f"the Solana RPC cannot be read right now, retry: {exc}"
            raise
        value = result.get("value") if isinstance(result, dict) else None
        if not isinstance(value, dict):
            raise RuntimeError("Simulation failed: the node answered in an unexpected shape")
        if value.get("err") is not None:
            raise RuntimeError(f"Simulation failed: {value['err']}")
        self.verified.add(key)

    def send_transaction(self, tx_base64: str, network: str) -> str:
        # From here on only the chain may say this payment is good.
        self.verified.discard(VerifiedPayments.key(tx_base64, network))
        tx = VersionedTransaction.from_bytes(base64.b64decode(tx_base64))
        signature = str(tx.signatures[0])
        params = [tx_base64, dict(SEND_CONFIG)]
        try:
            sent = self._run(lambda rpc: rpc.call("sendTransaction", params))
        except RpcTimeoutError:
            # The node may have taken it and answered too late: the chain will tell.
            self._outage.unanswered = signature
            raise
        except RpcRequestError as exc:
            # A failover can deliver it twice: the first endpoint took it and its answer was
            # lost, the next one's preflight finds it processed. Its status tells (confirmation
            # then reads whether it failed); a refusal of a transaction that never landed stands.
            status = self._run(lambda rpc: rpc.signature_status(signature))
            if status is None:
                raise RuntimeError(f"Send failed: {exc.message}") from None
            return signature
        if sent != signature:
            raise RuntimeError("Send failed: the node answered with another signature")
        return signature

    def confirm_transaction(self, signature: str, network: str, timeout_seconds: int = 30) -> None:
        self._run(lambda rpc: confirm(rpc, signature, float(timeout_seconds)))


async def confirm(rpc: SolanaRpc, signature: str, timeout_s: float) -> None:
    """Wait until ``signature`` is confirmed; raise if it failed or the time runs out.

    Polls on a grid shared by every confirmation (``POLL_GRID_S``), so concurrent ones coalesce.
    """
    with anyio.move_on_after(timeout_s):
        while True:
            await anyio.sleep(POLL_GRID_S - time.monotonic() % POLL_GRID_S)
            try:
                status = await rpc.signature_status(signature)
            except (RpcUnavailableError, RpcTimeoutError) as exc:
                log.debug("confirmation poll of %s failed: %s", signature, exc)
                continue  # it may still land: poll again until the deadline
            if status is not None and status.get("err") is not None:
                raise RuntimeError(f"Transaction failed: {status['err']}")
            if status is not None and status.get("confirmationStatus") in CONFIRMED_STATES:
                return
    raise RuntimeError("Transaction confirmation timeout")
