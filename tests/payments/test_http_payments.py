"""x402 over HTTP on the REST endpoints, and one payment raced across two real servers.

The in-process app answers an anonymous call to a tool the free tier unlocks on the free tier,
with the offer to pay in the body (issue 16), and 402 with PAYMENT-REQUIRED for a tool it lacks;
it takes PAYMENT-SIGNATURE (and v1 X-PAYMENT), and returns PAYMENT-RESPONSE; then fifty calls
carrying the same payment go to two ``kamiyo serve`` processes sharing one PostgreSQL journal,
and exactly one is charged.
"""

import base64
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from x402.schemas import PaymentPayload, PaymentRequired
from x402.schemas.v1 import PaymentRequiredV1

from kamiyo.config import AnswerSettings, DatabaseSettings, Settings, X402Settings
from kamiyo.mcpserver.server import build_server
from kamiyo.web.app import create_app
from kamiyo.web.wire import encode_header
from tests.mcpserver.conftest import http_server_process, run_kamiyo
from tests.payments.evm_chain import EvmChain, sign_exact_payment
from tests.payments.serving import evm_network

pytestmark = pytest.mark.anyio

SEARCH = "/api/v1/exploits?query=euler"
PRICE = 10_000
RISK = "/api/v1/risk/Euler"  # the free tier lacks it: unpaid, a 402
RISK_PRICE = 50_000


def decode(header: str) -> Any:
    return json.loads(base64.b64decode(header))


def offer_of(response: httpx2.Response) -> PaymentRequired:
    if response.status_code == 200:  # answered on the free tier
        return PaymentRequired.model_validate(response.json()["paid_offer"]["payment_required"])
    assert response.status_code == 402, response.text
    return PaymentRequired.model_validate(decode(response.headers["payment-required"]))


@dataclass
class Rest:
    http: httpx2.AsyncClient
    chain: EvmChain

    async def offer(self, path: str = SEARCH) -> PaymentRequired:
        """The offer an unpaid call comes with: in the free tier's answer, or the 402's."""
        return offer_of(await self.http.get(path))

    def balances(self) -> tuple[int, int]:
        return self.chain.balance_of(self.chain.payer.address), self.chain.balance_of(
            self.chain.pay_to
        )


@pytest.fixture
async def rest(empty_database_url: str, evm_chain: EvmChain, tmp_path: Path) -> AsyncIterator[Rest]:
    key_file = tmp_path / "relayer.key"
    key_file.write_text(evm_chain.relayer_key)
    settings = Settings(
        database=DatabaseSettings(url=empty_database_url),
        environment="test",
        x402=X402Settings(networks=[evm_network(evm_chain)], evm_relayer_key_file=key_file),
        answers=AnswerSettings(cache_ttl_s=0),
        _env_file=None,
    )
    app = create_app(settings, build_server)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app, client=("198.51.100.11", 40000))
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
            yield Rest(http, evm_chain)


async def test_an_unpaid_request_is_answered_on_the_free_tier_with_the_offer(rest: Rest) -> None:
    response = await rest.http.get(SEARCH)
    assert response.status_code == 200, response.text
    assert "payment-required" not in response.headers
    body = response.json()
    assert body["incidents"][0]["protocol"] == "Euler Finance"
    offer = body.pop("paid_offer")
    assert (offer["price_usd"], offer["networks"]) == ("$0.01", [rest.chain.network])
    assert "PAYMENT-SIGNATURE" in offer["how_to_pay"]
    required = offer["payment_required"]
    assert required["resource"]["url"] == f"http://test{SEARCH}"
    assert required["accepts"][0]["amount"] == str(PRICE)
    assert required["accepts"][0]["payTo"] == rest.chain.pay_to


async def test_an_unpaid_request_the_free_tier_lacks_gets_402_with_payment_required(
    rest: Rest,
) -> None:
    response = await rest.http.get(RISK)
    assert response.status_code == 402
    required = decode(response.headers["payment-required"])
    assert required["x402Version"] == 2
    assert required["resource"]["url"] == f"http://test{RISK}"
    assert required["accepts"][0]["amount"] == str(RISK_PRICE)
    assert required["accepts"][0]["payTo"] == rest.chain.pay_to
    body = response.json()
    message = body.pop("message")
    assert message.startswith("assess_protocol_risk costs $0.05")
    # The REST error envelope rides beside the PaymentRequired, whose error stays x402's string.
    problem = body.pop("problem")
    assert problem.pop("request_id") == response.headers["X-Request-ID"]
    assert problem == {"code": "payment_required", "message": message, "details": {}}
    # A first request may come from a v1 client, which reads the body: v1's PaymentRequired.
    v1 = PaymentRequiredV1.model_validate(body)
    assert [(o.network, o.max_amount_required, o.pay_to) for o in v1.accepts] == [
        (a["network"], a["amount"], a["payTo"]) for a in required["accepts"]
    ]
    assert v1.accepts[0].resource == required["resource"]["url"]
    assert "PAYMENT-REQUIRED" in response.headers["access-control-expose-headers"]


