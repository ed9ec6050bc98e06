"""EVM settlement over several RPC URLs: a dead or failing first endpoint is stepped around.

The failing endpoints are real HTTP servers on loopback (a closed port, a node that answers
503 or "limit exceeded", one that hangs); the working one is anvil.
"""

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import pytest
from eth_utils.crypto import keccak
from pydantic import SecretStr
from web3 import Web3
from web3.types import RPCEndpoint

from kamiyo.config import RedisSettings, X402Settings
from kamiyo.payments.evm_rpc import PooledProvider
from kamiyo.payments.evm_signer import CoordinatedWeb3Signer
from kamiyo.payments.facilitators import LocalFacilitator
from kamiyo.payments.nonces import Lease, LocalNonces
from tests.mcpserver.conftest import free_port
from tests.payments.evm_chain import EvmChain, exact_requirements, rpc, sign_exact_payment
from tests.payments.test_evm_settlement import AMOUNT, network_of

pytestmark = pytest.mark.anyio

LOGGER = "kamiyo.payments.evm_rpc"
SECRET = "SECRET-API-KEY"
Mode = Literal["http-503", "rate-limited", "hang", "already-known"]


class _NodeServer(ThreadingHTTPServer):
    daemon_threads = True
    released = threading.Event()  # replaced per server: a hanging node answers once it is set


class _Node(BaseHTTPRequestHandler):
    server: _NodeServer
    mode: Mode = "http-503"

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.mode == "hang":
            # Held until the test is done (or a minute): a client still waiting then would read
            # a wrong chain id, so one that did not leave within its call fails the test.
            self.server.released.wait(60)
            self._answer({"jsonrpc": "2.0", "id": request["id"], "result": "0x1"})
            return
        if self.mode == "http-503":
            self.send_response(503)
            self.end_headers()
            return
        code, message = (
            (-32005, "limit exceeded") if self.mode == "rate-limited" else (-32000, "already known")
        )
        self._answer(
            {"jsonrpc": "2.0", "id": request["id"], "error": {"code": code, "message": message}}
        )

    def _answer(self, answer: dict[str, object]) -> None:
        body = json.dumps(answer)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        return None


def failing_node(mode: Mode) -> Iterator[str]:
    handler = type("Node", (_Node,), {"mode": mode})
    server = _NodeServer(("127.0.0.1", free_port()), handler)
    server.released = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.released.set()
        server.shutdown()
        server.server_close()


@pytest.fixture(params=["closed-port", "http-503", "rate-limited"])
def broken_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A first RPC URL that fails, carrying a key in its path and query as providers' do."""
    if request.param == "closed-port":
        yield f"http://127.0.0.1:{free_port()}/v2/{SECRET}?apikey={SECRET}"
        return
    for url in failing_node(request.param):
        yield f"{url}/v2/{SECRET}?apikey={SECRET}"


