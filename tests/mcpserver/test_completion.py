"""completion/complete through the SDK's own client: resource-template and prompt arguments."""

import logging
from collections.abc import AsyncIterator

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import Completion, PromptReference, ResourceTemplateReference

from kamiyo.access.gate import OpenGate
from kamiyo.mcpserver.completion import MAX_VALUES
from kamiyo.mcpserver.server import build_server
from kamiyo.mcpserver.uris import (
    ADDRESS_TEMPLATE,
    CHAIN_TEMPLATE,
    EXPLOIT_TEMPLATE,
    PROTOCOL_TEMPLATE,
)
from kamiyo.runtime import Runtime
from kamiyo.service.state import ServerState
from tests.mcpserver.test_content import fresh_runtime

pytestmark = pytest.mark.anyio
__all__ = ["fresh_runtime"]  # a fixture of test_content, used here too

Ref = PromptReference | ResourceTemplateReference


async def _complete(client: Client, ref: Ref, name: str, value: str) -> Completion:
    completion = (await client.complete(ref, {"name": name, "value": value})).completion
    assert len(completion.values) <= MAX_VALUES
    assert completion.total is not None
    assert completion.has_more is (completion.total > len(completion.values))
    return completion


def template(uri: str) -> ResourceTemplateReference:
    return ResourceTemplateReference(uri=uri)


async def test_the_server_declares_completions(client: Client) -> None:
    assert client.server_capabilities.completions is not None


@pytest.mark.parametrize(
    "ref",
    [template(PROTOCOL_TEMPLATE), PromptReference(name="protocol_due_diligence")],
    ids=["template", "prompt"],
)
@pytest.mark.parametrize("typed", ["eul", "EUL", "Euler F"])
async def test_protocol_names_by_prefix_in_any_case(client: Client, ref: Ref, typed: str) -> None:
    completion = await _complete(client, ref, "protocol", typed)
    assert completion.values == ["Euler Finance"]
    assert (completion.total, completion.has_more) == (1, False)


async def test_protocol_names_are_sorted_and_all_start_with_the_prefix(client: Client) -> None:
    completion = await _complete(client, template(PROTOCOL_TEMPLATE), "protocol", "c")
    assert completion.values == sorted(completion.values, key=str.lower)
    assert all(v.lower().startswith("c") for v in completion.values)
    assert {"Curve LlamaLend", "CurveBurner", "coinbase"} <= set(completion.values)


@pytest.mark.parametrize(
    "ref",
    [template(EXPLOIT_TEMPLATE), PromptReference(name="incident_brief")],
    ids=["template", "prompt"],
)
async def test_incident_ids_newest_first_capped_at_the_specs_hundred(
    client: Client, ref: Ref
) -> None:
    completion = await _complete(client, ref, "exploit_id", "2023")
    assert len(completion.values) == MAX_VALUES
    assert completion.total is not None
    assert completion.total > MAX_VALUES
    assert completion.has_more is True
    assert all(v.startswith("2023") for v in completion.values)
    days = [v[:8] for v in completion.values]  # an id starts with its incident's date
    assert days == sorted(days, reverse=True)
    exact = await _complete(client, ref, "exploit_id", "20230313_euler")
    assert exact.values == ["20230313_eulerfinance"]


async def test_an_empty_prefix_offers_the_newest_and_counts_them_all(client: Client) -> None:
    completion = await _complete(client, template(EXPLOIT_TEMPLATE), "exploit_id", "")
    assert len(completion.values) == MAX_VALUES
    everything = await client.call_tool("get_exploit_stats", {})
    assert everything.structured_content is not None
    assert completion.total == everything.structured_content["incidents"]


async def test_chain_slugs_by_slug_name_or_alias(client: Client) -> None:
    ref = template(CHAIN_TEMPLATE)
    assert (await _complete(client, ref, "chain", "bs")).values == ["bsc"]
    assert "ethereum" in (await _complete(client, ref, "chain", "ETH")).values
    assert "avalanche" in (await _complete(client, ref, "chain", "avax")).values  # an alias


@pytest.mark.parametrize("typed", ["%", "_", "\\", "e%"])
async def test_wildcards_are_plain_text(client: Client, typed: str) -> None:
    completion = await _complete(client, template(PROTOCOL_TEMPLATE), "protocol", typed)
    assert completion.values == []


@pytest.mark.parametrize(
    ("ref", "argument"),
    [
        (template(ADDRESS_TEMPLATE), "address"),  # addresses are not offered
        (PromptReference(name="wallet_safety_check"), "address"),
        (PromptReference(name="test_prompt_with_arguments"), "arg1"),  # not a prompt of ours
        (template("test://template/{id}/data"), "id"),  # nor a template
        (PromptReference(name="incident_brief"), "protocol"),  # not an argument of that prompt
        (template(CHAIN_TEMPLATE), "protocol"),
    ],
)
async def test_nothing_to_offer_is_an_empty_completion(
    client: Client, ref: Ref, argument: str
) -> None:
    """As the SDK answers when there is no completion, and the conformance suite expects."""
    completion = await _complete(client, ref, argument, "e")
    assert (completion.values, completion.total, completion.has_more) == ([], 0, False)


async def test_a_huge_value_is_refused_with_its_bound(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    huge = "e" * 10**6
    with pytest.raises(MCPError, match="Completion values are at most 256 characters") as caught:
        await client.complete(template(PROTOCOL_TEMPLATE), {"name": "protocol", "value": huge})
    assert caught.value.code == -32602
    assert len(caught.value.error.message) < 400
    assert all("e" * 1_000 not in record.getMessage() for record in caplog.records)


@pytest.fixture
async def delayed_client(fresh_runtime: Runtime) -> AsyncIterator[Client]:
    """A server that does not delay anyone (the open gate) on the store with today's incident."""
    state = ServerState(settings=fresh_runtime.settings, gate=OpenGate(50), runtime=fresh_runtime)
    async with Client(build_server(state)) as client:
        yield client


async def test_completion_offers_nothing_the_free_tier_may_not_see_yet(
    delayed_client: Client,
) -> None:
    """Completion asks nobody who is calling: today's incident is not offered to anyone."""
    ids = await _complete(delayed_client, template(EXPLOIT_TEMPLATE), "exploit_id", "")
    assert ids.values == ["20250101_testprotocol"]
    names = await _complete(delayed_client, template(PROTOCOL_TEMPLATE), "protocol", "test")
    assert names.values == ["TestProtocol"]  # from the older incident
    listed = await delayed_client.read_resource("kamiyo://protocols/testprotocol/incidents")
    assert '"count":2' in listed.contents[0].text.replace(" ", "")  # type: ignore[union-attr]
