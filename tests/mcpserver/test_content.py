"""Resources and prompts through the SDK's own client."""

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import TextContent, TextResourceContents
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kamiyo.access.account_gate import AccountGate
from kamiyo.access.gate import OpenGate
from kamiyo.config import AuthSettings, Settings
from kamiyo.intel.models import TransactionFact
from kamiyo.mcpserver.server import build_server
from kamiyo.runtime import Runtime
from kamiyo.service.state import ServerState
from tests.intel.test_store import ATTACKER, ingest, report

pytestmark = pytest.mark.anyio

EULER = "20230313_eulerfinance"
EULER_ATTACKER = "0x5f259d0b76665c337c6104145894f4d1d2758b8c"


async def test_resources_are_listed(client: Client) -> None:
    resources = {str(r.uri) for r in (await client.list_resources()).resources}
    assert resources == {"kamiyo://exploits/recent"}
    templates = (await client.list_resource_templates()).resource_templates
    assert {t.uri_template: t.name for t in templates} == {
        "kamiyo://exploits/{exploit_id}": "exploit",
        "kamiyo://protocols/{protocol}/incidents": "protocol_incidents",
        "kamiyo://chains/{chain}/incidents": "chain_incidents",
        "kamiyo://addresses/{address}/incidents": "address_incidents",
        "kamiyo://alerts/{alert_id}": "alert_rule",
    }
    assert all(t.description and t.mime_type == "application/json" for t in templates)


async def _listed(client: Client, uri: str) -> dict[str, Any]:
    contents = (await client.read_resource(uri)).contents
    assert isinstance(contents[0], TextResourceContents)
    assert contents[0].uri == uri
    listed: dict[str, Any] = json.loads(contents[0].text)
    dates = [i["date"] for i in listed["incidents"]]
    assert dates == sorted(dates, reverse=True)  # newest first
    assert listed["count"] == len(dates)
    return listed


@pytest.mark.parametrize(
    "uri",
    [
        "kamiyo://protocols/euler/incidents",
        "kamiyo://protocols/Euler%20Finance/incidents",  # any spelling of its name
        f"kamiyo://addresses/{EULER_ATTACKER}/incidents",
        f"kamiyo://addresses/{EULER_ATTACKER.upper().replace('0X', '0x')}/incidents",
    ],
)
async def test_a_protocols_or_addresss_incidents(client: Client, uri: str) -> None:
    listed = await _listed(client, uri)
    assert [i["id"] for i in listed["incidents"]] == [EULER]


async def test_a_protocol_resource_lists_only_that_protocols_incidents(client: Client) -> None:
    """Exactly the incidents going by the name, not those whose names merely contain it."""
    curve = {
        i["id"] for i in (await _listed(client, "kamiyo://protocols/curve/incidents"))["incidents"]
    }
    searched = await client.call_tool("search_exploits", {"query": "curve", "limit": 100})
    assert searched.structured_content is not None
    found = {i["id"] for i in searched.structured_content["incidents"]}
    assert len(curve) == 1  # Curve itself; not CurveBurner, Curve LlamaLend, ...
    assert curve < found
    balancer = await _listed(client, "kamiyo://protocols/balancer/incidents")
    assert balancer["count"] == 3  # all of them, whatever the version in the name


async def test_a_chains_incidents(client: Client) -> None:
    listed = await _listed(client, "kamiyo://chains/eth/incidents")  # an alias of ethereum
    assert (listed["count"], listed["truncated"]) == (50, True)
    assert all("ethereum" in i["chains"] for i in listed["incidents"])
    assert (
        listed["incidents"]
        == (await _listed(client, "kamiyo://chains/ethereum/incidents"))["incidents"]
    )


async def test_a_valid_key_without_incidents_is_an_empty_list(client: Client) -> None:
    """A resource to subscribe to before anything happened to it."""
    listed = await _listed(client, "kamiyo://protocols/neverhackedyet/incidents")
    assert (listed["count"], listed["incidents"]) == (0, [])


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("kamiyo://chains/nochain/incidents", "a chain: acala, algorand"),
        ("kamiyo://protocols/%20/incidents", "a protocol's name"),
        ("kamiyo://addresses/0x12/incidents", "an address (EVM 0x"),
    ],
)
async def test_a_key_that_does_not_parse_names_no_resource(
    client: Client, uri: str, said: str
) -> None:
    with pytest.raises(MCPError, match="names no resource: its key must be") as caught:
        await client.read_resource(uri)
    assert said in caught.value.error.message
    assert caught.value.code == -32602
    assert caught.value.error.data == {"uri": uri}


async def test_reads_carry_private_cache_hints_and_lists_public_ones(client: Client) -> None:
    """2026-07-28: a read answers by tier (private, as long as the server keeps answers);
    the lists are the same for everyone."""
    assert client.protocol_version == "2026-07-28"
    read = await client.read_resource("kamiyo://chains/bsc/incidents")
    assert (read.ttl_ms, read.cache_scope) == (30_000, "private")
    for listed in (
        await client.list_tools(),
        await client.list_prompts(),
        await client.list_resources(),
        await client.list_resource_templates(),
    ):
        assert (listed.ttl_ms, listed.cache_scope) == (3_600_000, "public")


