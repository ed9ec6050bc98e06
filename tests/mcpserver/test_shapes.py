"""Every shape a tool puts in structuredContent is admitted by its declared output schema, and
says in itself what happened and what to do (some hosts show the model nothing else)."""

from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest
from mcp import Client
from mcp_types import CallToolResult, TextContent
from pydantic import SecretStr
from solders.keypair import Keypair

from kamiyo.access.account_gate import AccountGate
from kamiyo.access.gate import OpenGate
from kamiyo.chains import BASE_SEPOLIA, SOLANA_DEVNET, AcceptedNetwork
from kamiyo.config import Settings
from kamiyo.mcpserver.server import build_server
from kamiyo.payments.cashier import open_cashier
from kamiyo.runtime import Runtime
from kamiyo.service.state import ServerState
from tests.mcpserver.conftest import free_port

pytestmark = pytest.mark.anyio

PRICED = {
    "search_exploits": {"query": "euler"},
    "get_exploit": {"exploit_id": "20230313_eulerfinance"},
    "find_exploit_by_tx": {"tx_hash": "0x" + "ab" * 32},
    "get_exploit_stats": {},
    "assess_protocol_risk": {"protocol_name": "Euler"},
    "check_wallet_interactions": {"wallet_address": "0x" + "12" * 20},
    "screen_transaction": {"tx_hash": "0x" + "cd" * 32},
}


def pay_per_call_settings(runtime: Runtime) -> Settings:
    """x402 on Base Sepolia and Solana devnet, with paying by transfer; no chain is needed to
    be asked for a payment (the RPC URLs point at a closed loopback port)."""
    dead = f"http://127.0.0.1:{free_port()}"
    networks = [
        AcceptedNetwork(network=BASE_SEPOLIA, pay_to="0x" + "22" * 20, rpc_urls=[dead]),
        AcceptedNetwork(network=SOLANA_DEVNET, pay_to=str(Keypair().pubkey()), rpc_urls=[dead]),
    ]
    return runtime.settings.with_changes(
        x402={
            "networks": networks,
            "evm_relayer_key": SecretStr("0x" + "11" * 32),
            "svm_fee_payer_key": SecretStr(str(Keypair())),
        },
        site={"upgrade_url": "https://kamiyo.example/pricing"},
        answers={"cache_ttl_s": 0},
        # Pay per call only: an unpaid call to any priced tool is asked to pay (with anonymous
        # access on, the free tier's tools would answer instead: test_free_tier_offer.py).
        auth={"allow_anonymous": False},
    )


@pytest.fixture
async def paying(loaded_runtime: Runtime) -> AsyncIterator[Client]:
    """An anonymous caller of a server that takes payments."""
    settings = pay_per_call_settings(loaded_runtime)
    cashier = open_cashier(
        settings.x402, secret_key=settings.auth.secret_key, upgrade_url=settings.site.upgrade_url
    )
    gate = AccountGate(settings, cashier)
    state = ServerState(settings=settings, gate=gate, runtime=loaded_runtime)
    async with gate.serving(loaded_runtime.sessions), Client(build_server(state)) as client:
        yield client


async def _schemas(client: Client) -> dict[str, dict[str, Any]]:
    return {t.name: t.output_schema or {} for t in (await client.list_tools()).tools}


def _admitted(schema: dict[str, Any], structured: Any) -> None:
    jsonschema.Draft202012Validator(schema).validate(structured)


async def test_an_unpaid_call_is_admitted_and_names_its_price(paying: Client) -> None:
    schemas = await _schemas(paying)
    for tool, arguments in PRICED.items():
        result = await paying.call_tool(tool, arguments)
        assert result.is_error is True
        required = result.structured_content
        assert required is not None
        _admitted(schemas[tool], required)
        assert required["x402Version"] == 2
        assert {offer["network"] for offer in required["accepts"]} == {BASE_SEPOLIA, SOLANA_DEVNET}
        amount = required["accepts"][0]["amount"]
        assert required["message"].startswith(f"{tool} costs $"), required["message"]
        assert "x402" in required["message"]
        assert "https://kamiyo.example/pricing" in required["message"]
        # The spec's binding: the same JSON as the first text block.
        first = result.content[0]
        assert isinstance(first, TextContent)
        assert '"x402Version":2' in first.text
        assert amount in first.text


async def test_paying_by_transfer_adds_its_arguments_only_when_it_is_on(
    paying: Client, client: Client
) -> None:
    on = {t.name: t.input_schema for t in (await paying.list_tools()).tools}
    off = {t.name: t.input_schema for t in (await client.list_tools()).tools}
    for tool in PRICED:
        assert {"x402_payment_signature", "x402_payment_reference"} <= set(on[tool]["properties"])
        assert not {"x402_payment_signature", "x402_payment_reference"} & set(
            off[tool]["properties"]
        )
    refused = await client.call_tool(
        "get_exploit", {"exploit_id": "20230313_eulerfinance", "x402_payment_signature": "x"}
    )
    assert refused.is_error is True
    assert "Unknown argument(s) for get_exploit: x402_payment_signature" in _text(refused)


