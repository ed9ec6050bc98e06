"""The x402 MCP extension binding (org.x402/payment) and the tool-result binding, both eras.

The SDK's own ``mcp.Client`` is the client: on 2026-07-28 with the x402 extension declared
(a claim for the ``payment_required`` result type, as the SDK lets a client extension claim
one), on 2026-07-28 without it, and with the legacy initialize handshake. Payments are signed
by x402's own EVM client scheme and settled on anvil.
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

import pytest
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp_types import CallToolResult, Result, TextContent
from pydantic import Field
from x402.schemas import PaymentRequired

from kamiyo.access.account_gate import AccountGate
from kamiyo.mcpserver.payment_binding import X402_EXTENSION
from kamiyo.mcpserver.server import build_server
from kamiyo.runtime import Runtime
from kamiyo.service.state import ServerState
from tests.payments.evm_chain import EvmChain, sign_exact_payment
from tests.payments.serving import cashier_for, evm_settings

pytestmark = pytest.mark.anyio

SEARCH = {"query": "euler"}
MODERN = "2026-07-28"


class PaymentRequiredResult(Result):
    result_type: Literal["payment_required"] = "payment_required"
    payment_required: dict[str, Any] = Field(alias="paymentRequired")


class X402Client(ClientExtension):
    """What an x402-aware 2026 client declares: the extension, and the result it understands."""

    identifier = X402_EXTENSION

    def __init__(self) -> None:
        self.claimed: list[PaymentRequiredResult] = []

    def claims(self) -> Sequence[ResultClaim[Any]]:
        return [
            ResultClaim(
                result_type="payment_required", model=PaymentRequiredResult, resolve=self._resolve
            )
        ]

    async def _resolve(self, result: PaymentRequiredResult, ctx: ClaimContext) -> CallToolResult:
        # A paying client would sign here; the test only notes what arrived.
        self.claimed.append(result)
        # The SDK checks what a resolver returns against the tool's output schema, which admits
        # a PaymentRequired.
        return CallToolResult(
            content=[TextContent(type="text", text="payment required")],
            structured_content=result.payment_required,
            is_error=True,
        )


@asynccontextmanager
async def client_of(
    runtime: Runtime, chain: EvmChain, mode: str, extensions: Sequence[ClientExtension] = ()
) -> AsyncIterator[Client]:
    settings = evm_settings(runtime, chain)
    gate = AccountGate(settings, cashier_for(settings))
    state = ServerState(settings=settings, gate=gate, runtime=runtime)
    server = build_server(state)
    async with (
        gate.serving(runtime.sessions),
        Client(server, mode=mode, extensions=list(extensions)) as client,
    ):
        yield client


async def test_a_2026_client_advertising_the_extension_gets_payment_required(
    loaded_runtime: Runtime, evm_chain: EvmChain
) -> None:
    x402 = X402Client()
    async with client_of(loaded_runtime, evm_chain, "auto", [x402]) as client:
        # Found through server/discover, where the server advertises the extension.
        assert X402_EXTENSION in (client.server_capabilities.extensions or {})
        await client.call_tool("search_exploits", SEARCH)
        (claimed,) = x402.claimed
        required = PaymentRequired.model_validate(claimed.payment_required)
        assert required.x402_version == 2
        assert required.resource is not None
        assert required.resource.url == "mcp://tool/search_exploits"
        # The paid retry is the same in both bindings: _meta in, receipt in _meta out.
        payment = sign_exact_payment(evm_chain, required.accepts[0])
        sent: Any = {
            "x402/payment": payment.model_dump(mode="json", by_alias=True, exclude_none=True)
        }
        paid = await client.call_tool("search_exploits", SEARCH, meta=sent)
        assert paid.is_error is not True, paid.content
        assert paid.result_type == "complete"
        assert (paid.meta or {})["x402/payment-response"]["success"] is True
        assert len(x402.claimed) == 1


@pytest.mark.parametrize("mode", [MODERN, "legacy"])
async def test_other_clients_keep_the_tool_result_binding(
    loaded_runtime: Runtime, evm_chain: EvmChain, mode: str
) -> None:
    async with client_of(loaded_runtime, evm_chain, mode) as client:
        result = await client.call_tool("search_exploits", SEARCH)
        assert result.is_error is True
        assert result.structured_content is not None
        assert PaymentRequired.model_validate(result.structured_content).accepts
        assert result.result_type == "complete"
