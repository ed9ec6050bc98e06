"""The keys page: a key made there is shown once and works on the REST API until it is revoked
there; the tier's seats are enforced; another account's key cannot be revoked."""

import html
import json
import re

import pytest
from sqlalchemy import select

from kamiyo.access import accounts, keys
from kamiyo.billing.onboarding import KEY_PLACEHOLDER
from kamiyo.db.tables import ApiKey
from kamiyo.tiers import TIERS, Tier
from tests.web.dashboard.conftest import Site

pytestmark = pytest.mark.anyio

NEW_KEY = re.compile(r'<pre id="new-key"[^>]*>(kmy_live_[A-Za-z0-9_-]{43})</pre>')
CONFIG = re.compile(r'<pre id="config-([a-z-]+)"[^>]*>([^<]*)</pre>', re.S)
CATALOGUE_ROUTE = "/api/v1/exploits"


def configs(page: str) -> dict[str, str]:
    return {name: html.unescape(text) for name, text in CONFIG.findall(page)}


async def create_key(site: Site, csrf: str, name: str) -> str:
    answer = await site.http.post("/dashboard/keys", data={"name": name, "csrf_token": csrf})
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    [key] = NEW_KEY.findall(answer.text)
    return str(key)


async def test_a_created_key_works_until_it_is_revoked(site: Site) -> None:
    csrf = await site.log_in("keys@example.com")
    key = await create_key(site, csrf, "laptop")
    bearer = {"Authorization": f"Bearer {key}"}
    assert (await site.browser().get(CATALOGUE_ROUTE, headers=bearer)).status_code == 200

    listed = await site.http.get("/dashboard/keys")
    assert listed.status_code == 200
    assert "laptop" in listed.text
    assert key[:17] in listed.text  # the prefix
    assert key not in listed.text  # never the key again
    async with site.sessions() as session:
        [row] = await session.scalars(select(ApiKey))
    assert row.key_hash != key

    revoked = await site.http.post(
        f"/dashboard/keys/{row.prefix}/revoke",
        headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
    )
    assert revoked.status_code == 200
    assert revoked.text.lstrip().startswith(f'<tr id="key-{row.prefix}">')  # the row, for htmx
    assert "revoked" in revoked.text
    assert (await site.browser().get(CATALOGUE_ROUTE, headers=bearer)).status_code == 401


async def test_revoking_needs_the_csrf_token_and_the_keys_owner(site: Site) -> None:
    async with site.sessions() as session:
        other = await accounts.create_account(session, "other@example.com", Tier.TEAM)
        theirs = await keys.create_key(session, other, "theirs")
        await session.commit()
    csrf = await site.log_in("mine@example.com")
    path = f"/dashboard/keys/{theirs.prefix}/revoke"
    assert (await site.http.post(path)).status_code == 403
    assert (await site.http.post(path, data={"csrf_token": csrf})).status_code == 404
    async with site.sessions() as session:
        row = await session.scalar(select(ApiKey).where(ApiKey.prefix == theirs.prefix))
    assert row is not None
    assert row.revoked_at is None


async def test_the_tiers_seats_are_enforced(site: Site) -> None:
    seats = TIERS[Tier.FREE].seats
    assert seats == 1
    csrf = await site.log_in("seats@example.com")
    await create_key(site, csrf, "first")
    page = await site.http.get("/dashboard/keys")
    assert "1 active key;" in page.text
    assert "1 is in use" in page.text
    assert "Every seat of your plan is taken" in page.text
    refused = await site.http.post("/dashboard/keys", data={"name": "second", "csrf_token": csrf})
    assert refused.status_code == 409
    assert "all its tier allows" in refused.text
    empty = await site.http.post("/dashboard/keys", data={"name": " ", "csrf_token": csrf})
    assert empty.status_code == 409
    assert "a key name needs 1 to 100 characters" in empty.text

    async with site.sessions() as session:
        [row] = await session.scalars(select(ApiKey))
    form = await site.http.post(f"/dashboard/keys/{row.prefix}/revoke", data={"csrf_token": csrf})
    assert form.status_code == 303  # without htmx: back to the list
    assert form.headers["location"] == "/dashboard/keys"
    await create_key(site, csrf, "second")  # the freed seat takes a new key


async def test_the_setup_configs_parse_and_hold_the_key_only_right_after_creation(
    site: Site,
) -> None:
    csrf = await site.log_in("setup@example.com")
    page = await site.http.get("/dashboard/setup")
    assert page.status_code == 200
    shown = configs(page.text)
    assert set(shown) == {
        "claude-desktop",
        "claude-code",
        "cursor",
        "vscode",
        "mcp-remote",
        "connector",
    }
    mcp_url = "https://kamiyo.example/mcp"
    assert shown["connector"] == mcp_url
    for prompt in ("Search for crypto exploits from the last 7 days", "risk of Aave"):
        assert prompt in html.unescape(page.text)
    assert "Application Support/Claude/claude_desktop_config.json" in page.text
    assert KEY_PLACEHOLDER in shown["claude-desktop"]

    made = await site.http.post("/dashboard/keys", data={"name": "desktop", "csrf_token": csrf})
    filled = configs(made.text)
    [new_key] = NEW_KEY.findall(made.text)
    desktop = json.loads(filled["claude-desktop"])
    entry = desktop["mcpServers"]["kamiyo"]
    assert entry["command"] == "npx"
    assert mcp_url in entry["args"]
    assert entry["env"]["KAMIYO_AUTHORIZATION"] == f"Bearer {new_key}"
    cursor = json.loads(filled["cursor"])
    assert cursor["mcpServers"]["kamiyo"] == {
        "url": mcp_url,
        "headers": {"Authorization": f"Bearer {new_key}"},
    }
    vscode = json.loads(filled["vscode"])
    assert vscode["servers"]["kamiyo"]["type"] == "http"
    assert vscode["servers"]["kamiyo"]["url"] == mcp_url
    assert new_key not in filled["vscode"]  # VS Code prompts for it (see client_setup)
    assert f"'Authorization: Bearer {new_key}'" in filled["claude-code"]
    assert filled["mcp-remote"].startswith(f"KAMIYO_AUTHORIZATION='Bearer {new_key}' npx")

    later = configs((await site.http.get("/dashboard/setup")).text)
    assert new_key not in "".join(later.values())  # never shown again
