"""x402's own Python client pays KAMIYO on Solana: MCP over stdio and Streamable HTTP, and REST.

As tests/payments/test_x402_client.py does on EVM, with the ``x402`` package's exact SVM client
scheme signing for the payer (``tests/x402_client/pay.py`` in the client's own environment).
KAMIYO runs as ``kamiyo serve``, co-signs with its fee payer and sends the transaction to the
local chain (LiteSVM behind loopback JSON-RPC, served from this process's threads), which the
client also reads for the mint and a recent blockhash. Token balances are the proof of payment.
"""

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from tests.mcpserver.conftest import server_env
from tests.mcpserver.test_node_clients import KAMIYO_STDIO
from tests.payments import x402_runs
from tests.payments.solana_chain import USDC_DECIMALS, SolanaChain
from tests.payments.x402_runs import SEARCH_PRICE, outcome_of, paying_http_server, private_file

PAYER_USDC = 10 * SEARCH_PRICE
TRANSFER_CHECKED = 12  # the SPL Token instruction the exact scheme pays with


def kamiyo_env(chain: SolanaChain, folder: Path) -> dict[str, str]:
    """KAMIYO's settings for taking USDC on ``chain``, co-signing with a fee payer from a file."""
    key_file = private_file(folder, "fee-payer.key", str(chain.fee_payer))
    # No asset: KAMIYO offers the network's USDC, which the local chain holds at devnet's mint.
    network = {"network": chain.network, "pay_to": str(chain.pay_to), "rpc_urls": [chain.rpc_url]}
    return {
        "KAMIYO_X402_NETWORKS": json.dumps([network]),
        "KAMIYO_X402_SVM_FEE_PAYER_KEY_FILE": str(key_file),
        # A pay-per-call-only server: with anonymous access off there is no free tier without
        # an account, so an unpaid search asks for payment (over HTTP too) and x402's client
        # pays it as it would any 402. The free tier's offer is paid in test_paid_limits.py.
        "KAMIYO_ALLOW_ANONYMOUS": "false",
    }