async def test_answers_and_problems_are_admitted_when_payments_are_off(client: Client) -> None:
    schemas = await _schemas(client)
    for tool, arguments in PRICED.items():
        answer = await client.call_tool(tool, arguments)
        assert answer.is_error is not True, _text(answer)
        _admitted(schemas[tool], answer.structured_content)
        assert all("x402Version" not in str(b) for b in schemas[tool]["anyOf"])
    bad = await client.call_tool("search_exploits", {"limit": 0})
    assert bad.structured_content is not None
    _admitted(schemas["search_exploits"], bad.structured_content)
    assert bad.structured_content["error"] == "invalid_arguments"
    assert "limit" in bad.structured_content["message"]
    missing = await client.call_tool("get_exploit", {"exploit_id": "19990101_nothing"})
    assert missing.structured_content is not None
    _admitted(schemas["get_exploit"], missing.structured_content)
    assert missing.structured_content["error"] == "not_found"


async def test_a_rate_limit_says_when_to_retry_in_structured_content(
    loaded_runtime: Runtime,
) -> None:
    settings = loaded_runtime.settings.with_changes(
        auth={"tier_cache_s": 0}, answers={"cache_ttl_s": 0}
    )
    gate = AccountGate(settings)
    state = ServerState(settings=settings, gate=gate, runtime=loaded_runtime)
    async with gate.serving(loaded_runtime.sessions), Client(build_server(state)) as client:
        schemas = await _schemas(client)
        results = [await client.call_tool("get_exploit_stats", {}) for _ in range(11)]
    refused = results[-1]
    assert refused.is_error is True
    problem = refused.structured_content
    assert problem is not None
    _admitted(schemas["get_exploit_stats"], problem)
    assert problem["error"] == "rate_limited"
    assert problem["limit"] == "requests_per_minute"
    assert 1 <= problem["retry_after_seconds"] <= 60
    assert f"Retry in {problem['retry_after_seconds']} s" in problem["message"]


async def test_a_result_capped_by_the_tier_says_the_cap_and_how_to_raise_it(
    loaded_runtime: Runtime,
) -> None:
    settings = loaded_runtime.settings.with_changes(auth={"tier_cache_s": 0})
    gate = AccountGate(settings)
    state = ServerState(settings=settings, gate=gate, runtime=loaded_runtime)
    async with gate.serving(loaded_runtime.sessions), Client(build_server(state)) as client:
        capped = await client.call_tool("search_exploits", {"limit": 100})
        asked_for_five = await client.call_tool("search_exploits", {"limit": 5})
    result = capped.structured_content
    assert result is not None
    assert (result["count"], result["truncated"]) == (10, True)
    assert "free tier returns at most 10" in result["note"]
    assert "personal tier returns up to 50" in result["note"]
    # A caller's own limit is not the plan's doing: no note.
    assert asked_for_five.structured_content is not None
    assert asked_for_five.structured_content["note"] is None


async def test_prompts_name_only_the_tools_the_caller_can_use(loaded_runtime: Runtime) -> None:
    settings = loaded_runtime.settings.with_changes(site={"upgrade_url": "https://k.example/up"})
    free_gate = AccountGate(settings)
    free = ServerState(settings=settings, gate=free_gate, runtime=loaded_runtime)
    open_ = ServerState(settings=settings, gate=OpenGate(50), runtime=loaded_runtime)
    async with free_gate.serving(loaded_runtime.sessions), Client(build_server(free)) as client:
        diligence = _prompt(await client.get_prompt("protocol_due_diligence", {"protocol": "Aave"}))
        wallet = _prompt(await client.get_prompt("wallet_safety_check", {"address": "0xabc"}))
    assert "Call assess_protocol_risk" not in diligence
    assert "assess_protocol_risk needs the personal tier; upgrade at https://k.example/up" in (
        diligence
    )
    assert "Call check_wallet_interactions" not in wallet
    assert "check_wallet_interactions needs the team tier" in wallet
    async with Client(build_server(open_)) as client:
        diligence = _prompt(await client.get_prompt("protocol_due_diligence", {"protocol": "Aave"}))
        wallet = _prompt(await client.get_prompt("wallet_safety_check", {"address": "0xabc"}))
    assert "Call assess_protocol_risk" in diligence
    assert "Call check_wallet_interactions" in wallet


async def test_find_exploit_by_tx_over_mcp(client: Client) -> None:
    parity = "0x9dbf0326a03a2a3719c27be4fa69aacc9857fd231a8d9dcaede4bb083def75ec"
    found = await client.call_tool("find_exploit_by_tx", {"tx_hash": parity})
    assert found.structured_content is not None
    assert [i["id"] for i in found.structured_content["incidents"]] == ["20170719_parity-multisig"]
    bad = await client.call_tool("find_exploit_by_tx", {"tx_hash": "0x12"})
    assert bad.is_error is True
    assert "0x followed by 64 hex digits (EVM) or a base58" in _text(bad)


def _text(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def _prompt(result: Any) -> str:
    content = result.messages[0].content
    assert isinstance(content, TextContent)
    return content.text
