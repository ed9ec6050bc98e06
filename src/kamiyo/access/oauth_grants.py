"""What an account has granted OAuth clients: authorization codes, grants, and their tokens.

A consent makes a code (single use, ``CODE_TTL_S`` seconds); exchanging it makes or renews the
account's grant to that client and issues an access token (the gate's JWT, its audience the
resource the client asked for) and a refresh token. A refresh token is used once: each use
retires it and issues the next, and presenting a retired one (a copy someone else holds)
revokes the whole grant, as does a second use of a code (OAuth 2.1 §4.3.1, RFC 6749 §4.1.2).
Revoking a grant retires its refresh tokens and refuses its unexpired access tokens by ``jti``.

The dashboard and the CLI list and revoke grants through ``list_grants`` and
``revoke_client``. Callers commit with ``revocation.commit``, so a revocation reaches running
servers on the next call.
"""

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access import tokens
from kamiyo.config import AuthSettings
from kamiyo.db.oauth import OAuthAccessToken, OAuthCode, OAuthGrant, OAuthRefreshToken
from kamiyo.db.tables import Account

CODE_TTL_S = 60
TOKEN_BYTES = 32  # codes and refresh tokens: 256 random bits (RFC 6749 §10.10 asks >= 128)


class GrantError(ValueError):
    """A code or refresh token that cannot be exchanged; the message says why."""


@dataclass(frozen=True, slots=True)
class CodeRequest:
    """What an approved authorization request binds its code to."""

    account_pk: int
    client_id: str
    client_name: str
    redirect_uri: str
    redirect_uri_explicit: bool
    code_challenge: str
    resource: str
    scopes: list[str]


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    expires_in: int
    refresh_token: str
    scopes: list[str]


def secret_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def create_code(session: AsyncSession, request: CodeRequest) -> str:
    """A new code for an approved request (returned once; only its hash is kept)."""
    raw = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(
        OAuthCode(
            code_hash=secret_hash(raw),
            account_pk=request.account_pk,
            client_id=request.client_id,
            client_name=request.client_name,
            redirect_uri=request.redirect_uri,
            redirect_uri_explicit=request.redirect_uri_explicit,
            code_challenge=request.code_challenge,
            resource=request.resource,
            scopes=request.scopes,
            expires_at=_now() + dt.timedelta(seconds=CODE_TTL_S),
        )
    )
    return raw


async def find_code(session: AsyncSession, raw: str) -> OAuthCode | None:
    """The unused code ``raw`` names; None when unknown. A code used before revokes the grant
    its first use made (someone replays it), and is None too."""
    code = await session.get(OAuthCode, secret_hash(raw))
    if code is None:
        return None
    if code.used_at is not None:
        if code.grant_pk is not None:
            grant = await session.get(OAuthGrant, code.grant_pk)
            if grant is not None:
                await revoke_grant(session, grant)
        return None
    return code


