"""Who verifies and settles payments: KAMIYO itself on chain, or an external x402 facilitator.

Both speak the x402 package's types. The local one runs the package's own ``exact`` mechanisms
(EIP-3009 on EVM with our relayer key, the partially signed transaction on Solana with our fee
payer); they are synchronous and do network I/O, so they run in worker threads. On EVM the
signer reads and sends over every RPC URL with failover, and leases the relayer's nonces from a
store every instance shares (``evm_signer.py``).
"""

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import anyio.to_thread
import httpx
from pydantic import SecretStr
from x402 import x402FacilitatorSync
from x402.http import FacilitatorConfig, HTTPFacilitatorClient
from x402.schemas import PaymentPayload, PaymentRequirements, SettleResponse, VerifyResponse

from kamiyo.chains import AcceptedNetwork, AddressFamily
from kamiyo.config import ConfigurationError, RedisSettings, X402Settings
from kamiyo.payments.networks import SCHEME
from kamiyo.payments.nonces import LocalNonces, NonceCoordinator, RedisNonces
from kamiyo.payments.rpc import SolanaRpc
from kamiyo.payments.settlements import SETTLEMENT_UNKNOWN, UNKNOWN_OUTCOMES

if TYPE_CHECKING:  # web3 is loaded only where EVM payments are taken
    from kamiyo.payments.evm_rpc import PooledProvider
    from kamiyo.payments.svm import PooledKeypairSigner

log = logging.getLogger(__name__)

SVM_TIMEOUT_S = 5.0  # a Solana RPC call's bound (SolanaRpc's default): slots are 0.4 s


class PaymentSetupError(ConfigurationError):
    """x402 is switched on but cannot work as configured; the message says what is missing."""


