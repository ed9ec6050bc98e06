"""Oversized names, URIs and prompt arguments: refused before any lookup, with a short echo and
the bound said, and never logged in full by anyone (our code, the SDK), at any level."""

import logging
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import EmptyResult, Request, TextContent

from kamiyo.mcpserver.bounds import MAX_NAME, MAX_PROMPT_ARGUMENT, MAX_URI, SHOWN

pytestmark = pytest.mark.anyio

HUGE = "x" * 4_000_000


@pytest.fixture(autouse=True)
def _every_record(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


def _assert_nothing_logged_the_value(caplog: pytest.LogCaptureFixture) -> None:
    """Checked on the records as logged, before any bounding handler could cut them."""
    for record in caplog.records:
        assert "x" * (SHOWN + 1) not in record.getMessage(), record.name
        extras = [v for k, v in vars(record).items() if isinstance(v, str) and k != "message"]
        assert all(len(value) < 1_000 for value in extras), record.name


def _assert_short_refusal(message: str, what: str, limit: int) -> None:
    assert f"{what} are at most {limit:,} characters" in message
    assert "has 4,000,0" in message  # how long it was (4,000,000 and some)
    assert len(message) < 600  # the first characters said back, not four megabytes


async def test_an_oversized_resource_uri_is_refused_before_matching(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    for uri in ("kamiyo://" + HUGE, "kamiyo://exploits/" + HUGE):
        with pytest.raises(MCPError) as caught:
            await client.read_resource(uri)
        assert caught.value.code == -32602
        _assert_short_refusal(caught.value.error.message, "Resource URIs", MAX_URI)
        assert caught.value.error.data is None  # not the URI again, in full
    _assert_nothing_logged_the_value(caplog)


async def test_an_oversized_prompt_name_is_refused(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(MCPError) as caught:
        await client.get_prompt(HUGE, {})
    assert caught.value.code == -32602
    _assert_short_refusal(caught.value.error.message, "Prompt names", MAX_NAME)
    _assert_nothing_logged_the_value(caplog)


async def test_an_oversized_prompt_argument_is_refused(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """It would be said back in the prompt, and every tool it leads to refuses it anyway."""
    with pytest.raises(MCPError) as caught:
        await client.get_prompt("incident_brief", {"exploit_id": HUGE})
    assert caught.value.code == -32602
    message = caught.value.error.message
    _assert_short_refusal(message, "Prompt arguments", MAX_PROMPT_ARGUMENT)
    assert "exploit_id has" in message
    _assert_nothing_logged_the_value(caplog)


async def test_an_oversized_tool_name_is_a_short_tool_error(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    result = await client.call_tool(HUGE, {})
    assert result.is_error is True
    [content] = result.content
    assert isinstance(content, TextContent)
    _assert_short_refusal(content.text, "Tool names", MAX_NAME)
    assert "Tools: health_check" in content.text
    _assert_nothing_logged_the_value(caplog)


async def test_names_within_the_bounds_still_work(client: Client) -> None:
    result = await client.get_prompt("incident_brief", {"exploit_id": "a" * MAX_PROMPT_ARGUMENT})
    assert result.messages
    with pytest.raises(MCPError, match=r"Unknown prompt: " + "p" * MAX_NAME + r"\. Prompts:"):
        await client.get_prompt("p" * MAX_NAME, {})
    unknown = await client.call_tool("t" * MAX_NAME, {})
    assert unknown.is_error is True


async def test_an_oversized_method_is_not_said_back_in_full(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """The SDK answers an unknown method with the method itself as the error's data."""
    unknown = Request[dict[str, Any] | None, str](method=HUGE, params=None)
    with pytest.raises(MCPError) as caught:
        await client.session.send_request(unknown, EmptyResult)
    assert caught.value.code == -32601
    _assert_short_refusal(caught.value.error.message, "Method names", MAX_NAME)
    assert caught.value.error.data is None
    _assert_nothing_logged_the_value(caplog)