async def test_settlement_fails_over_to_the_second_rpc_url(
    evm_chain: EvmChain, broken_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    chain = evm_chain
    caplog.set_level(logging.DEBUG)
    payer = chain.new_payer()
    pay_to = chain.new_payer(0).address
    x402 = X402Settings(
        networks=[network_of(chain, pay_to, broken_url, chain.rpc_url)],
        evm_relayer_key=SecretStr(chain.relayer_key),
    )
    facilitator = LocalFacilitator(x402)
    requirements = exact_requirements(chain, AMOUNT, pay_to=pay_to)
    payment = sign_exact_payment(chain, requirements, payer)
    try:
        verdict = await facilitator.verify(payment, requirements)
        assert verdict.is_valid, verdict
        settled = await facilitator.settle(payment, requirements)
    finally:
        await facilitator.stop()
    assert settled.success, settled
    assert chain.balance_of(pay_to) == AMOUNT

    label = broken_url.removeprefix("http://").split("/")[0]
    down = [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == logging.WARNING and "is down" in r.getMessage()
    ]
    assert down == [f"EVM RPC ({chain.network}) endpoint {label} is down ({down[0].split('(')[-1]}"]
    assert all(SECRET not in r.getMessage() for r in caplog.records)


async def test_no_working_rpc_url_refuses_and_charges_nothing(
    evm_chain: EvmChain, caplog: pytest.LogCaptureFixture
) -> None:
    chain = evm_chain
    payer = chain.new_payer()
    dead = [f"http://127.0.0.1:{free_port()}/{SECRET}" for _ in range(2)]
    x402 = X402Settings(
        networks=[network_of(chain, chain.pay_to, *dead)],
        evm_relayer_key=SecretStr(chain.relayer_key),
    )
    facilitator = LocalFacilitator(x402)
    requirements = exact_requirements(chain, AMOUNT)
    payment = sign_exact_payment(chain, requirements, payer)
    try:
        verdict = await facilitator.verify(payment, requirements)
        settled = await facilitator.settle(payment, requirements)
    finally:
        await facilitator.stop()
    assert (verdict.is_valid, verdict.invalid_reason) == (False, "verification_unavailable")
    assert (settled.success, settled.error_reason) == (False, "settlement_unavailable")
    assert "nothing was charged" in str(settled.error_message)
    assert SECRET not in (settled.error_message or "")
    assert chain.balance_of(payer.address) == 1_000 * 10**6
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_a_hanging_endpoint_is_left_for_the_next_within_the_call(evm_chain: EvmChain) -> None:
    for hanging in failing_node("hang"):
        provider = PooledProvider(
            [hanging, evm_chain.rpc_url], network=evm_chain.network, timeout_s=1.5, cooldown_s=60
        )
        try:
            # The hanging node never answers within the call: the chain id is the next one's.
            assert Web3(provider).eth.chain_id == evm_chain.chain_id
            label = hanging.removeprefix("http://")
            assert provider.health() == {label: False, provider.endpoints[1]: True}
        finally:
            provider.close()


def test_a_resent_transaction_a_node_already_has_counts_as_sent() -> None:
    for node in failing_node("already-known"):
        provider = PooledProvider([node], network="eip155:31337")
        raw = "0x" + bytes(range(40)).hex()
        try:
            answer = provider.make_request(RPCEndpoint("eth_sendRawTransaction"), [raw])
        finally:
            provider.close()
        assert answer["result"] == "0x" + keccak(bytes(range(40))).hex()


async def test_an_unreachable_nonce_store_refuses_settlement_uncharged(
    evm_chain: EvmChain, caplog: pytest.LogCaptureFixture
) -> None:
    chain = evm_chain
    payer = chain.new_payer()
    x402 = X402Settings(
        networks=[network_of(chain, chain.pay_to)], evm_relayer_key=SecretStr(chain.relayer_key)
    )
    away = RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0", prefix="kamiyo_away")
    facilitator = LocalFacilitator(x402, away)
    requirements = exact_requirements(chain, AMOUNT)
    payment = sign_exact_payment(chain, requirements, payer)
    try:
        assert (await facilitator.verify(payment, requirements)).is_valid
        settled = await facilitator.settle(payment, requirements)
    finally:
        await facilitator.stop()
    assert (settled.success, settled.error_reason) == (False, "settlement_unavailable")
    assert "nothing was charged" in str(settled.error_message)
    assert chain.balance_of(payer.address) == 1_000 * 10**6
    assert any("Redis did not answer" in r.getMessage() for r in caplog.records)


class _StaleOnce:
    """A coordinator whose first answer is a nonce the chain already spent (a stale count)."""

    def __init__(self) -> None:
        self.inner = LocalNonces(lease_s=30)
        self.stale = True

    def reserve(self, pending: int) -> Lease:
        lease = self.inner.reserve(pending)
        if self.stale and pending > 0:
            self.stale = False
            self.inner.give_back(lease)
            return Lease(pending - 1, lease.token)
        return lease

    def sent(self, lease: Lease) -> None:
        self.inner.sent(lease)

    def give_back(self, lease: Lease) -> None:
        self.inner.give_back(lease)

    def spent(self, lease: Lease) -> None:
        self.inner.spent(lease)

    def close(self) -> None:
        self.inner.close()


def test_a_nonce_spent_meanwhile_is_replaced_by_a_fresh_one(
    evm_chain: EvmChain, caplog: pytest.LogCaptureFixture
) -> None:
    chain = evm_chain
    rpc(chain.rpc_url, "eth_sendTransaction", {"from": chain.relayer, "to": chain.pay_to})
    provider = PooledProvider([chain.rpc_url], network=chain.network)
    signer = CoordinatedWeb3Signer(
        chain.relayer_key, provider, _StaleOnce(), confirmation_timeout_seconds=10
    )
    pending = int(rpc(chain.rpc_url, "eth_getTransactionCount", chain.relayer, "pending"), 16)
    try:
        tx_hash = signer.send_transaction(chain.pay_to, b"")
        signer.wait_for_transaction_receipt(tx_hash)
    finally:
        provider.close()
    assert int(rpc(chain.rpc_url, "eth_getTransactionByHash", tx_hash)["nonce"], 16) == pending
    assert any("was taken meanwhile" in r.getMessage() for r in caplog.records)