@pytest.fixture(scope="module")
def http_base(solana_chain: SolanaChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``kamiyo serve --transport http`` taking payments on Solana, for the HTTP and REST tests."""
    with paying_http_server(tmp_path_factory, [], lambda f: kamiyo_env(solana_chain, f)) as url:
        yield url


@pytest.fixture(scope="module")
def stateless_base(
    solana_chain: SolanaChain, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The same in stateless mode with JSON responses, as behind a load balancer."""
    flags = ["--stateless", "--json-response"]
    with paying_http_server(tmp_path_factory, flags, lambda f: kamiyo_env(solana_chain, f)) as url:
        yield url


def key_file_of(payer: Keypair, folder: Path) -> Path:
    return private_file(folder, "payer.key", str(payer))


def run_pay(
    python: Path,
    mode: str,
    target: list[str],
    chain: SolanaChain,
    key_file: Path,
    **options: Any,
) -> subprocess.CompletedProcess[str]:
    # The client reads the local chain for the mint and a recent blockhash.
    asset = (chain.network, str(chain.mint))
    extra = ("--rpc-url", chain.rpc_url)
    return x402_runs.run_pay(python, mode, target, key_file, asset, extra=extra, **options)


def balances(chain: SolanaChain, payer: Keypair) -> tuple[int, int]:
    return chain.token_balance(payer.pubkey()), chain.token_balance(chain.pay_to)


def sent_transaction(payment: dict[str, Any]) -> VersionedTransaction:
    return VersionedTransaction.from_bytes(base64.b64decode(payment["payload"]["transaction"]))


def assert_paid_once(
    outcome: dict[str, Any],
    chain: SolanaChain,
    payer: Keypair,
    before: tuple[int, int],
    payment: dict[str, Any],
) -> None:
    """The call was paid, answered and settled on chain for exactly the price, by the
    transaction the client signed (``payment`` is what it sent), the fee payer paying fees."""
    assert outcome["paid"] is True, outcome
    assert outcome["is_error"] is False, outcome
    assert outcome["protocol"] == "Euler Finance"
    after = balances(chain, payer)
    assert (before[0] - after[0], after[1] - before[1]) == (SEARCH_PRICE, SEARCH_PRICE)
    receipt: dict[str, Any] = outcome["payment_response"]
    assert receipt["success"] is True
    assert receipt["network"] == chain.network
    assert receipt["payer"] == str(payer.pubkey())
    signature = Signature.from_string(receipt["transaction"])
    landed = chain.get_transaction(str(signature))
    assert landed is not None, receipt
    assert landed["meta"]["err"] is None
    # Fee payer first (its signature is the transaction's id), then the payer's, unchanged.
    payer_signature = str(sent_transaction(payment).signatures[1])
    assert landed["transaction"]["signatures"] == [str(signature), payer_signature]


def assert_offer_accepted(payment: dict[str, Any], chain: SolanaChain, payer: Keypair) -> None:
    """The client's payment is x402 v2, accepts KAMIYO's offer, and is a TransferChecked of the
    price to the owner's token account, signed by the payer and left for our fee payer."""
    assert payment["x402Version"] == 2
    accepted = payment["accepted"]
    assert (accepted["scheme"], accepted["network"]) == ("exact", chain.network)
    assert (accepted["asset"], accepted["payTo"]) == (str(chain.mint), str(chain.pay_to))
    assert accepted["amount"] == str(SEARCH_PRICE)
    assert accepted["extra"]["feePayer"] == str(chain.fee_payer.pubkey())
    assert set(payment["payload"]) == {"transaction"}
    tx = sent_transaction(payment)
    message = tx.message
    assert isinstance(message, MessageV0)
    keys = list(message.account_keys)
    assert keys[0] == chain.fee_payer.pubkey()
    # The fee payer's slot is empty: KAMIYO signs there when it settles.
    fee_payer_slot, payer_signature = tx.signatures
    assert fee_payer_slot == Signature.default()
    assert payer_signature.verify(payer.pubkey(), bytes([0x80]) + bytes(message))
    [transfer] = [i for i in message.instructions if bytes(i.data)[:1] == bytes([TRANSFER_CHECKED])]
    data = bytes(transfer.data)
    assert int.from_bytes(data[1:9], "little") == SEARCH_PRICE
    assert data[9] == USDC_DECIMALS
    source, mint, destination, owner = (keys[i] for i in bytes(transfer.accounts))
    assert (source, mint, destination, owner) == (
        chain.ata(payer.pubkey()),
        chain.mint,
        chain.ata(chain.pay_to),
        payer.pubkey(),
    )


def assert_mcp_wire(outcome: dict[str, Any], chain: SolanaChain, payer: Keypair) -> dict[str, Any]:
    """First the call without payment, then the retry carrying it in _meta; returns the payment."""
    unpaid, paid = outcome["sent"]
    assert unpaid is None
    assert set(paid) == {"x402/payment"}
    payment: dict[str, Any] = paid["x402/payment"]
    assert_offer_accepted(payment, chain, payer)
    assert outcome["receipt_parsed"] is True  # x402's SettleResponse model reads our receipt
    return payment


def sol_of(chain: SolanaChain, payer: Keypair) -> int:
    return chain.sol_balance(payer.pubkey())


def test_x402_mcp_client_pays_on_solana_over_stdio(
    x402_python: Path, solana_chain: SolanaChain, tmp_path: Path
) -> None:
    payer = solana_chain.new_wallet(usdc=PAYER_USDC)
    # pay.py hands its environment to the server it spawns, as an MCP host would.
    env = server_env(tmp_path) | kamiyo_env(solana_chain, tmp_path)
    before, lamports = balances(solana_chain, payer), sol_of(solana_chain, payer)
    proc = run_pay(
        x402_python,
        "stdio",
        KAMIYO_STDIO,
        solana_chain,
        key_file_of(payer, tmp_path),
        env=env,
        cwd=tmp_path,
    )
    outcome = outcome_of(proc)
    payment = assert_mcp_wire(outcome, solana_chain, payer)
    assert_paid_once(outcome, solana_chain, payer, before, payment)
    assert sol_of(solana_chain, payer) == lamports  # KAMIYO's fee payer paid the fees


@pytest.mark.parametrize("server", ["http_base", "stateless_base"])
def test_x402_mcp_client_pays_on_solana_over_streamable_http(
    x402_python: Path,
    solana_chain: SolanaChain,
    server: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    base: str = request.getfixturevalue(server)
    payer = solana_chain.new_wallet(usdc=PAYER_USDC)
    before, lamports = balances(solana_chain, payer), sol_of(solana_chain, payer)
    key_file = key_file_of(payer, tmp_path)
    proc = run_pay(x402_python, "http", [f"{base}/mcp"], solana_chain, key_file)
    outcome = outcome_of(proc)
    payment = assert_mcp_wire(outcome, solana_chain, payer)
    assert_paid_once(outcome, solana_chain, payer, before, payment)
    assert sol_of(solana_chain, payer) == lamports


def test_x402_http_client_pays_the_rest_api_on_solana(
    x402_python: Path, solana_chain: SolanaChain, http_base: str, tmp_path: Path
) -> None:
    payer = solana_chain.new_wallet(usdc=PAYER_USDC)
    before = balances(solana_chain, payer)
    url = f"{http_base}/api/v1/exploits?query=euler"
    key_file = key_file_of(payer, tmp_path)
    outcome = outcome_of(run_pay(x402_python, "rest", [url], solana_chain, key_file))
    assert outcome["status"] == 200, outcome
    # First the request without payment, then the retry with PAYMENT-SIGNATURE (v2).
    unpaid, paid = outcome["sent"]
    assert not {"payment-signature", "x-payment"} & set(unpaid["names"])
    assert "x-payment" not in paid["names"]
    payment: dict[str, Any] = paid["payment-signature"]
    assert_offer_accepted(payment, solana_chain, payer)
    assert_paid_once(outcome, solana_chain, payer, before, payment)


def test_x402_client_refuses_a_solana_price_over_its_cap_and_nothing_is_charged(
    x402_python: Path, solana_chain: SolanaChain, http_base: str, tmp_path: Path
) -> None:
    payer = solana_chain.new_wallet(usdc=PAYER_USDC)
    before = balances(solana_chain, payer)
    url = f"{http_base}/api/v1/exploits?query=euler"
    key_file = key_file_of(payer, tmp_path)
    proc = run_pay(x402_python, "rest", [url], solana_chain, key_file, max_amount=SEARCH_PRICE - 1)
    assert proc.returncode != 0, proc.stdout
    assert "max_amount_per_payment" in proc.stderr
    assert balances(solana_chain, payer) == before
