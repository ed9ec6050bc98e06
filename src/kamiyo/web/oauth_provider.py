"""KAMIYO's side of the SDK's authorization-server handlers (``OAuthAuthorizationServerProvider``).

The SDK's handlers parse and check the requests (PKCE S256, redirect URIs, client
authentication, expiry, the code's client and redirect URI); this class keeps the state in the
database through ``access/oauth_grants.py``. ``authorize`` does not issue a code: it sends the
browser to the consent page with the checked request, signed, so the page cannot be handed one
the handler did not check (``oauth_consent.py``). Access tokens are the gate's JWTs, their
audience the ``/mcp`` URL (RFC 8707); the tier is read from the account at call time.
"""

import logging
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import jwt
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    OAuthAuthorizationServerProvider,
    RefreshToken,
    TokenError,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyUrl
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access import oauth_grants, revocation, tokens
from kamiyo.config import Settings
from kamiyo.web.oauth_clients import ClientDirectory

log = logging.getLogger(__name__)

AUTHORIZE_PATH = "/oauth/authorize"
CONSENT_TTL_S = 600  # how long a consent page may stay open before it is approved
# RFC 7636 §4.2: base64url of a SHA-256 is 43 characters; the grammar allows 43 to 128.
PKCE_CHALLENGE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
CONSENT_AUDIENCE = "kamiyo-oauth-consent"  # a signed request is never an access token


class Provider(OAuthAuthorizationServerProvider[AuthorizationCode, RefreshToken, AccessToken]):
    def __init__(
        self,
        settings: Settings,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        clients: ClientDirectory,
        issuer: str,
        resource: str,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clients = clients
        self.issuer = issuer
        self.resource = resource
        self.consent_url_prefix = f"{issuer}{AUTHORIZE_PATH}?consent="

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        return await self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        await self.clients.register(client_info)

    async def authorize(
        self, client: OAuthClientInformationFull, params: AuthorizationParams
    ) -> str:
        if not PKCE_CHALLENGE.fullmatch(params.code_challenge):
            raise AuthorizeError(
                "invalid_request", "code_challenge must be an S256 challenge (43 characters)"
            )
        resource = (params.resource or self.resource).rstrip("/")
        if resource != self.resource:
            raise AuthorizeError("invalid_target", f"resource must be {self.resource}")
        request = {
            "aud": CONSENT_AUDIENCE,
            "exp": int(time.time()) + CONSENT_TTL_S,
            "client_id": client.client_id,
            "redirect_uri": str(params.redirect_uri),
            "explicit": params.redirect_uri_provided_explicitly,
            "challenge": params.code_challenge,
            "state": params.state,
            "scopes": params.scopes or [],
            "resource": resource,
        }
        signed = tokens.sign_claims(self.settings.auth, request)
        return self.consent_url_prefix + quote(signed, safe="")

    def read_consent(self, signed: str) -> dict[str, Any] | None:
        """The request ``authorize`` signed, or None when it is not one (or too old)."""
        try:
            claims: dict[str, Any] = jwt.decode(
                signed,
                self.settings.auth.secret_key.get_secret_value(),
                algorithms=[tokens.ALGORITHM],
                audience=CONSENT_AUDIENCE,
                options={"require": ["exp", "aud"]},
            )
        except jwt.InvalidTokenError:
            return None
        return claims

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> AuthorizationCode | None:
        async with self.sessions()() as session:
            code = await oauth_grants.find_code(session, authorization_code)
            await revocation.commit(session, self.settings)  # a replay revokes its grant
        if code is None:
            return None
        return AuthorizationCode(
            code=authorization_code,
            scopes=code.scopes,
            expires_at=code.expires_at.timestamp(),
            client_id=code.client_id,
            code_challenge=code.code_challenge,
            redirect_uri=AnyUrl(code.redirect_uri),
            redirect_uri_provided_explicitly=code.redirect_uri_explicit,
            resource=code.resource,
            subject=str(code.account_pk),
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        async with self.sessions()() as session:
            code = await oauth_grants.find_code(session, authorization_code.code)
            if code is None:
                raise TokenError("invalid_grant", "authorization code does not exist")
            try:
                issued = await oauth_grants.exchange_code(session, self.settings.auth, code)
            except oauth_grants.GrantError as exc:
                raise TokenError("invalid_grant", str(exc)) from None
            await revocation.commit(session, self.settings)
        log.info("OAuth code exchanged by %s for account %s", client.client_id, code.account_pk)
        return _token(issued)

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> RefreshToken | None:
        async with self.sessions()() as session:
            found = await oauth_grants.find_refresh(session, refresh_token)
            await revocation.commit(session, self.settings)  # a reused one revokes its grant
        if found is None:
            return None
        token, grant = found
        return RefreshToken(
            token=refresh_token,
            client_id=grant.client_id,
            scopes=grant.scopes,
            expires_at=int(token.expires_at.timestamp()),
            resource=grant.resource,
            subject=str(grant.account_pk),
        )

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        async with self.sessions()() as session:
            found = await oauth_grants.find_refresh(session, refresh_token.token)
            if found is None:
                await revocation.commit(session, self.settings)
                raise TokenError("invalid_grant", "refresh token does not exist")
            try:
                issued = await oauth_grants.rotate_refresh(session, self.settings.auth, *found)
            except oauth_grants.GrantError as exc:
                raise TokenError("invalid_grant", str(exc)) from None
            await revocation.commit(session, self.settings)
        return _token(issued)

    async def load_access_token(self, token: str) -> AccessToken | None:
        try:
            claims = tokens.decode_token(self.settings.auth, token, (self.resource,))
        except tokens.TokenError:
            return None
        async with self.sessions()() as session:
            grant = await oauth_grants.grant_of_access_token(session, claims.jti)
        if grant is None:
            return None
        return AccessToken(
            token=token,
            client_id=grant.client_id,
            scopes=grant.scopes,
            expires_at=int(claims.expires_at.timestamp()),
            resource=grant.resource,
            subject=str(grant.account_pk),
            claims={"jti": claims.jti},
        )

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        """RFC 7009: a refresh token ends its grant; an access token is refused on its own."""
        async with self.sessions()() as session:
            if isinstance(token, RefreshToken):
                found = await oauth_grants.find_refresh(session, token.token)
                if found is not None:
                    await oauth_grants.revoke_grant(session, found[1])
            elif token.claims is not None:
                await oauth_grants.revoke_access_token(session, str(token.claims["jti"]))
            await revocation.commit(session, self.settings)
        log.info("OAuth %s of %s revoked", type(token).__name__, token.client_id)


def _token(issued: oauth_grants.IssuedTokens) -> OAuthToken:
    return OAuthToken(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
        scope=" ".join(issued.scopes) or None,
    )
