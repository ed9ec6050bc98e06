"""Settlements whose outcome is unknown: what the chain knows them by, and how it ended.

A settlement can go out and get no answer: the RPC hangs past the settle timeout, the connection
drops after the send, the receipt never comes. The transaction may still land, so the payment
is neither refused (the payer would be charged and never answered) nor taken (nothing says it
landed). The journal keeps it ``pending`` with its chain identity, and the chain decides:

- EVM (EIP-3009 ``transferWithAuthorization``): ``authorizationState(payer, nonce)`` on the
  token. Used: it landed (an authorization pays only its ``to`` and ``value``, so whoever sent
  it, we were paid). Unused in a block at or past ``validBefore``, or our transaction's receipt
  shows it reverted: it can never land. Otherwise: still unknown.
- Solana: ``getSignatureStatuses`` of the transaction's signature, after ``isBlockhashValid``
  of its blockhash (read first, so "expired" and "unknown" together prove it never landed).
  Confirmed without error: landed; failed: not taken; unknown after its blockhash expired:
  never lands. Otherwise: still unknown.

Reads go through the endpoint pools of each network's ``rpc_urls`` (failover, rate limits).
"""

import base64
import binascii
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio.to_thread
from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak
from solders.transaction import VersionedTransaction
from x402.schemas import PaymentPayload, PaymentRequirements

from kamiyo.chains import AcceptedNetwork, AddressFamily
from kamiyo.payments.rpc import RpcRequestError, RpcTimeoutError, RpcUnavailableError, SolanaRpc

if TYPE_CHECKING:  # web3 is loaded only where EVM payments are taken
    from kamiyo.payments.evm_rpc import PooledProvider

log = logging.getLogger(__name__)

# What a facilitator answers when a settlement went out and its outcome is unknown; x402's own
# word for a sent transaction whose receipt never came.
SETTLEMENT_UNKNOWN = "settlement_unknown"
UNKNOWN_OUTCOMES = frozenset({SETTLEMENT_UNKNOWN, "settlement_pending"})
# The reason a caller reads while its payment is being confirmed.
CONFIRMING = "settlement_confirming"
# How soon a retry is worth it: a few blocks on either chain.
RETRY_AFTER_S = 5
CONFIRMED_STATES = ("confirmed", "finalized")
AUTHORIZATION_STATE = keccak(text="authorizationState(address,bytes32)")[:4]


@dataclass(frozen=True, slots=True)
class Eip3009Identity:
    kind: Literal["eip3009"]
    network: str
    token: str
    payer: str
    nonce: str  # 0x-hex bytes32
    valid_before: int
    transaction: str | None  # our transaction's hash, when one went out


@dataclass(frozen=True, slots=True)
class SvmIdentity:
    kind: Literal["svm"]
    network: str
    signature: str
    blockhash: str  # the transaction lands only while this blockhash is valid


ChainIdentity = Eip3009Identity | SvmIdentity


@dataclass(frozen=True, slots=True)
class Landed:
    transaction: str | None


@dataclass(frozen=True, slots=True)
class Lost:
    """It provably did not land and never will: nothing was taken."""

    why: str


@dataclass(frozen=True, slots=True)
class Unsure:
    retry_after_s: int
    why: str


Resolution = Landed | Lost | Unsure


def identity_of(
    payload: PaymentPayload, requirements: PaymentRequirements, transaction: str | None
) -> ChainIdentity | None:
    """What the chain knows this payment's settlement by, or None if it cannot be told."""
    authorization = payload.payload.get("authorization")
    if isinstance(authorization, Mapping):
        try:
            return Eip3009Identity(
                kind="eip3009",
                network=requirements.network,
                token=requirements.asset,
                payer=str(authorization["from"]),
                nonce=str(authorization["nonce"]),
                valid_before=int(authorization["validBefore"]),
                transaction=transaction or None,
            )
        except (KeyError, ValueError, TypeError):
            return None
    if not transaction:  # the payload lacks the fee payer's signature, which names it
        return None
    try:
        raw = base64.b64decode(str(payload.payload.get("transaction", "")), validate=True)
        tx = VersionedTransaction.from_bytes(raw)
    except (binascii.Error, ValueError):
        return None
    return SvmIdentity(
        kind="svm",
        network=requirements.network,
        signature=transaction,
        blockhash=str(tx.message.recent_blockhash),
    )


def as_json(identity: ChainIdentity) -> dict[str, Any]:
    return asdict(identity)


