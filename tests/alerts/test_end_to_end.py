"""Alerts as a new user meets them: a team account's MCP client subscribes and makes a webhook
rule on a running ``kamiyo serve``; ``kamiyo ingest`` (another process) adds a matching
incident; the session is told (of the chain's resource and of the rule's) and the receiver gets
one signed POST. Then the same across two instances sharing PostgreSQL and Redis: every
instance's session is told, the rule's webhook arrives once. On stdio, both eras, a rule
without a webhook tells the session that listens to it."""

import datetime as dt
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, closing
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import standardwebhooks
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import TextResourceContents

from tests.alerts.receiver import Receiver
from tests.conftest import PostgresDatabases
from tests.mcpserver.conftest import run_kamiyo, running_http_server, server_env
from tests.mcpserver.test_subscriptions import Inbox, subscribe

pytestmark = pytest.mark.anyio

CHAIN_URI = "kamiyo://chains/blast/incidents"
# Generous: speed is measured in bench/alerts.py; this says "told", not "how fast".
TOLD_WITHIN_S = 15


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def settings_env(**more: str) -> dict[str, str]:
    return {
        "KAMIYO_ENVIRONMENT": "test",
        "KAMIYO_SECRET_KEY": "end-to-end-" + "k" * 40,
        "KAMIYO_WEBHOOKS_ALLOW_LOOPBACK": "true",
        **more,
    }


def team_key(tmp_path: Path, env: dict[str, str]) -> str:
    email = f"team-{os.getpid()}@example.com"
    run_kamiyo(tmp_path, "accounts", "create", email, "--tier", "team", env=env)
    return run_kamiyo(tmp_path, "keys", "create", email, env=env).stdout.strip()


def feed(tmp_path: Path, name: str) -> Path:
    """A DeFiLlama /hacks answer (the recorded format) with one incident of today on Blast."""
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    hack = {
        "date": int(today.timestamp()),
        "name": name,
        "classification": "Protocol Logic",
        "technique": "Reentrancy",
        "amount": 5_000_000,
        "chain": ["Blast"],
        "bridgeHack": False,
        "targetType": "DeFi",
        "source": "https://example.org/post-mortem",
        "returnedFunds": None,
        "defillamaId": None,
        "language": "Solidity",
    }
    path = tmp_path / "hacks.json"
    path.write_text(json.dumps([hack]))
    return path


async def connect(stack: AsyncExitStack, url: str, key: str, inbox: Inbox) -> Client:
    http = await stack.enter_async_context(
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
    )
    client = Client(
        streamable_http_client(f"{url}/mcp", http_client=http), mode="legacy", message_handler=inbox
    )
    return await stack.enter_async_context(client)


async def told(inbox: Inbox, *uris: str) -> None:
    """Each of ``uris``' updates arrives, once, in any order (a created incident also brings a
    list_changed)."""
    owed = set(uris)
    with anyio.fail_after(TOLD_WITHIN_S):
        while owed:
            message = await inbox.next(TOLD_WITHIN_S)
            if message != "list_changed":
                assert message in owed
                owed.remove(message)


async def posted(receiver: Receiver, count: int) -> None:
    with anyio.fail_after(TOLD_WITHIN_S):
        while len(receiver.posts) < count:  # noqa: ASYNC110 (the receiver's thread fills it)
            await anyio.sleep(0.02)


def verified(receiver: Receiver, secret: str) -> dict[str, Any]:
    [post] = receiver.posts
    payload: dict[str, Any] = standardwebhooks.Webhook(secret).verify(post.body, post.headers)
    return payload


async def create_rule(client: Client, receiver: Receiver | None) -> tuple[str, str | None]:
    """A rule watching Blast (with a webhook to ``receiver``): its resource and secret."""
    arguments: dict[str, Any] = {
        "filters": {"chains": ["blast"], "min_loss_usd": 1_000_000},
        "name": "Blast incidents",
    }
    if receiver is not None:
        arguments["webhook_url"] = receiver.url()
    created = await client.call_tool("create_alert", arguments)
    assert not created.is_error, created.content
    assert created.structured_content is not None
    return created.structured_content["alert"]["resource"], created.structured_content["secret"]


