"""x402's EVM facilitator signer with our RPC failover and nonces shared across instances.

The package's ``FacilitatorWeb3Signer`` does every read, simulation and send through its one
``Web3``; its only state of its own is the nonce counter (``_reserve_nonce``, per process). So
this subclass changes the narrowest two points: the ``Web3`` talks through a
:class:`~kamiyo.payments.evm_rpc.PooledProvider` (every RPC URL, failover), and each send
(``write_contract``, ``send_transaction``) holds a nonce leased from a
:class:`~kamiyo.payments.nonces.NonceCoordinator` for the time it takes.

What happens to the lease depends on how the send ended:

- sent: the lease is extended until the chain's pending count passes it;
- refused by the node (a JSON-RPC error: underfunded gas, a revert): given back, the next send
  takes the nonce, so a refusal leaves no gap;
- "nonce too low" (the nonce was used meanwhile, by a send outside the coordinator): forgotten,
  and the send is tried again with a new nonce, unless the transaction we signed is the one on
  chain (an earlier attempt went through), which is then the result;
- no endpoint answered the send: the transaction may be out, so the lease is kept; if it never
  lands, the lease expires and the nonce is handed out again.
"""

import logging
import threading
from collections.abc import Callable
from typing import Any

from web3.exceptions import TransactionNotFound, Web3RPCError
from x402.mechanisms.evm import FacilitatorWeb3Signer

from kamiyo.payments.evm_rpc import SEND_RAW, PooledProvider, RpcUnreachableError
from kamiyo.payments.nonces import Lease, NonceCoordinationError, NonceCoordinator

log = logging.getLogger(__name__)

# How often one send is tried again after its nonce turned out to be used already.
NONCE_RETRIES = 3
# What nodes (geth, anvil, reth, Nethermind, Erigon) say when a nonce is already taken.
NONCE_TAKEN = ("nonce too low", "replacement transaction underpriced", "oldnonce")


def _nonce_taken(exc: Web3RPCError) -> bool:
    return any(words in str(exc).lower() for words in NONCE_TAKEN)


class CoordinatedWeb3Signer(FacilitatorWeb3Signer):
    """The x402 facilitator signer over ``provider``, with nonces from ``nonces``."""

    def __init__(
        self,
        private_key: str,
        provider: PooledProvider,
        nonces: NonceCoordinator,
        *,
        confirmation_timeout_seconds: float = 120,
    ) -> None:
        # x402's constructor builds a one-URL HTTPProvider (it sends nothing): replaced here
        # before any request, keeping the account, gas limit and middleware it set up.
        super().__init__(
            private_key=private_key,
            rpc_url="http://127.0.0.1:1",
            confirmation_timeout_seconds=confirmation_timeout_seconds,
        )
        self._w3.provider = provider
        self._provider = provider
        self._nonces = nonces
        self._leases = threading.local()

    @property
    def provider(self) -> PooledProvider:
        return self._provider

    def _reserve_nonce(self) -> int:
        lease: Lease | None = getattr(self._leases, "current", None)
        if lease is None:  # x402 reserves only inside the two sends wrapped below
            raise RuntimeError("a nonce is reserved only while sending a transaction")
        return lease.nonce

    def write_contract(
        self,
        address: str,
        abi: list[dict[str, Any]],
        function_name: str,
        *args: Any,
        data_suffix: str | None = None,
    ) -> str:
        parent = super().write_contract
        return self._with_nonce(
            lambda: parent(address, abi, function_name, *args, data_suffix=data_suffix)
        )

    def send_transaction(self, to: str, data: bytes) -> str:
        parent = super().send_transaction
        return self._with_nonce(lambda: parent(to, data))

    def _with_nonce(self, send: Callable[[], str]) -> str:
        for _attempt in range(NONCE_RETRIES):
            pending = self._w3.eth.get_transaction_count(self._account.address, "pending")
            try:
                lease = self._nonces.reserve(pending)
            except NonceCoordinationError as exc:
                self._provider.note_outage(str(exc))
                raise
            self._leases.current = lease
            self._provider.forget_sent()
            try:
                tx_hash = send()
            except Web3RPCError as exc:
                if not _nonce_taken(exc):
                    self._nonces.give_back(lease)  # refused, never broadcast
                    raise
                landed = self._our_transaction()
                if landed is not None:
                    self._nonces.sent(lease)
                    return landed
                # Someone sends with this key without our coordination: another instance
                # without the shared Redis, or a program of the operator's.
                log.warning(
                    "EVM nonce %d of the relayer was taken meanwhile; sending with another "
                    "(does another instance use this key without KAMIYO_REDIS_URL?)",
                    lease.nonce,
                )
                self._nonces.spent(lease)
                continue
            except RpcUnreachableError as exc:
                if exc.method == SEND_RAW:
                    self._nonces.sent(lease)  # it may be out: the lease decides
                else:
                    self._nonces.give_back(lease)
                raise
            except BaseException:
                self._nonces.give_back(lease)  # failed before anything was sent
                raise
            finally:
                self._leases.current = None
            self._nonces.sent(lease)
            return tx_hash
        raise RuntimeError(
            f"every EVM nonce tried was taken meanwhile ({NONCE_RETRIES} tries); is another "
            "program sending from the relayer account?"
        )

    def _our_transaction(self) -> str | None:
        """The hash of the transaction this thread signed, if it is known to the chain."""
        tx_hash = self._provider.last_sent()
        if tx_hash is None:
            return None
        try:
            self._w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        return tx_hash