async def exchange_code(session: AsyncSession, auth: AuthSettings, code: OAuthCode) -> IssuedTokens:
    """Use ``code`` up: the account's grant to its client (made or renewed) and its tokens."""
    now = _now()
    # Taken with a conditional update, so two exchanges at once cannot both use it.
    taken = await session.execute(
        update(OAuthCode)
        .where(OAuthCode.code_hash == code.code_hash, OAuthCode.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(taken, "rowcount", 0) != 1 or code.expires_at < now:
        raise GrantError("authorization code has expired or was used")
    grant = await session.scalar(
        select(OAuthGrant).where(
            OAuthGrant.account_pk == code.account_pk,
            OAuthGrant.client_id == code.client_id,
            OAuthGrant.resource == code.resource,
        )
    )
    if grant is None:
        grant = OAuthGrant(
            account_pk=code.account_pk,
            client_id=code.client_id,
            resource=code.resource,
            created_at=now,
        )
        session.add(grant)
    # A new consent renews a revoked grant; its old tokens stay retired and refused.
    grant.client_name, grant.scopes = code.client_name, code.scopes
    grant.last_used_at, grant.revoked_at = now, None
    await session.flush()
    code.grant_pk = grant.pk
    return await _issue(session, auth, grant)


async def find_refresh(
    session: AsyncSession, raw: str
) -> tuple[OAuthRefreshToken, OAuthGrant] | None:
    """The live refresh token ``raw`` names and its grant; None when unknown, expired or its
    grant revoked. A retired one revokes its grant (a copy is in someone else's hands)."""
    token = await session.get(OAuthRefreshToken, secret_hash(raw))
    if token is None:
        return None
    grant = await session.get(OAuthGrant, token.grant_pk)
    if grant is None or grant.revoked_at is not None:
        return None
    if token.retired_at is not None:
        await revoke_grant(session, grant)
        return None
    if token.expires_at < _now():
        return None
    return token, grant


async def rotate_refresh(
    session: AsyncSession, auth: AuthSettings, token: OAuthRefreshToken, grant: OAuthGrant
) -> IssuedTokens:
    """Retire ``token`` and issue the grant's next access and refresh tokens."""
    now = _now()
    retired = await session.execute(
        update(OAuthRefreshToken)
        .where(
            OAuthRefreshToken.token_hash == token.token_hash, OAuthRefreshToken.retired_at.is_(None)
        )
        .values(retired_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(retired, "rowcount", 0) != 1 or grant.revoked_at is not None:
        raise GrantError("refresh token was already used")
    grant.last_used_at = now
    return await _issue(session, auth, grant)


async def _issue(session: AsyncSession, auth: AuthSettings, grant: OAuthGrant) -> IssuedTokens:
    account = await session.get(Account, grant.account_pk)
    if account is None:
        raise GrantError("the account of this grant no longer exists")
    jti = tokens.new_jti()
    access = await tokens.issue_token(session, auth, account, audience=grant.resource, jti=jti)
    now = _now()
    session.add(
        OAuthAccessToken(
            jti=jti, grant_pk=grant.pk, expires_at=now + dt.timedelta(seconds=auth.jwt_ttl_s)
        )
    )
    refresh = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(
        OAuthRefreshToken(
            token_hash=secret_hash(refresh),
            grant_pk=grant.pk,
            issued_at=now,
            expires_at=now + dt.timedelta(seconds=auth.oauth_refresh_ttl_s),
        )
    )
    return IssuedTokens(access, auth.jwt_ttl_s, refresh, list(grant.scopes))


async def grant_of_access_token(session: AsyncSession, jti: str) -> OAuthGrant | None:
    """The live grant an access token (by its ``jti``) was issued under."""
    issued = await session.get(OAuthAccessToken, jti)
    grant = await session.get(OAuthGrant, issued.grant_pk) if issued is not None else None
    return grant if grant is not None and grant.revoked_at is None else None


async def revoke_grant(session: AsyncSession, grant: OAuthGrant) -> None:
    """End ``grant``: its refresh tokens retired, its unexpired access tokens refused."""
    now = _now()
    grant.revoked_at = grant.revoked_at or now
    await session.execute(
        update(OAuthRefreshToken)
        .where(OAuthRefreshToken.grant_pk == grant.pk, OAuthRefreshToken.retired_at.is_(None))
        .values(retired_at=now)
        .execution_options(synchronize_session=False)
    )
    live = await session.scalars(
        select(OAuthAccessToken).where(
            OAuthAccessToken.grant_pk == grant.pk, OAuthAccessToken.expires_at > now
        )
    )
    for access in live.all():
        await tokens.revoke_jti(session, grant.account_pk, access.jti, access.expires_at)


async def revoke_access_token(session: AsyncSession, jti: str) -> None:
    """Refuse one access token of a grant (RFC 7009), leaving the grant in place."""
    issued = await session.get(OAuthAccessToken, jti)
    grant = await session.get(OAuthGrant, issued.grant_pk) if issued is not None else None
    if issued is not None and grant is not None:
        await tokens.revoke_jti(session, grant.account_pk, jti, issued.expires_at)


async def list_grants(session: AsyncSession, account_pk: int) -> list[OAuthGrant]:
    """The account's live grants, most recently used first (for the dashboard and the CLI)."""
    found = await session.scalars(
        select(OAuthGrant)
        .where(OAuthGrant.account_pk == account_pk, OAuthGrant.revoked_at.is_(None))
        .order_by(OAuthGrant.last_used_at.desc(), OAuthGrant.pk.desc())
    )
    return list(found.all())


async def revoke_client(session: AsyncSession, account_pk: int, client_id: str) -> int:
    """Revoke every live grant the account gave ``client_id``; how many there were."""
    grants = [g for g in await list_grants(session, account_pk) if g.client_id == client_id]
    for grant in grants:
        await revoke_grant(session, grant)
    return len(grants)
