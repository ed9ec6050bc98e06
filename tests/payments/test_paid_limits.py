"""Paid calls on a real local EVM chain (anvil) through the REST surface, from a client address.

An anonymous search is answered on the free tier with the offer; x402's own client signs the
offer's PaymentRequired and the retry is served on the paid grant and settled on chain. Payments
offered from one client address are limited before they are verified, so a flood of invalid
ones runs a bounded number of verifications (RPC simulations); paid calls are limited per payer
after verification, and a call over that limit releases its payment instead of taking it.
The limits are lowered for the test (their values are in tiers.py).
"""

import base64
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from x402 import x402ClientSync
from x402.mechanisms.evm.exact import ExactEvmClientScheme
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentPayload, PaymentRequired

from kamiyo.access import paid_calls
from kamiyo.config import AnswerSettings, DatabaseSettings, RedisSettings, Settings, X402Settings
from kamiyo.mcpserver.server import build_server
from kamiyo.payments import metrics
from kamiyo.tiers import CallLimits
from kamiyo.web.app import create_app
from kamiyo.web.wire import encode_header
from tests.payments.evm_chain import EvmChain, sign_exact_payment, tampered
from tests.payments.serving import evm_network

pytestmark = pytest.mark.anyio

SEARCH = "/api/v1/exploits?query=euler"
PRICE = 10_000
CLIENT = ("198.51.100.23", 40000)


@asynccontextmanager
async def instance(
    database_url: str, chain: EvmChain, folder: Path, redis: dict[str, str] | None = None
) -> AsyncIterator[httpx2.AsyncClient]:
    """One KAMIYO instance's REST app, reached from ``CLIENT``; instances given the same
    ``redis`` count their limits together."""
    key_file = folder / "relayer.key"
    key_file.write_text(chain.relayer_key)
    settings = Settings(
        database=DatabaseSettings(url=database_url),
        environment="test",
        x402=X402Settings(networks=[evm_network(chain)], evm_relayer_key_file=key_file),
        answers=AnswerSettings(cache_ttl_s=0),
        redis=RedisSettings.model_validate(redis or {}),
        _env_file=None,
    )
    app = create_app(settings, build_server)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app, client=CLIENT)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture
async def http(
    postgres_url_for_cli: str, evm_chain: EvmChain, tmp_path: Path
) -> AsyncIterator[httpx2.AsyncClient]:
    """The REST app on PostgreSQL (the journal's production backend; test_http_payments runs
    both)."""
    async with instance(postgres_url_for_cli, evm_chain, tmp_path) as client:
        yield client


def header(payment: PaymentPayload) -> dict[str, str]:
    sent = payment.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {"PAYMENT-SIGNATURE": encode_header(sent)}


async def free_offer(http: httpx2.AsyncClient) -> PaymentRequired:
    response = await http.get(SEARCH)
    assert response.status_code == 200, response.text
    return PaymentRequired.model_validate(response.json()["paid_offer"]["payment_required"])


def balances(chain: EvmChain) -> tuple[int, int]:
    return chain.balance_of(chain.payer.address), chain.balance_of(chain.pay_to)


def verifications(network: str) -> float:
    """Verifications run on ``network`` so far, whatever their verdict (the RPC simulations)."""
    total = 0.0
    for metric in metrics.VERIFICATIONS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("network") == network:
                total += sample.value
    return total


async def test_x402s_client_pays_from_the_free_tiers_offer(
    http: httpx2.AsyncClient, evm_chain: EvmChain
) -> None:
    free = await http.get(SEARCH)
    assert free.status_code == 200
    assert free.json()["limit"] == 10  # the free tier's cap
    offer = PaymentRequired.model_validate(free.json()["paid_offer"]["payment_required"])
    # x402's own client signs the offer as it came in the answer: no 402 round trip.
    client = x402ClientSync()
    client.register("eip155:*", ExactEvmClientScheme(EthAccountSigner(evm_chain.payer)))
    client.set_spend_controls(
        {"allowed_assets": [{"network": evm_chain.network, "asset": evm_chain.token}]}
    )
    payment = client.create_payment_payload(offer)
    assert isinstance(payment, PaymentPayload)
    before = balances(evm_chain)
    paid = await http.get(SEARCH, headers=header(payment))
    assert paid.status_code == 200, paid.text
    assert "paid_offer" not in paid.json()  # served on the paid grant
    receipt = json.loads(base64.b64decode(paid.headers["payment-response"]))
    assert receipt["success"] is True
    after = balances(evm_chain)
    assert (before[0] - after[0], after[1] - before[1]) == (PRICE, PRICE)


