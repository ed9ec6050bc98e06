"""``kamiyo accounts clients`` / ``revoke-client``: the OAuth clients an account let in, and
``kamiyo oauth prune``, on the default SQLite database of each test's own data folder (and on
PostgreSQL)."""

import asyncio
import datetime as dt

import pytest

from kamiyo.access import accounts, oauth_grants, tokens
from kamiyo.config import Settings
from kamiyo.db.oauth import OAuthClient
from kamiyo.runtime import open_runtime
from tests.test_cli import kamiyo

EMAIL = "clients@example.com"
CLIENT_ID = "https://host.example/client.json"
RESOURCE = "https://kamiyo.example/mcp"


async def _grant(settings: Settings) -> str:
    """A grant made as the token endpoint makes one; its access token."""
    async with open_runtime(settings) as runtime, runtime.sessions() as session:
        account = await accounts.require_account(session, EMAIL)
        request = oauth_grants.CodeRequest(
            account.pk, CLIENT_ID, "Host Example", "https://host.example/cb", True, "c" * 43,
            RESOURCE, [],
        )  # fmt: skip
        raw = await oauth_grants.create_code(session, request)
        code = await oauth_grants.find_code(session, raw)
        assert code is not None
        issued = await oauth_grants.exchange_code(session, settings.auth, code)
        await session.commit()
        return issued.access_token


async def _works(settings: Settings, token: str) -> bool:
    async with open_runtime(settings) as runtime, runtime.sessions() as session:
        try:
            await tokens.verify_token(session, settings.auth, token, (RESOURCE,))
        except tokens.TokenError:
            return False
        return True


def test_list_and_revoke_an_accounts_clients() -> None:
    assert kamiyo("accounts", "create", EMAIL)[0] == 0
    settings = Settings()
    token = asyncio.run(_grant(settings))
    code, out, err = kamiyo("accounts", "clients", EMAIL)
    assert code == 0, err
    assert "Host Example" in out
    assert CLIENT_ID in out
    assert asyncio.run(_works(settings, token))
    code, _, err = kamiyo("accounts", "revoke-client", EMAIL, CLIENT_ID)
    assert code == 0, err
    assert not asyncio.run(_works(settings, token))
    code, out, _ = kamiyo("accounts", "clients", EMAIL)
    assert CLIENT_ID not in out
    code, _, err = kamiyo("accounts", "revoke-client", EMAIL, CLIENT_ID)
    assert code == 2
    assert "has not granted access" in err
    assert kamiyo("accounts", "clients", "nobody@example.com")[0] == 2


async def _revoked_grant_and_stale_client(settings: Settings) -> None:
    await _grant(settings)
    async with open_runtime(settings) as runtime, runtime.sessions() as session:
        account = await accounts.require_account(session, EMAIL)
        await oauth_grants.revoke_client(session, account.pk, CLIENT_ID)
        session.add(
            OAuthClient(
                client_id="never-used",
                secret_hash=None,
                client_metadata={"redirect_uris": ["https://host.example/cb"]},
                created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=90),
            )
        )
        await session.commit()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_prune_deletes_revoked_tokens_and_unused_clients_and_says_so(
    backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "postgresql":
        monkeypatch.setenv("KAMIYO_DATABASE_URL", request.getfixturevalue("postgres_url_for_cli"))
    assert kamiyo("accounts", "create", EMAIL)[0] == 0
    asyncio.run(_revoked_grant_and_stale_client(Settings()))
    code, out, err = kamiyo("oauth", "prune")
    assert code == 0, err
    assert "Pruning OAuth state (unused clients older than 30 days)" in err
    assert "access tokens: 1 deleted" in err
    assert "refresh tokens: 1 deleted" in err
    assert "clients: 1 deleted" in err
    assert "total" in out
    code, out, err = kamiyo("oauth", "prune", "--stale-client-days", "1")
    assert code == 0, err
    assert "clients: 0 deleted" in err  # nothing left to do: a second run finds nothing
    assert kamiyo("oauth", "prune", "--stale-client-days", "0")[0] == 2
