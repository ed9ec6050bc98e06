"""An external facilitator that settles on chain and drops the connection before answering:
the payment stays pending, and the retry is answered as paid once the chain shows it used.

The facilitator is x402's own, behind a plain HTTP server on loopback that closes the
connection of a /settle without a response once the settlement is mined (anvil).
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from x402 import x402FacilitatorSync
from x402.mechanisms.evm import FacilitatorWeb3Signer
from x402.mechanisms.evm.exact import ExactEvmFacilitatorScheme
from x402.schemas import PaymentPayload, PaymentRequirements

from kamiyo.config import X402Settings
from kamiyo.payments.cashier import Cashier
from kamiyo.payments.facilitators import RemoteFacilitator
from kamiyo.payments.outcomes import Answered, Declined, Hold, NotSettled, RawPayment
from kamiyo.payments.prices import Price
from kamiyo.payments.settlements import CONFIRMING
from tests.payments.evm_chain import EvmChain, sign_exact_payment
from tests.payments.test_evm_settlement import AMOUNT, TOOL, journal_db, network_of
from tests.served import on_loopback

pytestmark = pytest.mark.anyio
__all__ = ["journal_db"]


@contextmanager
def silent_facilitator(chain: EvmChain) -> Iterator[str]:
    """x402's facilitator over HTTP whose /settle settles and then never answers."""
    signer = FacilitatorWeb3Signer(private_key=chain.relayer_key, rpc_url=chain.rpc_url)
    facilitator = x402FacilitatorSync()
    facilitator.register([chain.network], ExactEvmFacilitatorScheme(signer))

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, result: Any) -> None:
            body = json.dumps(result.model_dump(mode="json", by_alias=True, exclude_none=True))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def do_GET(self) -> None:
            self._answer(facilitator.get_supported())

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            payload = PaymentPayload.model_validate(body["paymentPayload"])
            requirements = PaymentRequirements.model_validate(body["paymentRequirements"])
            if self.path.endswith("/verify"):
                self._answer(facilitator.verify(payload, requirements))
                return
            settled = facilitator.settle(payload, requirements)
            assert settled.success, settled
            self.close_connection = True  # settled on chain; the answer is lost on the way

        def log_message(self, format: str, *args: object) -> None:
            return None

    with on_loopback(Handler) as url:
        yield url


async def test_a_settlement_whose_answer_the_facilitator_lost_is_answered_on_retry(
    evm_chain: EvmChain, journal_db: async_sessionmaker[AsyncSession]
) -> None:
    chain = evm_chain
    pay_to = chain.new_payer(0).address
    payer = chain.new_payer()
    before = chain.balance_of(payer.address)
    with silent_facilitator(chain) as url:
        x402 = X402Settings(networks=[network_of(chain, pay_to)], facilitator_url=url)
        cashier = Cashier(x402, RemoteFacilitator(url), secret_key=SecretStr("k" * 32))
        await cashier.start()
        try:
            quote = cashier.quote(TOOL, Price(AMOUNT), None, f"mcp://tool/{TOOL}")
            signed = sign_exact_payment(chain, quote.required.accepts[0], payer)
            payment = RawPayment(signed.model_dump(mode="json", by_alias=True, exclude_none=True))
            hold = await cashier.accept(payment, quote, journal_db)
            assert isinstance(hold, Hold), hold
            answer = {"paid": "answer"}
            assert await cashier.settle(hold, answer, journal_db) == NotSettled(CONFIRMING)

            answered = await cashier.accept(payment, quote, journal_db)
            assert isinstance(answered, Answered), answered
            assert answered.answer == answer
            again = await cashier.accept(payment, quote, journal_db)
            assert isinstance(again, Declined)
            assert again.reason == "payment_already_used"
        finally:
            await cashier.stop()
    assert before - chain.balance_of(payer.address) == AMOUNT
    assert chain.balance_of(pay_to) == AMOUNT
