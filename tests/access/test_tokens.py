import base64
import datetime as dt
import json
import time

import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access import accounts, tokens
from kamiyo.access.account_gate import AccountGate
from kamiyo.access.gate import Call, Refusal, RefusalReason
from kamiyo.config import AuthSettings, Settings
from kamiyo.db.bounds import INTEGER_MAX
from kamiyo.db.tables import Account
from kamiyo.service.catalogue import target

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


# Correctly signed, with claims no token of ours carries (issue 11) ---------------------------

HUGE_PK = str(INTEGER_MAX + 1)


def _signed(**changes: object) -> str:
    """Our own claims, signed by our own code, with some changed (``None`` drops a claim)."""
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "1", "aud": SETTINGS.jwt_audience, "iss": SETTINGS.jwt_issuer, "iat": now,
        "nbf": now, "exp": now + 3600, "jti": "jti-1", "subscription_id": None,
    }  # fmt: skip
    changed = {**claims, **changes}
    return tokens.sign_claims(SETTINGS, {k: v for k, v in changed.items() if v is not None})


SUBJECT = "token subject is not an account"
OUT_OF_RANGE_CLAIMS: dict[str, tuple[dict[str, object], str]] = {
    "sub-2^31": ({"sub": HUGE_PK}, SUBJECT),
    "sub-2^63": ({"sub": str(2**63)}, SUBJECT),
    "sub-zero": ({"sub": "0"}, SUBJECT),
    "sub-leading-zero": ({"sub": "01"}, SUBJECT),
    "sub-negative": ({"sub": "-1"}, SUBJECT),
    "sub-underscore": ({"sub": "1_0"}, SUBJECT),
    "sub-spaces": ({"sub": " 1 "}, SUBJECT),
    "sub-nul": ({"sub": "1\x00"}, SUBJECT),
    "sub-number": ({"sub": 1}, SUBJECT),
    "sub-bool": ({"sub": True}, SUBJECT),
    "exp-1e20": ({"exp": 10**20}, "token's 'exp' claim is out of range"),
    "exp-float": ({"exp": time.time() + 3600}, "token's 'exp' claim has the wrong type"),
    "exp-text": ({"exp": str(int(time.time()) + 3600)}, "token's 'exp' claim has the wrong type"),
    "iat-negative": ({"iat": -1}, "token's 'iat' claim is out of range"),
    "iat-float": ({"iat": time.time()}, "token's 'iat' claim has the wrong type"),
    "nbf-float": ({"nbf": time.time()}, "token's 'nbf' claim has the wrong type"),
    "jti-nul": ({"jti": "j\x00"}, "token's 'jti' claim is not printable text"),
    "jti-too-long": ({"jti": "j" * 65}, "token's 'jti' claim has the wrong length"),
    "jti-number": ({"jti": 7}, "token's 'jti' claim has the wrong type"),
    "subscription-nul": (
        {"subscription_id": "sub_\x00"},
        "token's 'subscription_id' claim is not printable text",
    ),
    "subscription-number": (
        {"subscription_id": 5},
        "token's 'subscription_id' claim has the wrong type",
    ),
}


@pytest.mark.parametrize("case", OUT_OF_RANGE_CLAIMS)
def test_signed_tokens_with_claims_we_never_issue_are_refused(case: str) -> None:
    changes, message = OUT_OF_RANGE_CLAIMS[case]
    with pytest.raises(tokens.TokenError) as caught:
        tokens.decode_token(SETTINGS, _signed(**changes))
    assert str(caught.value) == message


def test_the_claims_we_issue_are_read_back() -> None:
    claims = tokens.decode_token(
        SETTINGS, _signed(sub=str(INTEGER_MAX), subscription_id="sub_1", exp=2**32)
    )
    assert (claims.account_pk, claims.jti, claims.subscription_id) == (
        INTEGER_MAX,
        "jti-1",
        "sub_1",
    )
    assert claims.expires_at == dt.datetime.fromtimestamp(2**32, dt.UTC)


@pytest.mark.parametrize("case", ["sub-2^31", "sub-2^63", "exp-1e20", "jti-nul", "jti-too-long"])
async def test_the_gate_refuses_them_as_unauthenticated(
    migrated_sessions: async_sessionmaker[AsyncSession], case: str
) -> None:
    """Before: the look-up failed in the database (or in datetime) and the caller got 503."""
    changes, message = OUT_OF_RANGE_CLAIMS[case]
    settings = Settings(auth=SETTINGS, _env_file=None)
    gate = AccountGate(settings)
    async with gate.serving(migrated_sessions):
        refusal = await gate.admit(Call(target("search_exploits"), credential=_signed(**changes)))
    assert isinstance(refusal, Refusal)
    assert (refusal.reason, refusal.message) == (
        RefusalReason.UNAUTHENTICATED,
        f"Access token refused: {message}.",
    )
