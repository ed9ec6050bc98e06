"""``/dashboard/keys``: the account's API keys, a new one (shown once), revoking one.

Creating and revoking use ``access.keys`` and its seat rule; a revocation is committed with
``revocation.commit``, so every instance refuses the key on its next call. Revoking answers
htmx with the key's new row, and a plain form post with a redirect back to the list.
"""

import logging

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kamiyo.access import keys, revocation
from kamiyo.access.accounts import AccountError, current_tier
from kamiyo.db.tables import ApiKey
from kamiyo.tiers import TIERS
from kamiyo.web.dashboard import render
from kamiyo.web.dashboard.client_setup import client_setup
from kamiyo.web.dashboard.viewer import Dashboard, Viewer, read_form

log = logging.getLogger(__name__)

KEYS_PAGE = "/dashboard/keys"


class KeyPages:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def show(
        self, request: Request, viewer: Viewer, *, error: str | None = None, status: int = 200
    ) -> Response:
        async with self.dashboard.database() as session:
            tier = await current_tier(
                session, viewer.account, self.dashboard.onboarding.past_due_grace
            )
            rows = await keys.list_keys(session, viewer.account)
        seats = TIERS[tier].seats
        used = sum(1 for row in rows if row.revoked_at is None)
        context = viewer.context(
            keys=rows,
            tier=tier,
            seats=seats,
            used=used,
            full=seats is not None and used >= seats,
            error=error,
            max_name=keys.MAX_NAME_LENGTH,
        )
        return render.page(request, "keys.html", context, status=status)

    async def list_page(self, request: Request, viewer: Viewer) -> Response:
        return await self.show(request, viewer)

    async def create(self, request: Request, viewer: Viewer) -> Response:
        name = (await read_form(request)).get("name")
        async with self.dashboard.database() as session:
            try:
                new = await keys.create_key(
                    session,
                    viewer.account,
                    name if isinstance(name, str) else "",
                    self.dashboard.onboarding.past_due_grace,
                )
            except AccountError as exc:
                await session.rollback()
                return await self.show(
                    request, viewer, error=f"No key was made: {exc}.", status=409
                )
            await session.commit()
        log.info("key %s… created on the dashboard for account %s", new.prefix, viewer.account.pk)
        setup = (
            client_setup(self.dashboard.settings.site, new.key)
            if self.dashboard.settings.site.public_url
            else None
        )
        # The only page that ever shows this key: no-store (render.headers) keeps it out of
        # caches and the back button's history.
        return render.page(request, "key_created.html", viewer.context(new=new, setup=setup))

    async def revoke(self, request: Request, viewer: Viewer) -> Response:
        prefix = request.path_params["prefix"]
        async with self.dashboard.database() as session:
            owned = await session.scalar(
                select(ApiKey).where(
                    ApiKey.prefix == prefix, ApiKey.account_pk == viewer.account.pk
                )
            )
            if owned is None:  # another account's key looks the same as no key
                return render.message(
                    request,
                    404,
                    "No such key",
                    "This account has no key with that prefix.",
                    context=viewer.context(),
                )
            key = await keys.revoke_key(session, prefix)
            await revocation.commit(session, self.dashboard.settings)
            assert key is not None
            await session.refresh(key)
        log.info("key %s… revoked on the dashboard by account %s", prefix, viewer.account.pk)
        if request.headers.get("hx-request") == "true":
            return render.page(request, "key_row.html", viewer.context(key=key))
        return RedirectResponse(KEYS_PAGE, 303, headers=render.headers())
