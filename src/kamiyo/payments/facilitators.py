"""Who verifies and settles payments: KAMIYO itself on chain, or an external x402 facilitator.

Both speak the x402 package's types. The local one runs the package's own ``exact`` mechanisms
(EIP-3009 on EVM with our relayer key, the partially signed transaction on Solana with our fee
payer); they are synchronous and do network I/O, so they run in worker threads.
"""

import logging
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
from kamiyo.config import ConfigurationError, X402Settings
from kamiyo.payments.networks import SCHEME
from kamiyo.payments.rpc import SolanaRpc

if TYPE_CHECKING:
    from kamiyo.payments.svm import PooledKeypairSigner

log = logging.getLogger(__name__)


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


class LocalFacilitator:
    def __init__(self, x402: X402Settings) -> None:
        self._facilitator = x402FacilitatorSync()
        # Solana signers and their networks' RPC URLs: each gets its endpoint pool at start.
        self._svm_signers: list[tuple[PooledKeypairSigner, list[str]]] = []
        evm = [n for n in x402.networks if n.family is AddressFamily.EVM]
        svm = [n for n in x402.networks if n.family is AddressFamily.SOLANA]
        if evm:
            self._register_evm(x402, evm)
        if svm:
            self._register_svm(x402, svm)
        self._extra = {
            str(kind.network): dict(kind.extra or {})
            for kind in self._facilitator.get_supported().kinds
            if kind.scheme == SCHEME
        }

    def _register_evm(self, x402: X402Settings, networks: list[AcceptedNetwork]) -> None:
        from x402.mechanisms.evm import FacilitatorWeb3Signer
        from x402.mechanisms.evm.exact import ExactEvmFacilitatorScheme, ExactEvmSchemeConfig

        name = "KAMIYO_X402_EVM_RELAYER_KEY"
        key = read_secret(x402.evm_relayer_key, x402.evm_relayer_key_file, name)
        if key is None:
            raise _nothing_settles(
                "the private key of an account that pays the gas", networks, name
            )
        for network in networks:
            if not network.rpc_urls:
                raise PaymentSetupError(
                    f"KAMIYO_X402_NETWORKS: {network.network} needs rpc_urls to settle on chain"
                )
            signer = FacilitatorWeb3Signer(private_key=key, rpc_url=network.rpc_urls[0])
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
            signer.connect(SolanaRpc(urls))

    async def stop(self) -> None:
        for signer, _ in self._svm_signers:
            await signer.disconnect()

    async def verify(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> VerifyResponse:
        result: VerifyResponse = await anyio.to_thread.run_sync(
            self._facilitator.verify, payload, requirements
        )
        return result

    async def settle(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> SettleResponse:
        result: SettleResponse = await anyio.to_thread.run_sync(
            self._facilitator.settle, payload, requirements
        )
        return result

    def extra_for(self, network: str) -> dict[str, Any]:
        return self._extra.get(network, {})


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
        return await self._client.settle(payload, requirements)

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
