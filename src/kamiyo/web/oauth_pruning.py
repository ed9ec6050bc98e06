"""The serving process's periodic OAuth clean-up: every ``oauth_prune_every_s`` it deletes
expired and revoked codes and tokens and stale registered clients
(``access/oauth_cleanup.py``; ``kamiyo oauth prune`` does the same on demand).

Every instance runs it: each run is a few DELETEs that find nothing another instance left, so
running them twice costs little and needs no lock. A failed run is logged and the next one
tries again; a database outage is reported once by ``kamiyo.outages``, not per run.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo import outages
from kamiyo.access import oauth_cleanup
from kamiyo.config import Settings
from kamiyo.web.oauth import served_issuer

log = logging.getLogger(__name__)


async def prune_once(
    settings: Settings, sessions: Callable[[], async_sessionmaker[AsyncSession]]
) -> oauth_cleanup.Pruned | None:
    """One run; None when it failed (logged)."""
    try:
        async with sessions()() as session:
            pruned = await oauth_cleanup.prune(session, settings.auth.oauth_stale_client_days)
    except Exception as exc:
        if outages.is_unreachable(exc):
            outages.DATABASE.failed(exc, counted=False)
        else:
            log.exception("OAuth clean-up failed; the next run tries again")
        return None
    if pruned.total:
        log.info("OAuth clean-up deleted %s", pruned.summary())
    return pruned


async def _prune_forever(
    settings: Settings, sessions: Callable[[], async_sessionmaker[AsyncSession]]
) -> None:
    while True:
        await asyncio.sleep(settings.auth.oauth_prune_every_s)
        await prune_once(settings, sessions)


@asynccontextmanager
async def pruning(
    settings: Settings, sessions: Callable[[], async_sessionmaker[AsyncSession]]
) -> AsyncIterator[None]:
    """While serving, when this server is an authorization server and pruning is on."""
    served = served_issuer(settings.site, settings.auth) is not None
    if not served or not settings.auth.oauth_prune_every_s:
        yield
        return
    task = asyncio.create_task(_prune_forever(settings, sessions), name="kamiyo-oauth-prune")
    try:
        yield
    finally:
        task.cancel()  # a DELETE cut short rolls back; the next start does it again
        await asyncio.gather(task, return_exceptions=True)
