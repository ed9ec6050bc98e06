"""A KAMIYO MCP server in process that takes payments: settings for each local chain, and the
server with the account gate and a cashier, reached through the SDK's in-memory client.

The settings serve nobody anonymous (``KAMIYO_ALLOW_ANONYMOUS=false``: a pay-per-call-only
server), so an unpaid call to any priced tool asks for payment; the free tier's answer with its
offer to pay is tested on its own (tests/access/test_free_tier_offer.py)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp import Client
from pydantic import SecretStr

from kamiyo.access.account_gate import AccountGate
from kamiyo.chains import AcceptedNetwork
from kamiyo.config import Settings
from kamiyo.mcpserver.server import build_server
from kamiyo.payments.cashier import Cashier, open_cashier
from kamiyo.runtime import Runtime
from kamiyo.service.state import ServerState
from tests.payments.evm_chain import EvmChain
from tests.payments.solana_chain import SolanaChain


def evm_network(chain: EvmChain) -> AcceptedNetwork:
    """The local chain as a network KAMIYO takes payments on (our token, its EIP-712 domain)."""
    return AcceptedNetwork(
        network=chain.network,
        pay_to=chain.pay_to,
        asset=chain.token,
        rpc_urls=[chain.rpc_url],
        eip712_name=chain.token_name,
        eip712_version=chain.token_version,
    )


def evm_settings(runtime: Runtime, chain: EvmChain, **sections: dict[str, Any]) -> Settings:
    """Settings that take payments on ``chain``; ``sections`` change some more."""
    x402 = {"networks": [evm_network(chain)], "evm_relayer_key": SecretStr(chain.relayer_key)}
    changes: dict[str, dict[str, Any]] = {
        "x402": x402,
        "answers": {"cache_ttl_s": 0},
        "auth": {"allow_anonymous": False},
    }
    for name, fields in sections.items():
        changes[name] = changes.get(name, {}) | fields
    return runtime.settings.with_changes(**changes)


def svm_settings(runtime: Runtime, chain: SolanaChain, *rpc_urls: str) -> Settings:
    network = AcceptedNetwork(
        network=chain.network, pay_to=str(chain.pay_to), rpc_urls=list(rpc_urls or [chain.rpc_url])
    )
    return runtime.settings.with_changes(
        x402={"networks": [network], "svm_fee_payer_key": SecretStr(str(chain.fee_payer))},
        answers={"cache_ttl_s": 0},
        auth={"allow_anonymous": False},
    )


def cashier_for(settings: Settings) -> Cashier | None:
    return open_cashier(
        settings.x402, secret_key=settings.auth.secret_key, upgrade_url=settings.site.upgrade_url
    )


@asynccontextmanager
async def paying_server(
    runtime: Runtime,
    settings: Settings,
    cashier: Cashier | None = None,
    credential: str | None = None,
) -> AsyncIterator[tuple[Client, AccountGate]]:
    """The server, called as a stdio client started with ``credential`` would call it."""
    gate = AccountGate(settings, cashier or cashier_for(settings))
    state = ServerState(settings=settings, gate=gate, runtime=runtime, stdio_credential=credential)
    async with gate.serving(runtime.sessions), Client(build_server(state)) as client:
        yield client, gate