async def test_a_new_user_is_told_in_the_session_and_by_webhook(
    tmp_path: Path, receiver: Receiver
) -> None:
    env = settings_env()
    inbox = Inbox()
    with running_http_server(tmp_path, [], env) as url, closing(inbox):
        key = team_key(tmp_path, env)
        async with AsyncExitStack() as stack:
            client = await connect(stack, url, key, inbox)
            await subscribe(client, CHAIN_URI)
            rule_uri, secret = await create_rule(client, receiver)
            assert secret is not None
            await subscribe(client, rule_uri)
            ingested = run_kamiyo(
                tmp_path,
                "ingest",
                "--source",
                "defillama",
                "--from",
                str(feed(tmp_path, "Brand New Vault")),
                env=env,
            )
            assert "defillama" in ingested.stderr + ingested.stdout
            done = time.monotonic()
            await told(inbox, CHAIN_URI, rule_uri)
            told_s = time.monotonic() - done
            await posted(receiver, 1)
            payload = verified(receiver, secret)
            assert payload["type"] == "incident.created"
            assert payload["data"]["incident"]["protocol"] == "Brand New Vault"
            assert payload["data"]["incident"]["chains"] == ["blast"]
            # Once: nothing more arrives, and the delivery log says delivered.
            assert await inbox.rest(client, wait_s=1.5) in ([], ["list_changed"])
            assert len(receiver.posts) == 1
            listed = await client.call_tool("list_alerts", {})
            assert listed.structured_content is not None
            [rule] = listed.structured_content["alerts"]
            [delivery] = rule["deliveries"]
            assert (delivery["status"], delivery["attempts"]) == ("delivered", 1)
            assert delivery["id"] == receiver.posts[0].headers["webhook-id"]
    print(f"told {told_s:.2f} s after the ingest process ended")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_stdio_session_is_told_of_an_ingest(tmp_path: Path, mode: str) -> None:
    """``kamiyo serve`` on stdio, as a desktop host starts it (its alerts worker inside): on
    both eras, a subscribed session hears of what another process ingests."""
    env = settings_env()
    key = team_key(tmp_path, env)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "kamiyo", "serve"],
        env=server_env(tmp_path) | env | {"KAMIYO_API_KEY": key},
        cwd=tmp_path,
    )
    hacks = str(feed(tmp_path, "Stdio Vault"))
    ingest = ("ingest", "--source", "defillama", "--from", hacks)
    inbox = Inbox()
    with closing(inbox):
        async with Client(params, mode=mode, message_handler=inbox) as client:
            rule_uri, _ = await create_rule(client, None)  # no webhook: the session's only
            if mode == "auto":  # 2026-07-28: subscriptions/listen
                wanted = [CHAIN_URI, rule_uri]
                async with client.listen(resource_subscriptions=wanted) as listening:
                    run_kamiyo(tmp_path, *ingest, env=env)
                    with anyio.fail_after(TOLD_WITHIN_S):
                        heard = {await anext(listening), await anext(listening)}
                    assert heard == {ResourceUpdated(uri) for uri in wanted}
            else:
                await subscribe(client, CHAIN_URI)
                await subscribe(client, rule_uri)
                run_kamiyo(tmp_path, *ingest, env=env)
                await told(inbox, CHAIN_URI, rule_uri)
            read = await client.read_resource(rule_uri)
            [content] = read.contents
            assert isinstance(content, TextResourceContents)
            [match] = json.loads(content.text)["deliveries"]
            assert (match["status"], match["event"]) == ("notified", "incident.created")


async def test_two_instances_tell_every_session_and_deliver_once(
    tmp_path: Path,
    receiver: Receiver,
    postgres_databases: PostgresDatabases,
    redis_settings: dict[str, str],
) -> None:
    database = await postgres_databases.create()
    env = settings_env(
        KAMIYO_DATABASE_URL=database,
        KAMIYO_REDIS_URL=redis_settings["url"],
        KAMIYO_REDIS_PREFIX=redis_settings["prefix"],
    )
    inboxes = [Inbox(), Inbox()]
    with (
        running_http_server(tmp_path, [], env, log_name="a.log") as first,
        running_http_server(tmp_path, [], env, log_name="b.log") as second,
        closing(inboxes[0]),
        closing(inboxes[1]),
    ):
        key = team_key(tmp_path, env)
        async with AsyncExitStack() as stack:
            clients = [
                await connect(stack, url, key, inbox)
                for url, inbox in zip((first, second), inboxes, strict=True)
            ]
            rule_uri, secret = await create_rule(clients[0], receiver)
            assert secret is not None
            for client in clients:
                await subscribe(client, CHAIN_URI)
                await subscribe(client, rule_uri)  # the account's sessions, on both instances
            run_kamiyo(
                tmp_path,
                "ingest",
                "--source",
                "defillama",
                "--from",
                str(feed(tmp_path, "Twin Vault")),
                env=env,
            )
            for inbox in inboxes:
                await told(inbox, CHAIN_URI, rule_uri)
            await posted(receiver, 1)
            await anyio.sleep(1.5)  # both workers have polled again since
            assert verified(receiver, secret)["data"]["incident"]["protocol"] == "Twin Vault"
