"""JWT access tokens (PyJWT, HS256 with the server's secret key).

A token names its account (``sub``), this server (``aud``, ``iss``), when it was issued and
expires, a unique ``jti`` (for revocation) and the account's subscription. The tier is never
taken from the token: the gate reads the subscription state at call time, so an upgrade unlocks
at once and a cancellation locks at once. Every way a token can be wrong has its own message.
"""

import datetime as dt
import secrets
from dataclasses import dataclass

import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access import revocation
from kamiyo.config import AuthSettings
from kamiyo.db.tables import Account, RevokedToken, Subscription

ALGORITHM = "HS256"  # pinned: a token naming any other algorithm, "none" included, is refused
MAX_TOKEN_LENGTH = 4096
REQUIRED_CLAIMS = ("sub", "aud", "iss", "iat", "exp", "jti")


class TokenError(ValueError):
    """A token that is not accepted; the message says why, without echoing the token."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    account_pk: int
    jti: str
    expires_at: dt.datetime
    subscription_id: str | None


async def issue_token(
    session: AsyncSession, auth: AuthSettings, account: Account, *, ttl_s: int | None = None
) -> str:
    now = dt.datetime.now(dt.UTC)
    subscription = await session.get(Subscription, account.pk)
    claims = {
        "sub": str(account.pk),
        "aud": auth.jwt_audience,
        "iss": auth.jwt_issuer,
        "iat": now,
        "nbf": now,
        "exp": now + dt.timedelta(seconds=ttl_s or auth.jwt_ttl_s),
        "jti": secrets.token_urlsafe(16),
        "subscription_id": subscription.stripe_subscription_id if subscription else None,
    }
    return jwt.encode(claims, auth.secret_key.get_secret_value(), algorithm=ALGORITHM)


def decode_token(auth: AuthSettings, token: str) -> TokenClaims:
    """The claims of a valid token; ``TokenError`` naming the problem otherwise."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("token too long")
    try:
        claims = jwt.decode(
            token,
            auth.secret_key.get_secret_value(),
            algorithms=[ALGORITHM],
            audience=auth.jwt_audience,
            issuer=auth.jwt_issuer,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise TokenError("token not valid yet") from exc
    except jwt.InvalidAudienceError as exc:
        raise TokenError("token is for another audience") from exc
    except jwt.InvalidIssuerError as exc:
        raise TokenError("token from another issuer") from exc
    except jwt.InvalidAlgorithmError as exc:
        raise TokenError(f"token algorithm not allowed (only {ALGORITHM})") from exc
    except jwt.InvalidSignatureError as exc:
        raise TokenError("token signature does not verify") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(f"token lacks the {exc.claim!r} claim") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenError("token is malformed") from exc
    try:
        account_pk = int(claims["sub"])
    except (TypeError, ValueError) as exc:
        raise TokenError("token subject is not an account") from exc
    return TokenClaims(
        account_pk=account_pk,
        jti=str(claims["jti"]),
        expires_at=dt.datetime.fromtimestamp(int(claims["exp"]), dt.UTC),
        subscription_id=claims.get("subscription_id"),
    )


async def verify_token(session: AsyncSession, auth: AuthSettings, token: str) -> Account:
    """The account a valid, unrevoked token stands for. It may be disabled: the caller says
    so (``accounts.is_active``)."""
    claims = decode_token(auth, token)
    # The account first: the gate remembers its credentials version, which must not be newer
    # than the revocation list read after it (access/revocation.py).
    account = await session.get(Account, claims.account_pk)
    if await session.get(RevokedToken, claims.jti) is not None:
        raise TokenError("token revoked")
    if account is None:
        raise TokenError("token's account no longer exists")
    return account


async def revoke_token(session: AsyncSession, auth: AuthSettings, token: str) -> str:
    """Refuse this token from now on; returns its jti. Caller commits with
    ``revocation.commit``, so running servers refuse it on the next call."""
    claims = decode_token(auth, token)
    if await session.get(RevokedToken, claims.jti) is None:
        session.add(
            RevokedToken(
                jti=claims.jti, expires_at=claims.expires_at, revoked_at=dt.datetime.now(dt.UTC)
            )
        )
        await revocation.bump(session, claims.account_pk)
    return claims.jti
