"""Who verifies and settles payments: KAMIYO itself on chain, or an external x402 facilitator.

Both speak the x402 package's types. The local one runs the package's own ``exact`` mechanisms
(EIP-3009 on EVM with our relayer key, the partially signed transaction on Solana with our fee
payer); they are synchronous and do network I/O, so they run in worker threads.
"""

import logging
from pathlib import Path
from typing import Any, Protocol

import anyio.to_thread
from pydantic import SecretStr
from x402 import x402FacilitatorSync
from x402.http import FacilitatorConfig, HTTPFacilitatorClient
from x402.schemas import PaymentPayload, PaymentRequirements, SettleResponse, VerifyResponse

from kamiyo.chains import AcceptedNetwork, AddressFamily
from kamiyo.config import Settings
from kamiyo.payments.networks import SCHEME

log = logging.getLogger(__name__)


class PaymentSetupError(ValueError):
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
    """A key from its setting or from a file (so it need not sit in the environment)."""
    if value is not None:
        return value.get_secret_value().strip() or None
    if file is None:
        return None
    try:
        return file.read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise PaymentSetupError(f"cannot read {name} from {file}: {exc.strerror}") from None


class LocalFacilitator:
    def __init__(self, settings: Settings) -> None:
        self._facilitator = x402FacilitatorSync()
        evm = [n for n in settings.x402_networks if n.family is AddressFamily.EVM]
        svm = [n for n in settings.x402_networks if n.family is AddressFamily.SOLANA]
        if evm:
            self._register_evm(settings, evm)
        if svm:
            self._register_svm(settings, svm)
        self._extra = {
            str(kind.network): dict(kind.extra or {})
            for kind in self._facilitator.get_supported().kinds
            if kind.scheme == SCHEME
        }

    def _register_evm(self, settings: Settings, networks: list[AcceptedNetwork]) -> None:
        from x402.mechanisms.evm import FacilitatorWeb3Signer
        from x402.mechanisms.evm.exact import ExactEvmFacilitatorScheme, ExactEvmSchemeConfig

        key = read_secret(
            settings.x402_evm_relayer_key,
            settings.x402_evm_relayer_key_file,
            "KAMIYO_X402_EVM_RELAYER_KEY",
        )
        if key is None:
            raise PaymentSetupError(
                "EVM payments without a facilitator need a relayer key: set "
                "KAMIYO_X402_EVM_RELAYER_KEY_FILE (or KAMIYO_X402_FACILITATOR_URL)"
            )
        for network in networks:
            if not network.rpc_urls:
                raise PaymentSetupError(f"{network.network} needs rpc_urls to settle on chain")
            signer = FacilitatorWeb3Signer(private_key=key, rpc_url=network.rpc_urls[0])
            # Simulating again just before sending costs one eth_call; a payment spent in the
            # meantime then fails there, not on chain with our relayer paying the gas.
            config = ExactEvmSchemeConfig(simulate_in_settle=True)
            self._facilitator.register([network.network], ExactEvmFacilitatorScheme(signer, config))

    def _register_svm(self, settings: Settings, networks: list[AcceptedNetwork]) -> None:
        from solders.keypair import Keypair

        from kamiyo.payments.svm import CheckedExactSvm, ConfirmingKeypairSigner

        key = read_secret(
            settings.x402_svm_fee_payer_key,
            settings.x402_svm_fee_payer_key_file,
            "KAMIYO_X402_SVM_FEE_PAYER_KEY",
        )
        if key is None:
            raise PaymentSetupError(
                "Solana payments without a facilitator need a fee payer: set "
                "KAMIYO_X402_SVM_FEE_PAYER_KEY_FILE (or KAMIYO_X402_FACILITATOR_URL)"
            )
        try:
            keypair = Keypair.from_base58_string(key)
        except ValueError:
            raise PaymentSetupError("the Solana fee payer key is not a base58 keypair") from None
        for network in networks:
            if not network.rpc_urls:
                raise PaymentSetupError(f"{network.network} needs rpc_urls to settle on chain")
            signer = ConfirmingKeypairSigner(keypair, rpc_url=network.rpc_urls[0])
            self._facilitator.register([network.network], CheckedExactSvm(signer))

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

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


class RemoteFacilitator:
    """An x402 facilitator over HTTP (its POST /verify and /settle)."""

    def __init__(self, url: str) -> None:
        self._client = HTTPFacilitatorClient(FacilitatorConfig(url=url))
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
        supported = await anyio.to_thread.run_sync(self._client.get_supported)
        self._extra = {
            str(kind.network): dict(kind.extra or {})
            for kind in supported.kinds
            if kind.scheme == SCHEME
        }

    async def stop(self) -> None:
        await self._client.aclose()

    def extra_for(self, network: str) -> dict[str, Any]:
        return (self._extra or {}).get(network, {})
