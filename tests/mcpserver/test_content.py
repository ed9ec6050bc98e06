"""Resources and prompts through the SDK's own client."""

import json

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import TextContent, TextResourceContents

from kamiyo.access.gate import OpenGate
from kamiyo.mcpserver.server import build_server
from kamiyo.runtime import Runtime
from kamiyo.service.state import ServerState

pytestmark = pytest.mark.anyio


async def test_resources_are_listed(client: Client) -> None:
    resources = {str(r.uri) for r in (await client.list_resources()).resources}
    assert "kamiyo://exploits/recent" in resources
    templates = {
        t.uri_template for t in (await client.list_resource_templates()).resource_templates
    }
    assert "kamiyo://exploits/{exploit_id}" in templates


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
