"""Standard MCP clients accept what KAMIYO answers an unpaid call or a refusal (issue 10).

With pay per call on, an unpaid call to a tool the free tier unlocks is answered on the free
tier, with the offer to pay (``paid_offer``) in ``structuredContent`` (issue 16); one to a tool
the free tier lacks, or any unpaid priced call where anonymous access is off (the stdio servers
here: a pay-per-call-only server, so each client meets both shapes), answers ``isError: true``
with the x402 PaymentRequired there; a refusal (rate limited, …) carries ``{error, message,
…}``. Clients check ``structuredContent`` against the tool's declared output schema, some even
on errors (the TypeScript SDK v1 client and MCP Inspector 2.x do; the v2 client and the Python
SDK skip errors), so each schema must admit every shape its tool can answer, and the agent must
be able to read the price, or when to retry, from ``structuredContent`` alone (Claude Code drops
the text blocks).

No chain is needed to be asked for a payment: the server takes payments on Base Sepolia with a
made-up pay-to address, a relayer key it never uses and an RPC endpoint nothing listens on.
"""

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from mcp import Client

from kamiyo.tiers import TIERS, Tier
from tests.mcpserver.conftest import run_kamiyo, running_http_server, server_env
from tests.mcpserver.node_clients import (
    KAMIYO_STDIO,
    http_entry,
    inspector,
    sdk_client,
    stdio_entry,
)
from tests.payments.x402_runs import SEARCH_PRICE, outcome_of, private_file
from tests.x402_client.environment import PAY, client_python

NETWORK = "eip155:84532"  # Base Sepolia: KAMIYO knows its USDC
PAY_TO = "0x" + "11" * 20
RELAYER_KEY = "0x" + "ab" * 32  # never used: nothing is settled here
SEARCH = {"query": "ronin"}
PRICED = {
    "search_exploits": SEARCH,
    "get_exploit": {"exploit_id": "20230313_eulerfinance"},
    "get_exploit_stats": {"group_by": "chain"},
    "assess_protocol_risk": {"protocol_name": "Euler"},
    "check_wallet_interactions": {"wallet_address": "0x2419432344b0b892e592b2601b98eae702ba360e"},
    "screen_transaction": {"tx_hash": "0x" + "cd" * 32},
}
FREE_PER_MINUTE = 10  # the free tier's requests per minute (tiers.py)
FREE_MAX_RESULTS = TIERS[Tier.FREE].max_results
FREE_TIER_TOOLS = {"search_exploits", "get_exploit", "get_exploit_stats"}


def x402_env(folder: Path) -> dict[str, str]:
    network = {"network": NETWORK, "pay_to": PAY_TO, "rpc_urls": ["http://127.0.0.1:9"]}
    key_file = private_file(folder, "relayer.key", RELAYER_KEY)
    return {
        "KAMIYO_X402_NETWORKS": json.dumps([network]),
        "KAMIYO_X402_EVM_RELAYER_KEY_FILE": str(key_file),
        "KAMIYO_CACHE_TTL_S": "0",
    }