async def test_invalid_payments_from_one_address_are_stopped_before_verifying(
    http: httpx2.AsyncClient,
    evm_chain: EvmChain,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(paid_calls, "PAYMENT_ATTEMPTS", CallLimits(3, 1_000))
    offer = await free_offer(http)
    before, ran = balances(evm_chain), verifications(evm_chain.network)
    statuses = []
    for _ in range(8):  # a bad signature each: each one verified would be an RPC simulation
        forged = tampered(sign_exact_payment(evm_chain, offer.accepts[0]), signature=b"\x01" * 65)
        response = await http.get(SEARCH, headers=header(forged))
        statuses.append(response.status_code)
    assert statuses == [402] * 3 + [429] * 5
    assert verifications(evm_chain.network) - ran == 3  # bounded by the limit, not the flood
    refused = response.json()["error"]
    assert refused["code"] == "rate_limited"
    assert "not verified and nothing was charged" in refused["message"]
    assert refused["details"]["limit_value"] == 3
    assert 0 < int(response.headers["retry-after"]) <= 60
    assert balances(evm_chain) == before
    assert "refused before verifying: requests_per_minute" in caplog.text
    assert CLIENT[0] in caplog.text


async def test_paid_calls_are_limited_per_payer_and_the_payment_over_it_is_not_taken(
    http: httpx2.AsyncClient, evm_chain: EvmChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paid_calls, "PAID_CALLS", CallLimits(2, 1_000))
    offer = await free_offer(http)
    payer = evm_chain.new_payer()
    start = evm_chain.balance_of(payer.address)
    statuses: list[int] = []
    last: Any = None
    for _ in range(3):
        payment = sign_exact_payment(evm_chain, offer.accepts[0], payer)
        last = await http.get(SEARCH, headers=header(payment))
        statuses.append(last.status_code)
    assert statuses == [200, 200, 429]
    refused = last.json()["error"]
    assert refused["code"] == "rate_limited"
    assert "paid calls from this payer" in refused["message"]
    assert "not taken" in refused["message"]
    assert start - evm_chain.balance_of(payer.address) == 2 * PRICE  # the third was not taken
    # Another payer from the same address is not held back by the first one's limit.
    other = sign_exact_payment(evm_chain, offer.accepts[0], evm_chain.new_payer())
    assert (await http.get(SEARCH, headers=header(other))).status_code == 200


async def test_two_instances_sharing_redis_count_payments_from_one_address_together(
    postgres_url_for_cli: str,
    evm_chain: EvmChain,
    tmp_path: Path,
    redis_settings: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(paid_calls, "PAYMENT_ATTEMPTS", CallLimits(4, 1_000))
    async with AsyncExitStack() as stack:
        first, second = [
            await stack.enter_async_context(
                instance(postgres_url_for_cli, evm_chain, tmp_path, redis_settings)
            )
            for _ in range(2)
        ]
        offer = await free_offer(first)
        ran, statuses = verifications(evm_chain.network), []
        for n in range(10):  # alternating between the instances, as a load balancer would
            forged = tampered(
                sign_exact_payment(evm_chain, offer.accepts[0]), signature=b"\x01" * 65
            )
            response = await (first if n % 2 else second).get(SEARCH, headers=header(forged))
            statuses.append(response.status_code)
    assert statuses == [402] * 4 + [429] * 6  # 4 between them, not 4 each
    assert verifications(evm_chain.network) - ran == 4