def from_json(stored: Mapping[str, Any] | None) -> ChainIdentity | None:
    if not stored:
        return None
    fields = dict(stored)
    if fields.get("kind") == "eip3009":
        return Eip3009Identity(**fields)
    if fields.get("kind") == "svm":
        return SvmIdentity(**fields)
    return None


class ChainReader:
    """Reads the networks' chains to resolve pending settlements (``open`` before use)."""

    def __init__(self, networks: Sequence[AcceptedNetwork], *, timeout_s: float = 10.0) -> None:
        self._networks = {n.network: n for n in networks if n.rpc_urls}
        self._timeout_s = timeout_s
        self._evm: dict[str, PooledProvider] = {}
        self._svm: dict[str, SolanaRpc] = {}

    def reads(self, network: str) -> bool:
        return network in self._networks

    async def resolve(self, identity: ChainIdentity) -> Resolution:
        if not self.reads(identity.network):
            return Unsure(RETRY_AFTER_S, f"no RPC URL to read {identity.network}")
        try:
            if isinstance(identity, Eip3009Identity):
                return await anyio.to_thread.run_sync(self._resolve_evm, identity)
            return await self._resolve_svm(identity)
        except (ConnectionError, RpcUnavailableError, RpcTimeoutError, RpcRequestError) as exc:
            log.warning("pending settlement on %s not resolved: %s", identity.network, exc)
            return Unsure(RETRY_AFTER_S, "the chain cannot be read right now")

    def _provider(self, network: str) -> "PooledProvider":
        from kamiyo.payments.evm_rpc import PooledProvider

        if network not in self._evm:
            urls = self._networks[network].rpc_urls
            self._evm[network] = PooledProvider(urls, network=network, timeout_s=self._timeout_s)
        return self._evm[network]

    def _rpc(self, network: str, method: str, *params: Any) -> Any:
        from web3.types import RPCEndpoint

        answer = self._provider(network).make_request(RPCEndpoint(method), list(params))
        if "error" in answer:
            raise ConnectionError(f"{method}: {answer['error']}")
        return answer.get("result")

    def _resolve_evm(self, identity: Eip3009Identity) -> Resolution:
        network = identity.network
        block = self._rpc(network, "eth_getBlockByNumber", "latest", False)
        number, timestamp = block["number"], int(block["timestamp"], 16)
        data = AUTHORIZATION_STATE + encode(
            ["address", "bytes32"],
            [identity.payer, bytes.fromhex(identity.nonce.removeprefix("0x"))],
        )
        call = {"to": identity.token, "data": "0x" + data.hex()}
        (used,) = decode(["bool"], bytes.fromhex(self._rpc(network, "eth_call", call, number)[2:]))
        if used:
            return Landed(identity.transaction)
        if timestamp >= identity.valid_before:
            return Lost("the authorization expired unused")
        if identity.transaction is not None:
            receipt = self._rpc(network, "eth_getTransactionReceipt", identity.transaction)
            if receipt is not None and int(receipt["status"], 16) == 0:
                return Lost("the settlement transaction reverted; the authorization is unused")
        wait = max(1, min(RETRY_AFTER_S, identity.valid_before - timestamp))
        return Unsure(wait, "the authorization is not used yet and still valid")

    async def _resolve_svm(self, identity: SvmIdentity) -> Resolution:
        rpc = self._svm.get(identity.network)
        if rpc is None:
            rpc = SolanaRpc(self._networks[identity.network].rpc_urls, timeout_s=self._timeout_s)
            self._svm[identity.network] = rpc
        valid = await rpc.call(
            "isBlockhashValid", [identity.blockhash, {"commitment": "confirmed"}]
        )
        still_valid = bool(valid.get("value")) if isinstance(valid, dict) else True
        status = await rpc.signature_status(identity.signature)
        if status is not None and status.get("err") is not None:
            return Lost(f"the transaction failed on chain ({status['err']})")
        if status is not None and status.get("confirmationStatus") in CONFIRMED_STATES:
            return Landed(identity.signature)
        if status is None and not still_valid:
            return Lost("its blockhash expired and the chain does not know the transaction")
        return Unsure(RETRY_AFTER_S, "the transaction is not confirmed yet")

    async def aclose(self) -> None:
        evm, self._evm = self._evm, {}
        for provider in evm.values():
            await anyio.to_thread.run_sync(provider.close)
        svm, self._svm = self._svm, {}
        for rpc in svm.values():
            await rpc.aclose()


def reader_for(networks: Sequence[AcceptedNetwork]) -> ChainReader:
    """A reader of every network that has RPC URLs (EVM and Solana)."""
    families = (AddressFamily.EVM, AddressFamily.SOLANA)
    return ChainReader([n for n in networks if n.family in families])