class Facilitator(Protocol):
    async def start(self) -> None:
        """Learn what the facilitator needs in requirements (before the first quote)."""
        ...

    async def stop(self) -> None: ...

    async def verify(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> VerifyResponse: ...

    async def settle(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> SettleResponse: ...

    def extra_for(self, network: str) -> dict[str, Any]:
        """What requirements on ``network`` must carry for this facilitator (Solana: feePayer)."""
        ...


def read_secret(value: SecretStr | None, file: Path | None, name: str) -> str | None:
    """A key from the variable ``name`` or from the file ``name``_FILE names (so it need not
    sit in the environment)."""
    if value is not None:
        return value.get_secret_value().strip() or None
    if file is None:
        return None
    try:
        return file.read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise PaymentSetupError(
            f"{name}_FILE: cannot read {file} ({exc.strerror or type(exc).__name__}); "
            f"name a readable file that holds the key, or set {name}"
        ) from None


def _nothing_settles(family: str, networks: list[AcceptedNetwork], key: str) -> PaymentSetupError:
    names = ", ".join(n.network for n in networks)
    return PaymentSetupError(
        f"KAMIYO_X402_NETWORKS takes payments on {names}, but nothing can settle them: set "
        f"{key} (or {key}_FILE) to {family}, or KAMIYO_X402_FACILITATOR_URL to an x402 "
        "facilitator"
    )


def _relayer_address(key: str, name: str) -> str:
    from eth_account import Account

    try:
        address: str = Account.from_key(key if key.startswith("0x") else "0x" + key).address
    except (ValueError, TypeError):
        raise PaymentSetupError(f"{name} is not a hex EVM private key (32 bytes)") from None
    return address


def _nonce_coordinator(
    x402: X402Settings, redis: RedisSettings | None, account: str
) -> NonceCoordinator:
    """Shared by every instance through Redis when there is one; else this process's own."""
    if redis is not None and redis.url:
        return RedisNonces(
            redis.url, prefix=redis.prefix, account=account, lease_s=x402.evm_nonce_lease_s
        )
    return LocalNonces(lease_s=x402.evm_nonce_lease_s)


def _unreachable(network: str) -> str:
    return (
        f"payments on {network} cannot be checked or settled right now (its RPC endpoints, or "
        "the store of the relayer's nonces, did not answer); nothing was charged, send the "
        "payment again shortly"
    )


class LocalFacilitator:
    def __init__(self, x402: X402Settings, redis: RedisSettings | None = None) -> None:
        """``redis``: where instances share the relayer's nonces (else this process keeps them)."""
        self._facilitator = x402FacilitatorSync()
        # Solana signers and their networks' RPC URLs: each gets its endpoint pool at start.
        self._svm_signers: list[tuple[PooledKeypairSigner, list[str]]] = []
        self._closing: list[Callable[[], None]] = []
        self._evm_rpc: dict[str, PooledProvider] = {}
        self._svm_timeout_s = min(x402.settle_timeout_s, SVM_TIMEOUT_S)
        evm = [n for n in x402.networks if n.family is AddressFamily.EVM]
        svm = [n for n in x402.networks if n.family is AddressFamily.SOLANA]
        if evm:
            self._register_evm(x402, evm, redis)
        if svm:
            self._register_svm(x402, svm)
        self._extra = {
            str(kind.network): dict(kind.extra or {})
            for kind in self._facilitator.get_supported().kinds
            if kind.scheme == SCHEME
        }

    def _register_evm(
        self, x402: X402Settings, networks: list[AcceptedNetwork], redis: RedisSettings | None
    ) -> None:
        from x402.mechanisms.evm.exact import ExactEvmFacilitatorScheme, ExactEvmSchemeConfig

        from kamiyo.payments.evm_rpc import PooledProvider
        from kamiyo.payments.evm_signer import CoordinatedWeb3Signer

        name = "KAMIYO_X402_EVM_RELAYER_KEY"
        key = read_secret(x402.evm_relayer_key, x402.evm_relayer_key_file, name)
        if key is None:
            raise _nothing_settles(
                "the private key of an account that pays the gas", networks, name
            )
        relayer = _relayer_address(key, name)
        for network in networks:
            if not network.rpc_urls:
                raise PaymentSetupError(
                    f"KAMIYO_X402_NETWORKS: {network.network} needs rpc_urls to settle on chain"
                )
            try:
                provider = PooledProvider(
                    network.rpc_urls,
                    network=network.network,
                    requests_per_second=x402.evm_rpc_requests_per_second,
                    timeout_s=x402.settle_timeout_s,
                )
            except ValueError as exc:  # its words never repeat the URL, which may hold a key
                raise PaymentSetupError(f"KAMIYO_X402_NETWORKS: {network.network}: {exc}") from None
            self._closing.append(provider.close)
            self._evm_rpc[network.network] = provider
            nonces = _nonce_coordinator(x402, redis, f"{network.network}:{relayer}")
            self._closing.append(nonces.close)
            signer = CoordinatedWeb3Signer(key, provider, nonces)
            # Simulating again just before sending costs one eth_call; a payment spent in the
            # meantime then fails there, not on chain with our relayer paying the gas.
            config = ExactEvmSchemeConfig(simulate_in_settle=True)
            self._facilitator.register([network.network], ExactEvmFacilitatorScheme(signer, config))

    def _register_svm(self, x402: X402Settings, networks: list[AcceptedNetwork]) -> None:
        from solders.keypair import Keypair

        from kamiyo.payments.svm import CheckedExactSvm, PooledKeypairSigner, VerifiedPayments

        name = "KAMIYO_X402_SVM_FEE_PAYER_KEY"
        key = read_secret(x402.svm_fee_payer_key, x402.svm_fee_payer_key_file, name)
        if key is None:
            raise _nothing_settles("the base58 keypair of a fee payer", networks, name)
        try:
            keypair = Keypair.from_base58_string(key)
        except ValueError:
            raise PaymentSetupError(
                f"{name} is not a base58 Solana keypair (64 bytes, as solana-keygen writes)"
            ) from None
        verified = VerifiedPayments()  # one per instance, over its Solana networks
        for network in networks:
            if not network.rpc_urls:
                raise PaymentSetupError(
                    f"KAMIYO_X402_NETWORKS: {network.network} needs rpc_urls to settle on chain"
                )
            signer = PooledKeypairSigner(keypair, verified)
            self._svm_signers.append((signer, list(network.rpc_urls)))
            self._facilitator.register([network.network], CheckedExactSvm(signer))

    async def start(self) -> None:
        # The pools are made here, on the server's loop, where the signers hand their RPC.
        for signer, urls in self._svm_signers:
            signer.connect(SolanaRpc(urls, timeout_s=self._svm_timeout_s))

    async def stop(self) -> None:
        for signer, _ in self._svm_signers:
            await signer.disconnect()
        closing, self._closing = self._closing, []
        for close in closing:
            await anyio.to_thread.run_sync(close)

    async def verify(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> VerifyResponse:
        result: VerifyResponse = await anyio.to_thread.run_sync(self._verify, payload, requirements)
        return result

    async def settle(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> SettleResponse:
        result: SettleResponse = await anyio.to_thread.run_sync(self._settle, payload, requirements)
        return result

    # x402 reads a failed RPC read as a bad payment ("failed to verify signature"); where the
    # reason was that no endpoint (or the nonce store) answered, the payer is told so instead,
    # to try again.

    def _verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> VerifyResponse:
        provider = self._evm_rpc.get(str(requirements.network))
        if provider is not None:
            provider.begin_call()
        result = self._facilitator.verify(payload, requirements)
        outage = provider.outage() if provider is not None else None
        if result.is_valid or outage is None:
            return result
        log.warning("payment not verified: %s", outage)
        return VerifyResponse(
            is_valid=False,
            invalid_reason="verification_unavailable",
            invalid_message=_unreachable(requirements.network),
            payer=result.payer,
        )

    def _settle(self, payload: PaymentPayload, requirements: PaymentRequirements) -> SettleResponse:
        provider = self._evm_rpc.get(str(requirements.network))
        if provider is not None:
            provider.begin_call()
        result = self._facilitator.settle(payload, requirements)
        outage = provider.outage() if provider is not None else None
        sent = provider.last_sent() if provider is not None else None
        if not result.success and sent and (outage or result.error_reason in UNKNOWN_OUTCOMES):
            # A transaction went out and no answer came: it may be mined. Kept pending.
            log.warning("payment sent without an answer: %s", outage or result.error_reason)
            return SettleResponse(
                success=False,
                error_reason=SETTLEMENT_UNKNOWN,
                error_message=outage,
                network=requirements.network,
                payer=result.payer,
                transaction=result.transaction or sent,
            )
        if result.success or outage is None or provider is None or sent:
            # Settled, or the node refused what we sent: x402's answer stands.
            return result
        log.warning("payment not settled: %s", outage)
        return SettleResponse(
            success=False,
            error_reason="settlement_unavailable",
            error_message=_unreachable(requirements.network),
            network=requirements.network,
            payer=result.payer,
            transaction="",
        )

    def extra_for(self, network: str) -> dict[str, Any]:
        return self._extra.get(network, {})


# A /settle request that went out and got no answer (unlike a refused connection).
SENT_UNANSWERED = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)


def _why(exc: Exception) -> str:
    if isinstance(exc, httpx.ConnectError | ConnectionError):
        return "cannot connect"
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timed out"
    if isinstance(exc, ValueError):  # the client's words for a non-200 or a malformed answer
        return "unexpected answer"
    return type(exc).__name__


class RemoteFacilitator:
    """An x402 facilitator over HTTP (its POST /verify and /settle)."""

    def __init__(self, url: str) -> None:
        self._client = HTTPFacilitatorClient(FacilitatorConfig(url=url))
        # Only the host goes into messages: a facilitator URL may carry a key in its path.
        parts = urlsplit(url)
        self._where = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        self._extra: dict[str, dict[str, Any]] | None = None

    async def verify(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> VerifyResponse:
        return await self._client.verify(payload, requirements)

    async def settle(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> SettleResponse:
        try:
            return await self._client.settle(payload, requirements)
        except SENT_UNANSWERED as exc:
            # The request reached the facilitator, which may have submitted the payment: the
            # chain will tell (settlements.py). Refused connections still fail as before.
            log.warning("facilitator at %s did not answer /settle: %s", self._where, _why(exc))
            return SettleResponse(
                success=False,
                error_reason=SETTLEMENT_UNKNOWN,
                error_message=f"the facilitator at {self._where} did not answer ({_why(exc)})",
                network=requirements.network,
                transaction="",
            )

    async def start(self) -> None:
        try:
            supported = await anyio.to_thread.run_sync(self._client.get_supported)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            log.debug("facilitator at %s: %s", self._where, type(exc).__name__, exc_info=exc)
            raise PaymentSetupError(
                f"KAMIYO_X402_FACILITATOR_URL: the facilitator at {self._where} did not answer "
                f"its /supported ({_why(exc)}); check the URL, or unset it to settle with "
                "KAMIYO_X402_EVM_RELAYER_KEY / KAMIYO_X402_SVM_FEE_PAYER_KEY"
            ) from None
        self._extra = {
            str(kind.network): dict(kind.extra or {})
            for kind in supported.kinds
            if kind.scheme == SCHEME
        }

    async def stop(self) -> None:
        await self._client.aclose()

    def extra_for(self, network: str) -> dict[str, Any]:
        return (self._extra or {}).get(network, {})
