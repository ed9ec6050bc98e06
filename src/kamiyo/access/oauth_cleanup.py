"""Deleting what the OAuth authorization server no longer needs (``oauth_grants.py`` makes it).

Run by the serving process every ``oauth_prune_every_s`` (``web/oauth_pruning.py``) and by
``kamiyo oauth prune``. What goes, and why it is safe:

- codes past their expiry, used or not: an expired code is refused as unknown anyway;
- access-token records past their expiry, or of a revoked grant: the token is refused
  either way (its ``jti`` refusal stays in ``revoked_tokens``);
- refresh tokens past their expiry, or of a revoked grant. A retired refresh token of a live
  grant is kept until it expires: presenting it again is how a stolen copy is caught;
- registered clients older than ``oauth_stale_client_days`` that no grant (live or revoked)
  and no pending code names: a registration a host made and never used.

Grants themselves are never deleted: a live one is an account's consent, a revoked one is what
a new consent renews. Each step is one DELETE, the same on SQLite and PostgreSQL, and safe to
run on several instances at once.
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, fields

from sqlalchemy import Delete, Exists, delete, exists, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped

from kamiyo.db.oauth import OAuthAccessToken, OAuthClient, OAuthCode, OAuthGrant, OAuthRefreshToken


@dataclass(frozen=True, slots=True)
class Pruned:
    """How many rows of each kind one run deleted."""

    codes: int = 0
    access_tokens: int = 0
    refresh_tokens: int = 0
    clients: int = 0

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    def summary_rows(self) -> list[tuple[str, int]]:
        return [(f.name.replace("_", " "), getattr(self, f.name)) for f in fields(self)]

    def summary(self) -> str:
        return ", ".join(f"{count} {kind}" for kind, count in self.summary_rows())


def _revoked_grant(grant_pk: Mapped[int]) -> Exists:
    return exists().where(OAuthGrant.pk == grant_pk, OAuthGrant.revoked_at.is_not(None))


def statements(now: dt.datetime, stale_clients_before: dt.datetime) -> dict[str, Delete]:
    """Each kind's DELETE, in the order they run (clients last: their codes go first)."""
    return {
        "codes": delete(OAuthCode).where(OAuthCode.expires_at < now),
        "access_tokens": delete(OAuthAccessToken).where(
            or_(OAuthAccessToken.expires_at < now, _revoked_grant(OAuthAccessToken.grant_pk))
        ),
        "refresh_tokens": delete(OAuthRefreshToken).where(
            or_(OAuthRefreshToken.expires_at < now, _revoked_grant(OAuthRefreshToken.grant_pk))
        ),
        "clients": delete(OAuthClient).where(
            OAuthClient.created_at < stale_clients_before,
            ~exists().where(OAuthGrant.client_id == OAuthClient.client_id),
            ~exists().where(OAuthCode.client_id == OAuthClient.client_id),
        ),
    }


async def prune(
    session: AsyncSession,
    stale_client_days: int,
    *,
    now: dt.datetime | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> Pruned:
    """Delete what is expired, revoked or stale (see the module) and commit; ``progress`` is
    told each kind's count as it is deleted."""
    now = now or dt.datetime.now(dt.UTC)
    counts: dict[str, int] = {}
    for kind, statement in statements(now, now - dt.timedelta(days=stale_client_days)).items():
        result = await session.execute(statement.execution_options(synchronize_session=False))
        counts[kind] = int(getattr(result, "rowcount", 0) or 0)
        if progress is not None:
            progress(kind, counts[kind])
    await session.commit()
    return Pruned(**counts)
