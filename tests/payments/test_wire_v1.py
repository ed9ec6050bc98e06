"""x402 v1 clients and plain Solana transfers over REST, on the local Solana chain.

A v1 client reads the 402 body (never the PAYMENT-REQUIRED header, which v1 does not know),
pays with X-PAYMENT and reads its receipt from X-PAYMENT-RESPONSE: here the ``x402`` package's
own client, given the body as a v1 client is, signs with its exact SVM v1 scheme. A transfer
made with the offer's memo is claimed in the KAMIYO-Transfer-* headers. Token balances on the
chain are the proof of payment.
"""

import base64
import json
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from solders.keypair import Keypair
from x402 import x402ClientSync
from x402.http import x402HTTPClientSync
from x402.mechanisms.svm import KeypairSigner
from x402.mechanisms.svm.exact import register_exact_svm_client
from x402.schemas.v1 import PaymentPayloadV1, PaymentRequiredV1

from kamiyo.mcpserver.server import build_server
from kamiyo.payments.transfer_desk import TRANSFER_EXTENSION
from kamiyo.runtime import Runtime
from kamiyo.web.app import create_app
from tests.payments.serving import svm_settings
from tests.payments.solana_chain import SOLANA_PY_WARNING_FILTERS, SolanaChain

pytestmark = [pytest.mark.anyio, *SOLANA_PY_WARNING_FILTERS]

# The free tier lacks it, so an anonymous call is asked to pay (free-tier tools answer on it).
SEARCH = "/api/v1/risk/Euler"
PRICE = 50_000


def decode(header: str) -> Any:
    return json.loads(base64.b64decode(header))


@dataclass
class Rest:
    http: httpx2.AsyncClient
    chain: SolanaChain

    def balances(self, payer: Keypair) -> tuple[int, int]:
        return self.chain.token_balance(payer.pubkey()), self.chain.token_balance(self.chain.pay_to)


@pytest.fixture
async def rest(loaded_runtime: Runtime, solana_chain: SolanaChain) -> AsyncIterator[Rest]:
    app = create_app(svm_settings(loaded_runtime, solana_chain), build_server)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app, client=("198.51.100.12", 40000))
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
            yield Rest(http, solana_chain)


def v1_client(chain: SolanaChain, payer: Keypair) -> tuple[x402ClientSync, x402HTTPClientSync]:
    """x402's client with its exact SVM schemes (v1 ones included) and its HTTP helpers."""
    client = x402ClientSync()
    client.set_spend_controls(False)
    register_exact_svm_client(client, KeypairSigner(payer), rpc_url=chain.rpc_url)
    return client, x402HTTPClientSync(client)


async def test_a_v1_client_pays_from_the_body_and_gets_a_v1_receipt(rest: Rest) -> None:
    payer = rest.chain.new_wallet(usdc=PRICE * 3)
    client, http = v1_client(rest.chain, payer)
    unpaid = await rest.http.get(SEARCH)
    assert unpaid.status_code == 402
    # As a v1 client sees it: no header it knows, the body.
    required = http.get_payment_required_response(lambda _: None, unpaid.json())
    assert isinstance(required, PaymentRequiredV1)
    (offer,) = required.accepts
    assert offer.network == "solana-devnet"  # v1's name for the chain's CAIP-2 id
    assert offer.max_amount_required == str(PRICE)
    assert offer.description
    assert len(offer.description) < 500
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        payment = client.create_payment_payload(required)
    assert isinstance(payment, PaymentPayloadV1)
    headers = http.encode_payment_signature_header(payment)
    assert list(headers) == ["X-PAYMENT"]
    before = rest.balances(payer)
    paid = await rest.http.get(SEARCH, headers=headers)
    assert paid.status_code == 200, paid.text
    assert "payment-response" not in paid.headers
    receipt = http.get_payment_settle_response(paid.headers.get)
    assert receipt.success is True
    assert receipt.network == rest.chain.network
    after = rest.balances(payer)
    assert (before[0] - after[0], after[1] - before[1]) == (PRICE, PRICE)
    # Paid again with the same payment: refused, in v1, and nothing more is charged.
    again = await rest.http.get(SEARCH, headers=headers)
    assert again.status_code == 402
    refused = PaymentRequiredV1.model_validate(again.json())
    assert refused.error == "payment_already_used"
    assert rest.balances(payer) == after


async def test_a_v2_payment_refused_gets_a_v2_body(rest: Rest) -> None:
    refused = await rest.http.get(SEARCH, headers={"PAYMENT-SIGNATURE": "%%%"})
    assert refused.status_code == 402
    body = refused.json()
    assert body["x402Version"] == 2
    assert body["error"] == "invalid_payload"
    assert decode(refused.headers["payment-required"])["accepts"] == body["accepts"]


async def test_a_transfer_is_claimed_in_headers(rest: Rest) -> None:
    payer = rest.chain.new_wallet(usdc=PRICE * 3)
    unpaid = await rest.http.get(SEARCH)
    offer = decode(unpaid.headers["payment-required"])["extensions"][TRANSFER_EXTENSION]
    assert unpaid.json()["extensions"][TRANSFER_EXTENSION]["memo"] == offer["memo"]
    claim_with = offer["claimWith"]["headers"]
    assert claim_with == {
        "signature": "KAMIYO-Transfer-Signature",
        "reference": "KAMIYO-Transfer-Reference",
    }
    message = unpaid.json()["message"]
    assert "KAMIYO-Transfer-Signature" in message
    assert "x402_payment_signature" not in message
    signature = rest.chain.transfer_with_memo(payer, rest.chain.pay_to, PRICE, offer["memo"])
    claim = {claim_with["signature"]: signature, claim_with["reference"]: offer["reference"]}
    paid = await rest.http.get(SEARCH, headers=claim)
    assert paid.status_code == 200, paid.text
    assert decode(paid.headers["payment-response"]) == {
        "success": True,
        "transaction": signature,
        "network": rest.chain.network,
        "payer": str(payer.pubkey()),
    }
    replay = await rest.http.get(SEARCH, headers=claim)
    assert replay.status_code == 402
    assert replay.json()["error"] == "REPLAY_ATTACK"


async def test_bad_transfer_headers_are_refused_with_the_reason(rest: Rest) -> None:
    too_long = await rest.http.get(SEARCH, headers={"KAMIYO-Transfer-Signature": "1" * 101})
    assert too_long.status_code == 400
    assert "KAMIYO-Transfer-Signature is longer than 100" in too_long.json()["error"]["message"]
    half = await rest.http.get(SEARCH, headers={"KAMIYO-Transfer-Reference": "abc"})
    assert half.status_code == 402
    assert half.json()["error"] == "INVALID_SIGNATURE"
