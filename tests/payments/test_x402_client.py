"""x402's own Python client pays KAMIYO end to end: MCP over stdio and Streamable HTTP, and REST.

The client is the PyPI package ``x402`` (its ``x402MCPSession`` around the MCP SDK's
ClientSession, and its httpx transport), a client we did not write. It needs mcp 1.x, so it runs
as ``tests/x402_client/pay.py`` in an environment of its own (tests/x402_client/environment.py).
KAMIYO runs as ``kamiyo serve`` and settles on anvil with its own relayer; token balances are
the proof of payment.
"""

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from tests.mcpserver.conftest import server_env
from tests.mcpserver.test_node_clients import KAMIYO_STDIO
from tests.payments import x402_runs
from tests.payments.evm_chain import EvmChain, rpc
from tests.payments.x402_runs import SEARCH_PRICE, outcome_of, paying_http_server, private_file

TX_HASH = re.compile(r"0x[0-9a-f]{64}")


def kamiyo_env(chain: EvmChain, folder: Path) -> dict[str, str]:
    """KAMIYO's settings for taking payments on ``chain``, relaying with a key from a file."""
    key_file = private_file(folder, "relayer.key", chain.relayer_key)
    network = {
        "network": chain.network,
        "pay_to": chain.pay_to,
        "asset": chain.token,
        "rpc_urls": [chain.rpc_url],
        "eip712_name": chain.token_name,
        "eip712_version": chain.token_version,
    }
    return {
        "KAMIYO_X402_NETWORKS": json.dumps([network]),
        "KAMIYO_X402_EVM_RELAYER_KEY_FILE": str(key_file),
        # A pay-per-call-only server: with anonymous access off there is no free tier without
        # an account, so an unpaid search asks for payment (over HTTP too) and x402's client
        # pays it as it would any 402. The free tier's offer is paid in test_paid_limits.py.
        "KAMIYO_ALLOW_ANONYMOUS": "false",
    }


