"""Clients we did not write accept answers paid from a bundle, against the output schema.

A real ``kamiyo serve`` takes payments on the local chain; the Python SDK client buys a pack of
25 risk assessments with a payment signed by x402's client; then the TypeScript SDK clients (v1
and v2, which check ``structuredContent`` against the tool's output schema) pay their calls with
the bundle token, a tool argument, and are told the calls left.
"""

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from x402.schemas import PaymentRequired

from tests.mcpserver.conftest import running_http_server, server_env
from tests.mcpserver.node_clients import sdk_client
from tests.payments.evm_chain import EvmChain, sign_exact_payment
from tests.payments.serving import evm_network
from tests.payments.x402_runs import private_file

pytestmark = pytest.mark.anyio

RISK = "assess_protocol_risk"
AAVE = {"protocol_name": "Aave"}
PACK = 25


async def test_typescript_clients_accept_answers_paid_from_a_bundle(
    tmp_path: Path, evm_chain: EvmChain
) -> None:
    env = {
        "KAMIYO_X402_NETWORKS": json.dumps([evm_network(evm_chain).model_dump()]),
        "KAMIYO_X402_EVM_RELAYER_KEY_FILE": str(
            private_file(tmp_path, "relayer.key", evm_chain.relayer_key)
        ),
        "KAMIYO_CACHE_TTL_S": "0",
    }
    with running_http_server(tmp_path, [], env) as url:
        async with Client(f"{url}/mcp") as client:
            buy = AAVE | {"x402_bundle_calls": PACK}
            asked = await client.call_tool(RISK, buy)
            required = PaymentRequired.model_validate(asked.structured_content)
            signed = sign_exact_payment(evm_chain, required.accepts[0])
            meta: Any = {"x402/payment": signed.model_dump(mode="json", by_alias=True)}
            bought = await client.call_tool(RISK, buy, meta=meta)
        assert bought.structured_content is not None, bought.content
        token = bought.structured_content["bundle"]["token"]
        paying = json.dumps(AAVE | {"x402_bundle_token": token})
        left = []
        for sdk in ("v1", "v2"):
            seen = sdk_client(
                sdk, "http", [f"{url}/mcp"], server_env(tmp_path), "--call", RISK, paying
            )
            assert "thrown" not in seen, seen  # the answer matched the declared output schema
            result = seen["result"]
            assert result.get("isError") is not True, result
            left.append(result["structuredContent"]["bundle"]["remaining"])
    assert left == [PACK - 2, PACK - 3]
