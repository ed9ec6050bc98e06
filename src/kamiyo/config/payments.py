"""The pay-per-call (x402) section of the settings: networks, facilitator, signing keys."""

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr
from pydantic_settings import NoDecode

from kamiyo.chains import AcceptedNetwork
from kamiyo.config.base import Section, json_setting, section_config


class X402Settings(Section):
    """Pay per call."""

    model_config = section_config("KAMIYO_X402_")

    networks: Annotated[
        list[AcceptedNetwork],
        NoDecode,
        json_setting('[{"network": "eip155:8453", "pay_to": "0x…", "rpc_urls": ["https://…"]}]'),
    ] = Field(
        default_factory=list,
        description='Networks that take pay-per-call USDC, as JSON: [{"network": '
        '"eip155:8453", "pay_to": "0x…", "rpc_urls": ["https://…"]}, …]; empty: x402 off.',
    )
    facilitator_url: str | None = Field(
        default=None,
        description="An x402 facilitator that verifies and settles (its /verify and /settle); "
        "unset: KAMIYO verifies on chain and settles with its own relayer or fee payer.",
    )
    evm_relayer_key: SecretStr | None = Field(
        default=None, description="Private key that submits EVM settlements (pays gas)."
    )
    evm_relayer_key_file: Path | None = Field(
        default=None, description="A file holding the EVM relayer key (instead of the variable)."
    )
    svm_fee_payer_key: SecretStr | None = Field(
        default=None, description="Base58 Solana keypair that pays fees and co-signs."
    )
    svm_fee_payer_key_file: Path | None = Field(
        default=None, description="A file holding the Solana fee payer keypair."
    )
    max_timeout_s: int = Field(
        default=300, ge=30, le=3600, description="How long a signed payment stays usable."
    )
    evm_rpc_requests_per_second: float = Field(
        default=20,
        gt=0,
        description="Requests per second settlement sends to each EVM RPC URL (its plan's "
        "limit); a failing URL is stepped around for a few seconds.",
    )
    settle_timeout_s: float = Field(
        default=30,
        gt=0,
        le=300,
        description="How long one EVM RPC request of a verification or settlement may take "
        "(Solana's: at most 5 s). A send that gets no answer in time is kept pending and "
        "resolved against the chain; a retry of the same payment is answered as the chain says.",
    )
    evm_nonce_lease_s: float = Field(
        default=30,
        gt=0,
        le=600,
        description="How long a relayer nonce stays reserved for a send that has not reached "
        "the chain (a crashed instance's); then it is handed out again.",
    )
