"""Where this server's OAuth tokens work: only on /mcp, the resource they are issued for
(RFC 8707); /sse and REST refuse them with a 401 saying so, and take API keys and operator
JWTs. The protected-resource metadata agrees: only /mcp's names this authorization server."""

from collections.abc import AsyncIterator

import pytest

from kamiyo.access import accounts, tokens
from kamiyo.db.engine import create_engine, session_factory
from tests.web.oauth_helpers import BASE, MCP_URL, Host, serving_host

pytestmark = pytest.mark.anyio

METADATA = "/.well-known/oauth-protected-resource"


@pytest.fixture(scope="module")
async def host(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Host]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('resources')}/resources.db"
    async with serving_host(url) as served:
        served.extra["url"] = url
        yield served


async def _operator_jwt(host: Host) -> str:
    engine = create_engine(host.extra["url"])
    try:
        async with session_factory(engine)() as session:
            account = await accounts.require_account(session, "host@example.com")
            issued = await tokens.issue_token(session, host.settings.auth, account)
            await session.commit()
            return issued
    finally:
        await engine.dispose()


async def test_only_the_mcp_document_names_this_authorization_server(host: Host) -> None:
    mcp = (await host.http.get(METADATA + "/mcp")).json()
    assert mcp["resource"] == MCP_URL
    assert mcp["authorization_servers"] == [BASE]
    for path in ("/sse", ""):
        document = (await host.http.get(METADATA + path)).json()
        assert document["resource"] == BASE + path
        assert "authorization_servers" not in document, path


async def test_an_oauth_token_works_on_mcp_and_is_refused_elsewhere(host: Host) -> None:
    client_id = (await host.register())["client_id"]
    access = (await host.tokens_for(client_id))["access_token"]
    assert await host.mcp_status(access) == 200
    bearer = {"Authorization": f"Bearer {access}"}
    rest = await host.http.get("/api/v1/stats", headers=bearer)
    assert rest.status_code == 401
    error = rest.json()["error"]
    assert error["code"] == "invalid_token"
    assert f"is for {MCP_URL}" in error["message"]
    assert "on the REST API send an API key" in error["message"]
    assert f'resource_metadata="{BASE}{METADATA}"' in rest.headers["www-authenticate"]
    for answer in (
        await host.http.get("/sse", headers=bearer),
        await host.http.post("/messages/?session_id=x", json={}, headers=bearer),
    ):
        assert answer.status_code == 401
        assert "on /sse send an API key" in answer.json()["error_description"]
        assert 'error="invalid_token"' in answer.headers["www-authenticate"]
        assert f"{METADATA}/sse" in answer.headers["www-authenticate"]


async def test_api_keys_and_operator_jwts_work_on_rest_and_sse(host: Host) -> None:
    for credential in (host.key, await _operator_jwt(host)):
        bearer = {"Authorization": f"Bearer {credential}"}
        assert (await host.http.get("/api/v1/stats", headers=bearer)).status_code == 200
        # Past the guard: the SSE transport itself answers an unknown session.
        posted = await host.http.post("/messages/?session_id=x", json={}, headers=bearer)
        assert posted.status_code not in (401, 403), posted.text
        assert await host.mcp_status(credential) == 200
