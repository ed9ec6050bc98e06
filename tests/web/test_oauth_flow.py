"""The OAuth flow as a remote MCP host walks it: discovery from the 401, registration,
consent, tokens, a tool call, refresh with rotation, revocation."""

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import select

from kamiyo.access import oauth_grants
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.db.oauth import OAuthClient
from tests.conftest import BACKENDS, PostgresDatabases
from tests.web.oauth_helpers import BASE, MCP_URL, Host, module_host, pkce

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module", params=BACKENDS)
async def host(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_databases: PostgresDatabases,
) -> AsyncIterator[Host]:
    folder = tmp_path_factory.mktemp("oauth")
    async with module_host(request.param, folder, postgres_databases) as served:
        yield served


async def _tier_over_mcp(host: Host, token: str) -> str:
    """get_usage's tier, called through the SDK's client with the token in the header."""
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=host.app, client=("198.51.100.9", 40000)),
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
        )
        client = await stack.enter_async_context(
            Client(streamable_http_client(MCP_URL, http_client=http), mode="legacy")
        )
        result = await client.call_tool("get_usage", {})
        assert not result.is_error, result
        assert result.structured_content is not None
        tier: str = result.structured_content["tier"]
        return tier


async def test_a_host_discovers_registers_consents_and_calls_a_tool(host: Host) -> None:
    # The 401 names the resource metadata, which names this server as its authorization server.
    refused = await host.http.post("/mcp", json={}, headers={"Accept": "application/json"})
    assert refused.status_code == 401
    challenge = refused.headers["www-authenticate"]
    found = re.search(r'resource_metadata="([^"]+)"', challenge)
    assert found is not None
    resource = (await host.http.get(found.group(1))).json()
    assert resource["resource"] == MCP_URL
    assert resource["authorization_servers"] == [BASE]
    metadata = (await host.http.get(BASE + "/.well-known/oauth-authorization-server")).json()
    assert metadata["issuer"] == BASE
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert metadata["client_id_metadata_document_supported"] is True
    assert set(metadata["token_endpoint_auth_methods_supported"]) == {
        "none",
        "client_secret_post",
        "client_secret_basic",
    }
    assert metadata["registration_endpoint"] == BASE + "/oauth/register"
    assert metadata["revocation_endpoint"] == BASE + "/oauth/revoke"

    client_id = (await host.register())["client_id"]
    verifier, code_challenge = pkce()
    page = await host.consent_page(client_id, code_challenge)
    assert page.status_code == 200
    assert "Test Host" in page.text
    assert "127.0.0.1:33418" in page.text
    assert "api_key" in page.text  # no dashboard session yet: the page asks for a key
    assert page.headers["cache-control"] == "no-store"
    back = await host.approve(page)
    assert back.status_code == 302
    answer = dict(
        pair.split("=", 1) for pair in back.headers["location"].split("?", 1)[1].split("&")
    )
    assert answer["state"] == "st-123"
    issued = (await host.exchange(client_id, answer["code"], verifier)).json()
    assert issued["token_type"] == "Bearer"
    assert issued["expires_in"] == host.settings.auth.jwt_ttl_s
    # The tier comes from the account at call time, not from the token.
    assert await _tier_over_mcp(host, issued["access_token"]) == "enterprise"

    # Refresh rotates: the new pair works, the old refresh token is refused.
    renewed = await host.refresh(client_id, issued["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    second = renewed.json()
    assert second["refresh_token"] != issued["refresh_token"]
    assert await host.mcp_status(second["access_token"]) == 200

    # Revoking the access token (RFC 7009) stops it at once; the grant's refresh still works.
    revoked = await host.http.post(
        "/oauth/revoke", data={"token": second["access_token"], "client_id": client_id}
    )
    assert revoked.status_code == 200
    assert await host.mcp_status(second["access_token"]) == 401
    third = (await host.refresh(client_id, second["refresh_token"])).json()
    assert await host.mcp_status(third["access_token"]) == 200

    # Presenting a retired refresh token again (a stolen copy) ends the whole grant.
    reused = await host.refresh(client_id, issued["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert await host.mcp_status(third["access_token"]) == 401
    assert (await host.refresh(client_id, third["refresh_token"])).status_code == 400


async def test_a_confidential_client_authenticates_with_its_hashed_secret(host: Host) -> None:
    registered = await host.register(token_endpoint_auth_method="client_secret_basic")
    client_id, secret = registered["client_id"], registered["client_secret"]
    engine = create_engine(host.extra["url"])
    try:
        async with session_factory(engine)() as session:
            stored = await session.scalar(
                select(OAuthClient.secret_hash).where(OAuthClient.client_id == client_id)
            )
    finally:
        await engine.dispose()
    assert stored is not None
    assert secret not in stored
    verifier, challenge = pkce()
    code = await host.code(client_id, challenge)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": "http://127.0.0.1:33418/callback",
        "client_id": client_id,
        "code_verifier": verifier,
    }
    for wrong in ("not-the-secret", stored):  # the stored hash is no secret either
        refused = await host.token(auth=(client_id, wrong), **form)
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_client"
    accepted = await host.token(auth=(client_id, secret), **form)
    assert accepted.status_code == 200, accepted.text


async def test_an_accounts_grants_are_listed_and_revoked(host: Host) -> None:
    client_id = (await host.register(client_name="Listed Host"))["client_id"]
    issued = await host.tokens_for(client_id)
    engine = create_engine(host.extra["url"])
    try:
        async with session_factory(engine)() as session:
            listed = await oauth_grants.list_grants(session, 1)
            [grant] = [g for g in listed if g.client_id == client_id]
            assert grant.client_name == "Listed Host"
            assert await oauth_grants.revoke_client(session, 1, client_id) == 1
            await session.commit()
            left = await oauth_grants.list_grants(session, 1)
            assert client_id not in {g.client_id for g in left}
    finally:
        await engine.dispose()
    assert await host.mcp_status(issued["access_token"]) == 401
    assert (await host.refresh(client_id, issued["refresh_token"])).status_code == 400
