"""An alert rule's resource (``kamiyo://alerts/<id>``) on both protocol eras: its account's
sessions subscribe to it and are told of the rule's matches, and of nothing else; no other
caller may subscribe to it."""

import json

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import INVALID_PARAMS, INVALID_REQUEST, TextResourceContents

from kamiyo.access.account_gate import AccountGate
from kamiyo.alerts.events import AlertMatch
from kamiyo.mcpserver.uris import RECENT_URI
from kamiyo.runtime import Runtime
from kamiyo.tiers import Tier
from tests.mcpserver.test_invalid_calls import new_key
from tests.mcpserver.test_subscriptions import (
    ERAS,
    MODERN,
    WITHIN_S,
    serving,
    subscribe,
    subscribe_on,
)

pytestmark = pytest.mark.anyio


def account_gate(runtime: Runtime) -> AccountGate:
    return AccountGate(runtime.settings.with_changes(auth={"tier_cache_s": 0}))


async def new_rule(client: Client) -> tuple[str, str]:
    """A rule without a webhook, made through the tool: its id and resource."""
    created = await client.call_tool("create_alert", {"filters": {"chains": ["blast"]}})
    assert not created.is_error, created.content
    assert created.structured_content is not None
    rule = created.structured_content["alert"]
    return rule["alert_id"], rule["resource"]


async def test_the_accounts_session_is_told_of_its_rules_matches_only(
    loaded_runtime: Runtime,
) -> None:
    account_pk, key = await new_key(loaded_runtime.sessions, Tier.TEAM)
    gate = account_gate(loaded_runtime)
    async with serving(loaded_runtime, gate=gate, credential=key) as (client, state, inbox, _):
        alert_id, uri = await new_rule(client)
        other_id, _ = await new_rule(client)
        await subscribe(client, uri)
        await state.changes.publish(
            AlertMatch(alert_id=other_id, account_pk=account_pk, incident_id="x")
        )
        # Another account's match under this id (which cannot happen: ids are unique) is not
        # told either: matches go to their own account's sessions.
        await state.changes.publish(AlertMatch(alert_id=alert_id, account_pk=-1, incident_id="y"))
        await state.changes.publish(
            AlertMatch(alert_id=alert_id, account_pk=account_pk, incident_id="z")
        )
        assert await inbox.next() == uri
        assert await inbox.rest(client) == []
        read = await client.read_resource(uri)
        [content] = read.contents
        assert isinstance(content, TextResourceContents)
        assert json.loads(content.text)["alert_id"] == alert_id


async def test_a_listen_stream_is_told_of_its_rules_matches(loaded_runtime: Runtime) -> None:
    account_pk, key = await new_key(loaded_runtime.sessions, Tier.ENTERPRISE)
    gate = account_gate(loaded_runtime)
    async with serving(loaded_runtime, MODERN, gate, key) as (client, state, _, _):
        alert_id, uri = await new_rule(client)
        async with client.listen(resource_subscriptions=[uri]) as listening:
            match = AlertMatch(alert_id=alert_id, account_pk=account_pk, incident_id="z")
            await state.changes.publish(match)
            with anyio.fail_after(WITHIN_S):
                assert await anext(listening) == ResourceUpdated(uri)


@pytest.mark.parametrize("mode", ERAS)
async def test_no_other_caller_may_subscribe_to_a_rule(loaded_runtime: Runtime, mode: str) -> None:
    _, owner_key = await new_key(loaded_runtime.sessions, Tier.TEAM)
    _, other_key = await new_key(loaded_runtime.sessions, Tier.TEAM)
    gate = account_gate(loaded_runtime)
    async with serving(loaded_runtime, gate=gate, credential=owner_key) as (owner, _, _, _):
        alert_id, uri = await new_rule(owner)
    async with serving(loaded_runtime, mode, account_gate(loaded_runtime), other_key) as (
        other,
        _,
        _,
        _,
    ):
        with pytest.raises(MCPError) as refused:
            await subscribe_on(other, [RECENT_URI, uri])
        assert refused.value.error.code == INVALID_PARAMS
        assert f"No alert rule '{alert_id}' of yours" in refused.value.error.message
        with pytest.raises(MCPError):  # nor read it
            await other.read_resource(uri)
    # The open gate knows no account: a rule's resource is nobody's there.
    async with serving(loaded_runtime, mode) as (anonymous, _, _, _):
        with pytest.raises(MCPError) as refused:
            await subscribe_on(anonymous, [uri])
        assert refused.value.error.code == INVALID_REQUEST
        assert "Alert rules belong to accounts" in refused.value.error.message