@pytest.fixture(scope="module")
def http_base(evm_chain: EvmChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``kamiyo serve --transport http`` taking payments, shared by the HTTP and REST tests."""
    with paying_http_server(tmp_path_factory, [], lambda f: kamiyo_env(evm_chain, f)) as url:
        yield url


@pytest.fixture(scope="module")
def stateless_base(evm_chain: EvmChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same in stateless mode with JSON responses, as behind a load balancer."""
    flags = ["--stateless", "--json-response"]
    with paying_http_server(tmp_path_factory, flags, lambda f: kamiyo_env(evm_chain, f)) as url:
        yield url


def key_file_of(account: LocalAccount, folder: Path) -> Path:
    return private_file(folder, "payer.key", account.key.hex())


def run_pay(
    python: Path,
    mode: str,
    target: list[str],
    chain: EvmChain,
    key_file: Path,
    **options: Any,
) -> subprocess.CompletedProcess[str]:
    return x402_runs.run_pay(
        python, mode, target, key_file, (chain.network, chain.token), **options
    )


def balances(chain: EvmChain, payer: LocalAccount) -> tuple[int, int]:
    return chain.balance_of(payer.address), chain.balance_of(chain.pay_to)


def assert_paid_once(
    outcome: dict[str, Any],
    chain: EvmChain,
    payer: LocalAccount,
    before: tuple[int, int],
) -> None:
    """The call was paid, answered and settled on chain for exactly the price."""
    assert outcome["paid"] is True, outcome
    assert outcome["is_error"] is False, outcome
    assert outcome["protocol"] == "Euler Finance"
    after = balances(chain, payer)
    assert (before[0] - after[0], after[1] - before[1]) == (SEARCH_PRICE, SEARCH_PRICE)
    receipt: dict[str, Any] = outcome["payment_response"]
    assert receipt["success"] is True
    assert receipt["network"] == chain.network
    assert receipt["payer"].lower() == payer.address.lower()
    assert TX_HASH.fullmatch(receipt["transaction"]), receipt
    mined = rpc(chain.rpc_url, "eth_getTransactionReceipt", receipt["transaction"])
    assert int(mined["status"], 16) == 1
    assert mined["to"].lower() == chain.token.lower()


def assert_offer_accepted(payment: dict[str, Any], chain: EvmChain) -> None:
    """The client's payment is x402 v2 and accepts the offer KAMIYO made."""
    assert payment["x402Version"] == 2
    accepted = payment["accepted"]
    assert (accepted["scheme"], accepted["network"]) == ("exact", chain.network)
    assert (accepted["asset"], accepted["payTo"]) == (chain.token, chain.pay_to)
    assert accepted["amount"] == str(SEARCH_PRICE)
    authorization = payment["payload"]["authorization"]
    assert authorization["value"] == str(SEARCH_PRICE)
    assert authorization["to"].lower() == chain.pay_to.lower()


def assert_mcp_wire(outcome: dict[str, Any], chain: EvmChain) -> None:
    # First the call without payment, then the retry carrying the payment in _meta.
    unpaid, paid = outcome["sent"]
    assert unpaid is None
    assert set(paid) == {"x402/payment"}
    assert_offer_accepted(paid["x402/payment"], chain)
    assert outcome["receipt_parsed"] is True  # x402's SettleResponse model reads our receipt


def test_x402_mcp_client_pays_over_stdio(
    x402_python: Path, evm_chain: EvmChain, tmp_path: Path
) -> None:
    payer = evm_chain.new_payer()
    # pay.py hands its environment to the server it spawns, as an MCP host would.
    env = server_env(tmp_path) | kamiyo_env(evm_chain, tmp_path)
    before = balances(evm_chain, payer)
    proc = run_pay(
        x402_python,
        "stdio",
        KAMIYO_STDIO,
        evm_chain,
        key_file_of(payer, tmp_path),
        env=env,
        cwd=tmp_path,
    )
    outcome = outcome_of(proc)
    assert_paid_once(outcome, evm_chain, payer, before)
    assert_mcp_wire(outcome, evm_chain)


@pytest.mark.parametrize("server", ["http_base", "stateless_base"])
def test_x402_mcp_client_pays_over_streamable_http(
    x402_python: Path,
    evm_chain: EvmChain,
    server: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    base: str = request.getfixturevalue(server)
    payer = evm_chain.new_payer()
    before = balances(evm_chain, payer)
    key_file = key_file_of(payer, tmp_path)
    proc = run_pay(x402_python, "http", [f"{base}/mcp"], evm_chain, key_file)
    outcome = outcome_of(proc)
    assert_paid_once(outcome, evm_chain, payer, before)
    assert_mcp_wire(outcome, evm_chain)


def test_x402_http_client_pays_the_rest_api(
    x402_python: Path, evm_chain: EvmChain, http_base: str, tmp_path: Path
) -> None:
    payer = evm_chain.new_payer()
    before = balances(evm_chain, payer)
    url = f"{http_base}/api/v1/exploits?query=euler"
    key_file = key_file_of(payer, tmp_path)
    outcome = outcome_of(run_pay(x402_python, "rest", [url], evm_chain, key_file))
    assert outcome["status"] == 200, outcome
    assert_paid_once(outcome, evm_chain, payer, before)
    # First the request without payment, then the retry with PAYMENT-SIGNATURE (v2), not the
    # v1 X-PAYMENT.
    unpaid, paid = outcome["sent"]
    assert not {"payment-signature", "x-payment"} & set(unpaid["names"])
    assert "x-payment" not in paid["names"]
    assert_offer_accepted(paid["payment-signature"], evm_chain)


def test_x402_client_refuses_a_price_over_its_cap_and_nothing_is_charged(
    x402_python: Path, evm_chain: EvmChain, http_base: str, tmp_path: Path
) -> None:
    # The client reads the price from KAMIYO's offer: capped a unit below it, it must not pay.
    payer = evm_chain.new_payer()
    before = balances(evm_chain, payer)
    url = f"{http_base}/api/v1/exploits?query=euler"
    key_file = key_file_of(payer, tmp_path)
    proc = run_pay(x402_python, "rest", [url], evm_chain, key_file, max_amount=SEARCH_PRICE - 1)
    assert proc.returncode != 0, proc.stdout
    assert "max_amount_per_payment" in proc.stderr
    assert balances(evm_chain, payer) == before
