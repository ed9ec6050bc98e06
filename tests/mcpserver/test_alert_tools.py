"""The alert-rule tools over the SDK's in-memory client, on the account gate: a team key
creates, lists, tests and deletes its rules; the tier's cap and the tiers without rules are
refused in one line; nobody reaches another account's rule."""

import datetime as dt
import json
from typing import Any

import pytest
from mcp import Client
from mcp_types import TextResourceContents
from sqlalchemy import select

from kamiyo.alerts import secrets
from kamiyo.alerts.events import TEST_EVENT
from kamiyo.db.alerts import AlertDelivery, AlertRule
from kamiyo.runtime import Runtime
from kamiyo.tiers import TIERS, Tier
from tests.mcpserver.test_invalid_calls import new_key, serving
from tests.mcpserver.test_tools import structured, text_of

pytestmark = pytest.mark.anyio

WEBHOOK = "https://hooks.example.com/kamiyo"
EULER = {"protocols": ["Euler Finance"], "chains": ["Ethereum"], "min_loss_usd": 1_000_000}


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    return structured(await client.call_tool(tool, arguments))


async def problem(client: Client, tool: str, **arguments: Any) -> tuple[str, str]:
    result = await client.call_tool(tool, arguments)
    assert result.is_error is True, result.structured_content
    assert result.structured_content is not None
    message = text_of(result)
    assert "\n" not in message
    assert result.structured_content["message"] == message
    return result.structured_content["error"], message


async def test_a_team_key_creates_lists_tests_and_deletes(loaded_runtime: Runtime) -> None:
    _, key = await new_key(loaded_runtime.sessions, Tier.TEAM)
    async with serving(loaded_runtime, credential=key) as (client, _):
        created = await call(
            client, "create_alert", filters=EULER, webhook_url=WEBHOOK, name="Euler watch"
        )
        rule = created["alert"]
        assert rule["alert_id"].startswith("alr_")
        assert rule["filters"]["protocols"] == ["euler"]  # resolved to its name key
        assert rule["filters"]["chains"] == ["ethereum"]
        assert (rule["name"], rule["status"], rule["webhook_url"]) == (
            "Euler watch",
            "active",
            WEBHOOK,
        )
        assert created["secret"].startswith("whsec_")
        assert "store it now; it is not shown again" in created["message"]
        assert "up to 3 rules" in created["message"]

        listed = await call(client, "list_alerts")
        assert listed["cap"] == TIERS[Tier.TEAM].alert_rules
        [shown] = listed["alerts"]
        assert shown["alert_id"] == rule["alert_id"]
        assert created["secret"] not in str(listed)  # shown once, at creation

        queued = await call(client, "test_alert", alert_id=rule["alert_id"])
        assert queued["delivery_id"].startswith("msg_")
        assert "list_alerts" in queued["message"]
        [delivery] = (await call(client, "list_alerts"))["alerts"][0]["deliveries"]
        assert (delivery["id"], delivery["event"], delivery["status"]) == (
            queued["delivery_id"],
            TEST_EVENT,
            "pending",
        )

        deleted = await call(client, "delete_alert", alert_id=rule["alert_id"])
        assert deleted["cancelled_deliveries"] == 1
        assert (await call(client, "list_alerts"))["alerts"] == []
        error, message = await problem(client, "delete_alert", alert_id=rule["alert_id"])
        assert error == "not_found"
        assert "list_alerts" in message


async def test_the_secret_is_stored_sealed_and_opens_with_the_server_key(
    loaded_runtime: Runtime,
) -> None:
    _, key = await new_key(loaded_runtime.sessions, Tier.TEAM)
    async with serving(loaded_runtime, credential=key) as (client, _):
        created = await call(client, "create_alert", filters={}, webhook_url=WEBHOOK)
    async with loaded_runtime.sessions() as session:
        row = await session.scalar(
            select(AlertRule).where(AlertRule.id == created["alert"]["alert_id"])
        )
    assert row is not None
    assert row.secret is not None
    assert created["secret"] not in row.secret
    secret_key = loaded_runtime.settings.auth.secret_key
    assert secrets.unseal(secret_key, row.secret) == created["secret"]
    assert created["alert"]["name"] == "every incident"


async def test_a_rule_without_a_webhook_tells_the_accounts_sessions(
    loaded_runtime: Runtime,
) -> None:
    _, key = await new_key(loaded_runtime.sessions, Tier.ENTERPRISE)
    async with serving(loaded_runtime, credential=key) as (client, _):
        created = await call(client, "create_alert", filters={"chains": ["ethereum"]})
        rule = created["alert"]
        assert (rule["webhook_url"], created["secret"]) == (None, None)
        assert rule["resource"] == f"kamiyo://alerts/{rule['alert_id']}"
        assert f"subscribe to {rule['resource']}" in created["message"]
        error, message = await problem(client, "test_alert", alert_id=rule["alert_id"])
        assert error == "invalid_arguments"
        assert "no webhook to test" in message
        assert rule["resource"] in message
        # Its resource is the rule as list_alerts shows it.
        read = await client.read_resource(rule["resource"])
        content = read.contents[0]
        assert isinstance(content, TextResourceContents)
        assert json.loads(content.text) == (await call(client, "list_alerts"))["alerts"][0]


async def test_the_team_cap_is_refused_naming_the_tier_that_keeps_more(
    loaded_runtime: Runtime,
) -> None:
    _, key = await new_key(loaded_runtime.sessions, Tier.TEAM)
    async with serving(loaded_runtime, credential=key) as (client, _):
        for _ in range(TIERS[Tier.TEAM].alert_rules):
            await call(client, "create_alert", filters={}, webhook_url=WEBHOOK)
        error, message = await problem(client, "create_alert", filters={}, webhook_url=WEBHOOK)
    assert error == "invalid_arguments"
    assert "the team tier keeps 3 alert rules and this account has 3" in message
    assert "upgrade to enterprise (100 rules)" in message