async def test_a_paid_request_settles_and_returns_payment_response(rest: Rest) -> None:
    payment = sign_exact_payment(rest.chain, (await rest.offer()).accepts[0])
    before = rest.balances()
    response = await rest.http.get(
        SEARCH, headers={"PAYMENT-SIGNATURE": encode_header(_sent(payment))}
    )
    assert response.status_code == 200, response.text
    assert response.json()["incidents"]
    receipt = decode(response.headers["payment-response"])
    assert receipt["success"] is True
    assert receipt["network"] == rest.chain.network
    after = rest.balances()
    assert (before[0] - after[0], after[1] - before[1]) == (PRICE, PRICE)
    replay = await rest.http.get(
        SEARCH, headers={"PAYMENT-SIGNATURE": encode_header(_sent(payment))}
    )
    assert replay.status_code == 402
    assert decode(replay.headers["payment-required"])["error"] == "payment_already_used"
    assert rest.balances() == after


async def test_a_v1_x_payment_header_is_accepted(rest: Rest) -> None:
    payment = sign_exact_payment(rest.chain, (await rest.offer()).accepts[0])
    v1 = {"x402Version": 1, "scheme": "exact", "network": rest.chain.network}
    v1["payload"] = payment.payload
    response = await rest.http.get(SEARCH, headers={"X-PAYMENT": encode_header(v1)})
    assert response.status_code == 200, response.text
    # A v1 client gets its receipt where v1 puts it.
    assert decode(response.headers["x-payment-response"])["success"] is True
    assert "payment-response" not in response.headers


async def test_a_garbage_payment_header_gets_402_with_the_reason(rest: Rest) -> None:
    before = rest.balances()
    response = await rest.http.get(SEARCH, headers={"PAYMENT-SIGNATURE": "%%% not base64 %%%"})
    assert response.status_code == 402
    assert decode(response.headers["payment-required"])["error"] == "invalid_payload"
    assert "neither JSON nor base64" in response.json()["message"]
    assert rest.balances() == before


def _sent(payment: PaymentPayload) -> dict[str, Any]:
    return payment.model_dump(mode="json", by_alias=True, exclude_none=True)


async def test_one_payment_raced_across_two_servers_is_charged_once(
    tmp_path: Path, evm_chain: EvmChain, postgres_url_for_cli: str
) -> None:
    key_file = tmp_path / "relayer.key"
    key_file.write_text(evm_chain.relayer_key)
    key_file.chmod(0o600)
    env = {
        "KAMIYO_DATABASE_URL": postgres_url_for_cli,
        "KAMIYO_X402_NETWORKS": json.dumps([evm_network(evm_chain).model_dump()]),
        "KAMIYO_X402_EVM_RELAYER_KEY_FILE": str(key_file),
        "KAMIYO_CACHE_TTL_S": "0",
    }
    run_kamiyo(tmp_path, "db", "upgrade", env=env)
    payer = evm_chain.new_payer()
    statuses: list[int] = []
    with (
        http_server_process(tmp_path, [], env, "a.log") as (first, _),
        http_server_process(tmp_path, [], env, "b.log") as (second, _),
    ):
        async with httpx2.AsyncClient(timeout=60) as client:
            offer = offer_of(await client.get(f"{first}{SEARCH}"))
            header = encode_header(_sent(sign_exact_payment(evm_chain, offer.accepts[0], payer)))
            before = evm_chain.balance_of(payer.address)

            async def one(url: str) -> None:
                response = await client.get(url + SEARCH, headers={"PAYMENT-SIGNATURE": header})
                statuses.append(response.status_code)

            async with anyio.create_task_group() as tasks:
                for i in range(50):
                    tasks.start_soon(one, first if i % 2 else second)
    assert Counter(statuses) == {200: 1, 402: 49}
    assert before - evm_chain.balance_of(payer.address) == PRICE
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert logs.count("settled $0.01") == 1
    assert evm_chain.relayer_key.removeprefix("0x") not in logs  # the key is never logged