@pytest.fixture(scope="module")
def paying(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A server taking payments over HTTP, and the environment a stdio one gets (same data)."""
    folder = tmp_path_factory.mktemp("unpaid")
    settings = x402_env(folder)
    with running_http_server(folder, [], settings) as url:
        yield url, server_env(folder) | settings


@pytest.fixture
def http_url(paying: tuple[str, dict[str, str]]) -> str:
    return paying[0]


@pytest.fixture
def env(paying: tuple[str, dict[str, str]]) -> dict[str, str]:
    return paying[1]


def free_key(env: dict[str, str]) -> str:
    """A new free-tier account's key: its own minute window, which a test may use up."""
    folder = Path(env["KAMIYO_DATA_DIR"]).parent
    email = f"free-{uuid.uuid4().hex[:8]}@example.com"
    run_kamiyo(folder, "accounts", "create", email, "--tier", "free")
    return run_kamiyo(folder, "keys", "create", email).stdout.strip()


def says(structured: dict[str, Any], *words: str) -> bool:
    """Whether one sentence of ``structuredContent`` itself (not a text block) says ``words``."""
    sentences = [value for value in structured.values() if isinstance(value, str)]
    return any(all(word.lower() in s.lower() for word in words) for s in sentences)


def assert_asks_for_payment(result: dict[str, Any]) -> None:
    """An unpaid search as the agent sees it: isError, the offer, and the price in a sentence."""
    assert result["isError"] is True
    structured = result["structuredContent"]
    assert structured["x402Version"] == 2
    assert structured["resource"]["url"] == "mcp://tool/search_exploits"
    assert structured["accepts"][0]["amount"] == str(SEARCH_PRICE)
    assert says(structured, "$0.01"), structured


def assert_answers_with_an_offer(result: dict[str, Any]) -> None:
    """An unpaid search over HTTP: answered on the free tier, with what paying would add."""
    assert result.get("isError") is not True
    structured = result["structuredContent"]
    assert structured["incidents"], structured
    assert structured["limit"] <= FREE_MAX_RESULTS
    offer = structured["paid_offer"]
    assert (offer["tier"], offer["price_usd"], offer["amount"]) == ("free", "$0.01", "10000")
    assert offer["networks"] == [NETWORK]
    required = offer["payment_required"]
    assert required["resource"]["url"] == "mcp://tool/search_exploits"
    assert required["accepts"][0]["amount"] == str(SEARCH_PRICE)
    assert 'params._meta["x402/payment"]' in offer["how_to_pay"]


def pay_only(env: dict[str, str]) -> dict[str, str]:
    """The stdio servers' environment: pay per call only (no anonymous free tier)."""
    return env | {"KAMIYO_ALLOW_ANONYMOUS": "false"}


def assert_unpaid_answer(transport: str, result: dict[str, Any]) -> None:
    """Over stdio (pay per call only) the payment request; over HTTP the free tier's answer."""
    if transport == "stdio":
        assert_asks_for_payment(result)
    else:
        assert_answers_with_an_offer(result)


def assert_accepted(seen: dict[str, Any]) -> dict[str, Any]:
    """The TypeScript client returned the answer rather than throwing on it."""
    assert "thrown" not in seen, seen["thrown"]
    result: dict[str, Any] = seen["result"]
    return result


@pytest.mark.anyio
async def test_every_output_schema_admits_what_its_tool_answers_unpaid(http_url: str) -> None:
    """The schemas themselves, checked with a JSON Schema validator: clients need
    ``"type": "object"`` at the root, and the v2 client and Python SDK skip errors."""
    async with Client(f"{http_url}/mcp") as client:
        schemas = {t.name: t.output_schema for t in (await client.list_tools()).tools}
        for tool, arguments in PRICED.items():
            schema = schemas[tool]
            assert schema is not None, tool
            assert schema["type"] == "object", tool
            result = await client.call_tool(tool, arguments)
            assert result.structured_content is not None, tool
            if tool in FREE_TIER_TOOLS:  # answered on the free tier, with the offer
                assert result.is_error is not True, (tool, result.structured_content)
                assert "paid_offer" in result.structured_content, tool
            else:  # the free tier lacks it: a payment request
                assert result.is_error is True, tool
            errors = list(Draft202012Validator(schema).iter_errors(result.structured_content))
            assert not errors, (tool, [e.message for e in errors][:3])


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_inspector_cli_accepts_an_unpaid_answer(
    transport: str, http_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    if transport == "stdio":
        env = pay_only(env)
    entry = stdio_entry(env) if transport == "stdio" else http_entry(f"{http_url}/mcp")
    method = [
        "--method",
        "tools/call",
        "--tool-name",
        "search_exploits",
        "--tool-arg",
        "query=ronin",
    ]
    # Inspector exits 5 for a tool's isError answer, 1 when it rejects the answer.
    seen = inspector(entry, method, tmp_path, env, tool_error=transport == "stdio")
    assert_unpaid_answer(transport, seen)


@pytest.mark.parametrize("sdk", ["v1", "v2"])
@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_typescript_sdk_clients_accept_an_unpaid_answer(
    sdk: str, transport: str, http_url: str, env: dict[str, str]
) -> None:
    target = KAMIYO_STDIO if transport == "stdio" else [f"{http_url}/mcp"]
    script = ["--call", "search_exploits", json.dumps(SEARCH)]
    seen = sdk_client(sdk, transport, target, pay_only(env), *script)
    assert_unpaid_answer(transport, assert_accepted(seen))


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_x402_client_reads_the_price_of_an_unpaid_answer(
    transport: str, http_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    target = KAMIYO_STDIO if transport == "stdio" else [f"{http_url}/mcp"]
    command = [str(client_python()), str(PAY), transport, "--offer-only", "--", *target]
    proc = subprocess.run(
        command,
        env=pay_only(env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    seen = outcome_of(proc)
    result = {"isError": seen["is_error"], "structuredContent": seen["structured"]}
    assert_unpaid_answer(transport, result)
    if transport == "stdio":  # x402's own parser read the offer from structuredContent
        offer = seen["offer"]
    else:  # an answer, not a payment request: the offer to sign is in paid_offer
        assert seen["offer"] is None
        offer = seen["structured"]["paid_offer"]["payment_required"]
    assert offer["accepts"][0]["amount"] == str(SEARCH_PRICE)
    assert offer["accepts"][0]["payTo"] == PAY_TO


@pytest.mark.parametrize("sdk", ["v1", "v2"])
def test_typescript_sdk_clients_accept_a_rate_limit_refusal(
    sdk: str, http_url: str, env: dict[str, str]
) -> None:
    client_env = env | {"KAMIYO_API_KEY": free_key(env)}
    script = ["--until-refused", str(FREE_PER_MINUTE + 5), "search_exploits", json.dumps(SEARCH)]
    seen = sdk_client(sdk, "http", [f"{http_url}/mcp"], client_env, *script)
    refused = assert_accepted(seen)
    assert seen["calls"] == FREE_PER_MINUTE + 1  # the free tier's ten, then the refusal
    assert refused["isError"] is True
    structured = refused["structuredContent"]
    assert structured["error"] == "rate_limited"
    assert says(structured, "retry"), structured
    assert isinstance(structured["retry_after_seconds"], int)
