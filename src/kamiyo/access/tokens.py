"""JWT access tokens (PyJWT, HS256 with the server's secret key).

A token names its account (``sub``), this server (``aud``, ``iss``), when it was issued and
expires, a unique ``jti`` (for revocation) and the account's subscription. The tier is never
taken from the token: the gate reads the subscription state at call time, so an upgrade unlocks
at once and a cancellation locks at once. Every way a token can be wrong has its own message.

A correctly signed token is still read strictly (``_Claims``) before anything is looked up: a
signature proves who signed it, not that the claims are ones we issue, and a value the database
cannot hold (a pk beyond 32 bits, NUL in the ``jti``) would fail the lookup rather than the
token. ``sub`` is an account pk written as ``issue_token`` writes it; times are whole Unix
seconds up to ``UNIX_TIME_MAX``; ``jti`` and ``subscription_id`` are printable text that fits
their columns. PyJWT checks the times against the clock, but takes any number (or numeric text)
for them.
"""

import datetime as dt
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
)
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access import revocation
from kamiyo.config import AuthSettings
from kamiyo.db.bounds import INTEGER_MAX, UNIX_TIME_MAX, printable, text_width
from kamiyo.db.tables import Account, RevokedToken, Subscription

ALGORITHM = "HS256"  # pinned: a token naming any other algorithm, "none" included, is refused
MAX_TOKEN_LENGTH = 4096
REQUIRED_CLAIMS = ("sub", "aud", "iss", "iat", "exp", "jti")
SUBJECT_PROBLEM = "token subject is not an account"


class TokenError(ValueError):
    """A token that is not accepted; the message says why, without echoing the token."""


def _account_pk(value: Any) -> int:
    # Exactly as issue_token writes it: str(pk), so no sign, spaces, underscores or zeros first.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        number = int(value)
        if str(number) == value and 1 <= number <= INTEGER_MAX:
            return number
    raise ValueError("not an account number")


def _text(width: int) -> StringConstraints:
    return StringConstraints(min_length=1, max_length=width)


_Time = Annotated[int, Strict(), Field(ge=0, le=UNIX_TIME_MAX)]
_Jti = Annotated[str, Strict(), _text(text_width(RevokedToken.jti)), AfterValidator(printable)]
_SubscriptionId = Annotated[
    str,
    Strict(),
    _text(text_width(Subscription.stripe_subscription_id)),
    AfterValidator(printable),
]


class _Claims(BaseModel):
    """The claims we read, as we issue them (aud and iss are PyJWT's to check)."""

    sub: Annotated[int, BeforeValidator(_account_pk)]
    iat: _Time
    nbf: _Time | None = None
    exp: _Time
    jti: _Jti
    subscription_id: _SubscriptionId | None = None


@dataclass(frozen=True, slots=True)
class TokenClaims:
    account_pk: int
    jti: str
    expires_at: dt.datetime
    subscription_id: str | None


async def issue_token(
    session: AsyncSession,
    auth: AuthSettings,
    account: Account,
    *,
    ttl_s: int | None = None,
    audience: str | None = None,
    jti: str | None = None,
) -> str:
    """A signed token for ``account``; ``audience`` (default ``jwt_audience``) is the resource
    it is for (the OAuth server names its ``/mcp`` URL), ``jti`` a chosen id (default random)."""
    now = dt.datetime.now(dt.UTC)
    subscription = await session.get(Subscription, account.pk)
    claims = {
        "sub": str(account.pk),
        "aud": audience or auth.jwt_audience,
        "iss": auth.jwt_issuer,
        "iat": now,
        "nbf": now,
        "exp": now + dt.timedelta(seconds=ttl_s or auth.jwt_ttl_s),
        "jti": jti or new_jti(),
        "subscription_id": subscription.stripe_subscription_id if subscription else None,
    }
    return sign_claims(auth, claims)


def new_jti() -> str:
    return secrets.token_urlsafe(16)


def sign_claims(auth: AuthSettings, claims: Mapping[str, Any]) -> str:
    """A token carrying ``claims``, signed with the server's secret (datetimes as Unix times)."""
    return jwt.encode(dict(claims), auth.secret_key.get_secret_value(), algorithm=ALGORITHM)


def decode_token(auth: AuthSettings, token: str, audiences: Sequence[str] = ()) -> TokenClaims:
    """The claims of a valid token; ``TokenError`` naming the problem otherwise. Its audience
    must be ``jwt_audience`` or one of ``audiences`` (the OAuth resources this server is)."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("token too long")
    try:
        claims = jwt.decode(
            token,
            auth.secret_key.get_secret_value(),
            algorithms=[ALGORITHM],
            audience=[auth.jwt_audience, *audiences],
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
    except InvalidSubjectError as exc:  # not a string
        raise TokenError(SUBJECT_PROBLEM) from exc
    except InvalidJTIError as exc:  # not a string
        raise TokenError("token's 'jti' claim has the wrong type") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenError("token is malformed") from exc
    try:
        read = _Claims.model_validate(claims)
    except ValidationError as exc:
        raise TokenError(_claim_problem(exc)) from None
    return TokenClaims(
        account_pk=read.sub,
        jti=read.jti,
        expires_at=dt.datetime.fromtimestamp(read.exp, dt.UTC),
        subscription_id=read.subscription_id,
    )


def _claim_problem(exc: ValidationError) -> str:
    """Which claim is wrong and how, never its value."""
    first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    claim = first["loc"][0] if first["loc"] else "?"
    if claim == "sub":
        return SUBJECT_PROBLEM
    kind = first["type"]
    if kind.endswith("_type"):
        problem = "has the wrong type"
    elif kind in ("greater_than_equal", "less_than_equal"):
        problem = "is out of range"
    elif kind.startswith("string_too"):
        problem = "has the wrong length"
    else:
        problem = "is not printable text"
    return f"token's {claim!r} claim {problem}"


async def verify_token(
    session: AsyncSession, auth: AuthSettings, token: str, audiences: Sequence[str] = ()
) -> Account:
    """The account a valid, unrevoked token stands for. It may be disabled: the caller says
    so (``accounts.is_active``)."""
    claims = decode_token(auth, token, audiences)
    # The account first: the gate remembers its credentials version, which must not be newer
    # than the revocation list read after it (access/revocation.py).
    account = await session.get(Account, claims.account_pk)
    if await session.get(RevokedToken, claims.jti) is not None:
        raise TokenError("token revoked")
    if account is None:
        raise TokenError("token's account no longer exists")
    return account


async def revoke_token(
    session: AsyncSession, auth: AuthSettings, token: str, audiences: Sequence[str] = ()
) -> str:
    """Refuse this token from now on; returns its jti. Caller commits with
    ``revocation.commit``, so running servers refuse it on the next call."""
    claims = decode_token(auth, token, audiences)
    await revoke_jti(session, claims.account_pk, claims.jti, claims.expires_at)
    return claims.jti


async def revoke_jti(
    session: AsyncSession, account_pk: int, jti: str, expires_at: dt.datetime
) -> None:
    """Refuse the token with this id (of this account) from now on. Caller commits with
    ``revocation.commit``."""
    if await session.get(RevokedToken, jti) is None:
        session.add(
            RevokedToken(jti=jti, expires_at=expires_at, revoked_at=dt.datetime.now(dt.UTC))
        )
        await revocation.bump(session, account_pk)