@pytest.fixture
async def fresh_runtime(migrated_sessions: async_sessionmaker[AsyncSession]) -> Runtime:
    """A store of two TestProtocol incidents on Ethereum that list ATTACKER: one of
    2025-01-01, one of today (which the free tier's 24-hour delay hides)."""
    async with migrated_sessions() as session:
        today = dt.datetime.now(dt.UTC).date()
        attack = [TransactionFact(chain="ethereum", hash="0x" + "ef" * 32)]  # another event
        todays = report(source_id="today", date=today, transactions=attack)
        await ingest(session, [report(), todays])
    engine = migrated_sessions.kw["bind"]
    assert isinstance(engine, AsyncEngine)
    settings = Settings(auth=AuthSettings(secret_key="g" * 48, tier_cache_s=0), _env_file=None)
    return Runtime(settings, engine, migrated_sessions)


@pytest.fixture
async def free_client(fresh_runtime: Runtime) -> AsyncIterator[Client]:
    """An anonymous caller (the free tier) behind the account gate, on the fresh store."""
    gate = AccountGate(fresh_runtime.settings)
    state = ServerState(settings=fresh_runtime.settings, gate=gate, runtime=fresh_runtime)
    async with gate.serving(fresh_runtime.sessions), Client(build_server(state)) as client:
        yield client


@pytest.mark.parametrize(
    "uri",
    [
        "kamiyo://protocols/testprotocol/incidents",
        "kamiyo://chains/ethereum/incidents",
        f"kamiyo://addresses/{ATTACKER}/incidents",
    ],
)
async def test_the_free_tier_delay_hides_todays_incident(
    fresh_runtime: Runtime, free_client: Client, uri: str
) -> None:
    delayed = await _listed(free_client, uri)
    assert [i["date"] for i in delayed["incidents"]] == ["2025-01-01"]
    state = ServerState(settings=fresh_runtime.settings, gate=OpenGate(50), runtime=fresh_runtime)
    async with Client(build_server(state)) as open_client:
        everything = await _listed(open_client, uri)
    assert len(everything["incidents"]) == 2


async def test_recent_exploits_resource(client: Client) -> None:
    contents = (await client.read_resource("kamiyo://exploits/recent")).contents
    assert isinstance(contents[0], TextResourceContents)
    recent = json.loads(contents[0].text)
    dates = [i["date"] for i in recent["incidents"]]
    assert len(dates) == 20
    assert dates == sorted(dates, reverse=True)


async def test_exploit_resource_template(client: Client) -> None:
    contents = (await client.read_resource("kamiyo://exploits/20230313_eulerfinance")).contents
    assert isinstance(contents[0], TextResourceContents)
    assert json.loads(contents[0].text)["protocol"] == "Euler Finance"


async def test_unknown_exploit_resource_is_not_found(client: Client) -> None:
    """The protocol's resource-not-found error, not an internal error (2026-07-28: -32602)."""
    with pytest.raises(MCPError, match="No incident with id '19990101_nothing'") as caught:
        await client.read_resource("kamiyo://exploits/19990101_nothing")
    assert caught.value.code == -32602
    assert caught.value.error.data == {"uri": "kamiyo://exploits/19990101_nothing"}


async def test_unknown_exploit_resource_is_not_found_for_older_clients(
    loaded_runtime: Runtime,
) -> None:
    """Up to 2025-11-25 the code for a missing resource is -32002."""
    state = ServerState(
        settings=loaded_runtime.settings, gate=OpenGate(max_results=50), runtime=loaded_runtime
    )
    async with Client(build_server(state), mode="legacy") as legacy:
        assert legacy.protocol_version < "2026-07-28"
        with pytest.raises(MCPError, match="No incident with id") as caught:
            await legacy.read_resource("kamiyo://exploits/19990101_nothing")
    assert caught.value.code == -32002


@pytest.mark.parametrize(
    ("prompt", "arguments", "expected"),
    [
        ("protocol_due_diligence", {"protocol": "Euler"}, "assess_protocol_risk"),
        ("incident_brief", {"exploit_id": "20230313_eulerfinance"}, "get_exploit"),
        ("wallet_safety_check", {"address": "0xabc"}, "check_wallet_interactions"),
    ],
)
async def test_prompts(
    client: Client, prompt: str, arguments: dict[str, str], expected: str
) -> None:
    listed = {p.name for p in (await client.list_prompts()).prompts}
    assert prompt in listed
    result = await client.get_prompt(prompt, arguments)
    content = result.messages[0].content
    assert isinstance(content, TextContent)
    assert expected in content.text
    assert next(iter(arguments.values())) in content.text


async def test_unknown_prompt_is_invalid_params(client: Client) -> None:
    with pytest.raises(MCPError, match=r"Unknown prompt: nope\. Prompts: incident_brief") as caught:
        await client.get_prompt("nope", {})
    assert caught.value.code == -32602
