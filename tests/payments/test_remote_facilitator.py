"""Settling through an external facilitator: x402's own facilitator, served over HTTP on
loopback with the spec's /verify, /settle and /supported, settling on the local anvil chain.

KAMIYO holds no relayer key here; the facilitator does.
"""

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from x402 import x402FacilitatorSync
from x402.mechanisms.evm import FacilitatorWeb3Signer
from x402.mechanisms.evm.exact import ExactEvmFacilitatorScheme
from x402.schemas import PaymentPayload, PaymentRequired, PaymentRequirements

from kamiyo.runtime import Runtime
from tests.mcpserver.conftest import free_port
from tests.payments.evm_chain import EvmChain, sign_exact_payment
from tests.payments.serving import evm_settings, paying_server

pytestmark = pytest.mark.anyio

SPEC_REQUEST_KEYS = {"x402Version", "paymentPayload", "paymentRequirements"}


class Facilitator:
    """x402's facilitator behind HTTP, recording the bodies it is sent."""

    def __init__(self, chain: EvmChain) -> None:
        signer = FacilitatorWeb3Signer(private_key=chain.relayer_key, rpc_url=chain.rpc_url)
        self.facilitator = x402FacilitatorSync()
        self.facilitator.register([chain.network], ExactEvmFacilitatorScheme(signer))
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.app = Starlette(
            routes=[
                Route("/verify", self.verify, methods=["POST"]),
                Route("/settle", self.settle, methods=["POST"]),
                Route("/supported", self.supported, methods=["GET"]),
            ]
        )

    async def _parsed(self, request: Request, path: str) -> tuple[Any, Any]:
        body = await request.json()
        self.requests.append((path, body))
        payload = PaymentPayload.model_validate(body["paymentPayload"])
        return payload, PaymentRequirements.model_validate(body["paymentRequirements"])

    async def verify(self, request: Request) -> JSONResponse:
        payload, requirements = await self._parsed(request, "/verify")
        result = self.facilitator.verify(payload, requirements)
        return JSONResponse(result.model_dump(mode="json", by_alias=True, exclude_none=True))

    async def settle(self, request: Request) -> JSONResponse:
        payload, requirements = await self._parsed(request, "/settle")
        result = self.facilitator.settle(payload, requirements)
        return JSONResponse(result.model_dump(mode="json", by_alias=True, exclude_none=True))

    async def supported(self, request: Request) -> JSONResponse:
        supported = self.facilitator.get_supported()
        return JSONResponse(supported.model_dump(mode="json", by_alias=True, exclude_none=True))


@pytest.fixture
def facilitator_url(evm_chain: EvmChain) -> Iterator[tuple[str, Facilitator]]:
    facilitator = Facilitator(evm_chain)
    port = free_port()
    config = uvicorn.Config(facilitator.app, host="127.0.0.1", port=port, log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the facilitator did not start")
            thread.join(0.01)
        yield f"http://127.0.0.1:{port}", facilitator
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
async def served(
    loaded_runtime: Runtime, evm_chain: EvmChain, facilitator_url: tuple[str, Facilitator]
) -> AsyncIterator[Any]:
    url, _ = facilitator_url
    settings = evm_settings(
        loaded_runtime, evm_chain, x402={"facilitator_url": url, "evm_relayer_key": None}
    )
    async with paying_server(loaded_runtime, settings) as (client, _):
        yield client


async def test_a_payment_settles_through_the_facilitator(
    served: Any, evm_chain: EvmChain, facilitator_url: tuple[str, Facilitator]
) -> None:
    _, facilitator = facilitator_url
    unpaid = await served.call_tool("search_exploits", {"query": "euler"})
    offer = PaymentRequired.model_validate(unpaid.structured_content).accepts[0]
    payer = evm_chain.new_payer()
    payment = sign_exact_payment(evm_chain, offer, payer)
    before = evm_chain.balance_of(payer.address)
    meta: Any = {"x402/payment": payment.model_dump(mode="json", by_alias=True)}
    paid = await served.call_tool("search_exploits", {"query": "euler"}, meta=meta)
    assert paid.is_error is not True, paid.content
    assert before - evm_chain.balance_of(payer.address) == int(offer.amount)
    assert (paid.meta or {})["x402/payment-response"]["success"] is True
    # Verify before the tool, settle after it, each in the spec's request shape.
    assert [path for path, _ in facilitator.requests] == ["/verify", "/settle"]
    for _, body in facilitator.requests:
        assert set(body) == SPEC_REQUEST_KEYS
        assert body["paymentRequirements"]["payTo"] == evm_chain.pay_to