@pytest.mark.parametrize("tier", [Tier.FREE, Tier.PERSONAL])
async def test_tiers_without_rules_are_refused_by_the_gate(
    loaded_runtime: Runtime, tier: Tier
) -> None:
    _, key = await new_key(loaded_runtime.sessions, tier)
    async with serving(loaded_runtime, credential=key) as (client, _):
        calls: list[tuple[str, dict[str, Any]]] = [
            ("create_alert", {"filters": {}, "webhook_url": WEBHOOK}),
            ("list_alerts", {}),
            ("delete_alert", {"alert_id": "alr_x"}),
        ]
        for tool, arguments in calls:
            result = await client.call_tool(tool, arguments)
            assert result.is_error is True
            assert result.structured_content is not None
            assert result.structured_content["error"] == "forbidden"
            assert result.structured_content["required_tier"] == "team"


async def test_another_accounts_rule_is_not_found(loaded_runtime: Runtime) -> None:
    _, owner_key = await new_key(loaded_runtime.sessions, Tier.TEAM)
    _, other_key = await new_key(loaded_runtime.sessions, Tier.TEAM)
    async with serving(loaded_runtime, credential=owner_key) as (client, _):
        alert_id = (await call(client, "create_alert", filters={}, webhook_url=WEBHOOK))["alert"][
            "alert_id"
        ]
    async with serving(loaded_runtime, credential=other_key) as (client, _):
        assert (await call(client, "list_alerts"))["alerts"] == []
        for tool in ("delete_alert", "test_alert"):
            error, _message = await problem(client, tool, alert_id=alert_id)
            assert error == "not_found"
    async with loaded_runtime.sessions() as session:  # still there, with no test queued
        rule_pk = await session.scalar(select(AlertRule.pk).where(AlertRule.id == alert_id))
        assert rule_pk is not None
        queued = await session.scalars(
            select(AlertDelivery).where(AlertDelivery.rule_pk == rule_pk)
        )
        assert queued.all() == []


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"filters": {}, "webhook_url": "ftp://example.com/x"}, "webhook_url: the webhook URL"),
        ({"filters": {}, "webhook_url": "https://u:p@example.com/"}, "user name or password"),
        (
            {"filters": {"protocols": ["Eulr Finance"]}, "webhook_url": WEBHOOK},
            "did you mean Euler Finance?",
        ),
        ({"filters": {"protocols": ["--"]}, "webhook_url": WEBHOOK}, "has no letters or digits"),
        ({"filters": {"chains": ["narnia"]}}, "filters: chains.0"),
        ({"filters": {"surprise": 1}}, "filters: surprise"),
        ({}, "filters: Field required"),
    ],
)
async def test_bad_rules_are_refused_in_one_line(
    loaded_runtime: Runtime, arguments: dict[str, Any], says: str
) -> None:
    _, key = await new_key(loaded_runtime.sessions, Tier.TEAM)
    async with serving(loaded_runtime, credential=key) as (client, _):
        error, message = await problem(client, "create_alert", **arguments)
        assert error == "invalid_arguments"
        assert message.startswith("Invalid arguments for create_alert: ")
        assert says in message
        assert (await call(client, "list_alerts"))["alerts"] == []  # nothing was made


async def test_a_protocol_with_no_incident_yet_is_watched_with_a_note(
    loaded_runtime: Runtime,
) -> None:
    _, key = await new_key(loaded_runtime.sessions, Tier.TEAM)
    async with serving(loaded_runtime, credential=key) as (client, _):
        created = await call(
            client, "create_alert", filters={"protocols": ["Zzyzxq Quorbl"]}, webhook_url=WEBHOOK
        )
    assert created["alert"]["filters"]["protocols"] == ["zzyzxqquorbl"]
    [note] = created["notes"]
    assert "watches for the first one" in note


async def test_the_tools_are_listed_with_what_they_change(loaded_runtime: Runtime) -> None:
    _, key = await new_key(loaded_runtime.sessions, Tier.TEAM)
    async with serving(loaded_runtime, credential=key) as (client, _):
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    hints = {}
    for name in ("create_alert", "list_alerts", "delete_alert", "test_alert", "get_exploit"):
        annotations = tools[name].annotations
        assert annotations is not None
        hints[name] = (annotations.read_only_hint, annotations.destructive_hint)
    assert hints == {
        "create_alert": (False, False),
        "list_alerts": (True, None),
        "delete_alert": (False, True),
        "test_alert": (False, False),
        "get_exploit": (True, None),
    }


async def test_list_shows_an_expired_monitor_as_expired(loaded_runtime: Runtime) -> None:
    account_pk, key = await new_key(loaded_runtime.sessions, Tier.TEAM)
    async with serving(loaded_runtime, credential=key) as (client, _):
        alert_id = (await call(client, "create_alert", filters={}, webhook_url=WEBHOOK))["alert"][
            "alert_id"
        ]
        async with loaded_runtime.sessions() as session:
            row = await session.scalar(select(AlertRule).where(AlertRule.id == alert_id))
            assert row is not None
            assert row.account_pk == account_pk
            row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
            await session.commit()
        listed = await call(client, "list_alerts")
        assert listed["alerts"][0]["status"] == "expired"
        assert "1 expired" in listed["message"]
        error, message = await problem(client, "test_alert", alert_id=alert_id)
        assert (error, "expired" in message) == ("invalid_arguments", True)
