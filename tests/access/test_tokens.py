import base64
import datetime as dt
import json

import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access import accounts, tokens
from kamiyo.config import AuthSettings
from kamiyo.db.tables import Account

pytestmark = pytest.mark.anyio


@pytest.fixture
def session(migrated_session: AsyncSession) -> AsyncSession:
    return migrated_session


SECRET = "t" * 48
SETTINGS = AuthSettings(secret_key=SECRET, jwt_audience="https://kamiyo.test/mcp", _env_file=None)


@pytest.fixture
async def account(session: AsyncSession) -> Account:
    created = await accounts.create_account(session, "erin@example.com")
    await session.commit()
    return created


def _forge(claims: dict[str, object], key: str = SECRET, algorithm: str = "HS256") -> str:
    now = dt.datetime.now(dt.UTC)
    base: dict[str, object] = {
        "sub": "1", "aud": SETTINGS.jwt_audience, "iss": SETTINGS.jwt_issuer, "iat": now,
        "exp": now + dt.timedelta(hours=1), "jti": "j1",
    }  # fmt: skip
    return jwt.encode({**base, **claims}, key, algorithm=algorithm)


async def test_issue_and_verify(session: AsyncSession, account: Account) -> None:
    token = await tokens.issue_token(session, SETTINGS, account)
    verified = await tokens.verify_token(session, SETTINGS, token)
    assert verified.pk == account.pk
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert "tier" not in payload  # the tier is read from the database, never from the token
    assert set(tokens.REQUIRED_CLAIMS) <= set(payload)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (_forge({"exp": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)}), "token expired"),
        (_forge({"nbf": dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)}), "not valid yet"),
        (_forge({"aud": "https://elsewhere/mcp"}), "another audience"),
        (_forge({"iss": "someone-else"}), "another issuer"),
        (_forge({}, key="k" * 48), "signature does not verify"),
        (_forge({}, key=SECRET * 2, algorithm="HS512"), "algorithm not allowed"),
        (jwt.encode({"sub": "1"}, "", algorithm="none"), "algorithm not allowed"),
        (_forge({"jti": None}), "lacks the 'jti' claim"),
        ("not.a.token", "malformed"),
        ("x" * 100_000, "too long"),
    ],
)
def test_bad_tokens_are_refused_each_with_its_reason(token: str, message: str) -> None:
    with pytest.raises(tokens.TokenError, match=message) as caught:
        tokens.decode_token(SETTINGS, token)
    assert token[:40] not in str(caught.value)


def test_a_tampered_payload_is_refused() -> None:
    header, payload, signature = _forge({}).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "2"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(tokens.TokenError, match="signature does not verify"):
        tokens.decode_token(SETTINGS, f"{header}.{forged_payload}.{signature}")


async def test_revoked_and_disabled(session: AsyncSession, account: Account) -> None:
    token = await tokens.issue_token(session, SETTINGS, account)
    version = account.credentials_version
    await tokens.revoke_token(session, SETTINGS, token)
    await session.commit()
    await session.refresh(account)
    assert account.credentials_version == version + 1  # running gates look again
    with pytest.raises(tokens.TokenError, match="token revoked"):
        await tokens.verify_token(session, SETTINGS, token)
    fresh = await tokens.issue_token(session, SETTINGS, account)
    account.status = "disabled"
    await session.commit()
    # The token still names its account; the gate refuses it as disabled (test_account_gate).
    assert (await tokens.verify_token(session, SETTINGS, fresh)).pk == account.pk
