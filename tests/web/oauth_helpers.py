"""A client of KAMIYO's OAuth authorization server, driven by hand as an MCP host would."""

import base64
import hashlib
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
from starlette.applications import Starlette

from kamiyo.access import accounts, keys
from kamiyo.config import DatabaseSettings, Settings
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.mcpserver.server import build_server
from kamiyo.tiers import Tier
from kamiyo.web.app import create_app
from tests.conftest import PostgresDatabases, new_database_url

# A loopback Host: the MCP endpoint's DNS-rebinding guard lets only those in.
BASE = "http://127.0.0.1:8000"
MCP_URL = BASE + "/mcp"
REDIRECT = "http://127.0.0.1:33418/callback"
HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')


def pkce() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def hidden_fields(page: str) -> dict[str, str]:
    return {name: value.replace("&amp;", "&") for name, value in HIDDEN.findall(page)}


@dataclass
class Host:
    """An MCP host's view: the app over ASGI, and an enterprise account's API key."""

    http: httpx2.AsyncClient
    key: str
    app: Starlette
    settings: Settings
    extra: dict[str, Any] = field(default_factory=dict)

    async def register(self, **metadata: Any) -> dict[str, Any]:
        body = {
            "redirect_uris": [REDIRECT],
            "client_name": "Test Host",
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        } | metadata
        response = await self.http.post("/oauth/register", json=body)
        assert response.status_code == 201, response.text
        registered: dict[str, Any] = response.json()
        return registered

    async def authorize(self, client_id: str, challenge: str, **params: str) -> httpx2.Response:
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "st-123",
            "resource": MCP_URL,
        } | params
        return await self.http.get("/oauth/authorize", params=query)

    async def consent_page(self, client_id: str, challenge: str, **params: str) -> httpx2.Response:
        sent = await self.authorize(client_id, challenge, **params)
        assert sent.status_code == 302, sent.text
        location = sent.headers["location"]
        assert location.startswith(BASE + "/oauth/authorize?consent="), location
        return await self.http.get(location)

    async def approve(
        self, page: httpx2.Response, *, key: str | None = None, decision: str = "approve"
    ) -> httpx2.Response:
        form = hidden_fields(page.text) | {"decision": decision}
        form["api_key"] = self.key if key is None else key
        return await self.http.post("/oauth/authorize", data=form)

    async def code(self, client_id: str, challenge: str) -> str:
        page = await self.consent_page(client_id, challenge)
        assert page.status_code == 200, page.text
        back = await self.approve(page)
        assert back.status_code == 302, back.text
        answer = query_of(back.headers["location"])
        assert answer["state"] == "st-123"
        return answer["code"]

    async def token(self, auth: tuple[str, str] | None = None, **form: str) -> httpx2.Response:
        if auth is None:
            return await self.http.post("/oauth/token", data=form)
        return await self.http.post("/oauth/token", data=form, auth=httpx2.BasicAuth(*auth))

    async def exchange(self, client_id: str, code: str, verifier: str) -> httpx2.Response:
        return await self.token(
            grant_type="authorization_code",
            code=code,
            redirect_uri=REDIRECT,
            client_id=client_id,
            code_verifier=verifier,
            resource=MCP_URL,
        )

    async def refresh(self, client_id: str, refresh_token: str) -> httpx2.Response:
        return await self.token(
            grant_type="refresh_token", refresh_token=refresh_token, client_id=client_id
        )

    async def tokens_for(self, client_id: str) -> dict[str, Any]:
        verifier, challenge = pkce()
        answer = await self.exchange(client_id, await self.code(client_id, challenge), verifier)
        assert answer.status_code == 200, answer.text
        issued: dict[str, Any] = answer.json()
        return issued

    async def mcp_status(self, token: str) -> int:
        """The HTTP status of an authenticated MCP initialize."""
        response = await self.http.post(
            "/mcp",
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "oauth-test", "version": "0"},
                },
            },
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json, text/event-stream",
            },
        )
        return response.status_code


def oauth_settings(database_url: str, **auth: Any) -> Settings:
    return Settings(
        database=DatabaseSettings(url=database_url),
        environment="test",
        site={"public_url": BASE},
        auth={"allow_anonymous": False, "tier_cache_s": 0} | auth,
        _env_file=None,
    )


@asynccontextmanager
async def serving_host(database_url: str, **auth: Any) -> AsyncIterator[Host]:
    settings = oauth_settings(database_url, **auth)
    app = create_app(settings, build_server, stateless=True, json_response=True)
    async with app.router.lifespan_context(app):
        engine = create_engine(database_url)
        try:
            async with session_factory(engine)() as session:
                account = await accounts.create_account(
                    session, "host@example.com", Tier.ENTERPRISE
                )
                key = (await keys.create_key(session, account, "oauth")).key
                await session.commit()
        finally:
            await engine.dispose()
        transport = httpx2.ASGITransport(app=app, client=("198.51.100.9", 40000))
        async with httpx2.AsyncClient(transport=transport, base_url=BASE) as http:
            yield Host(http, key, app, settings)


@asynccontextmanager
async def module_host(
    backend: str, folder: Path, databases: PostgresDatabases, **auth: Any
) -> AsyncIterator[Host]:
    """One served app for a test module on ``backend`` (tests register their own clients)."""
    url = await new_database_url(backend, folder, databases)
    async with serving_host(url, **auth) as served:
        served.extra["url"] = url
        yield served
