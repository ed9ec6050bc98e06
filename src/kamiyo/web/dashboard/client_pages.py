"""``/dashboard/clients``: the MCP hosts (OAuth clients) the account let in, and revoking one.

A revocation ends every grant the account gave that client (refresh tokens retired, access
tokens refused from their next call) and is committed with ``revocation.commit``, so every
instance refuses them at once, as for a revoked API key.
"""

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kamiyo.access import oauth_grants, revocation
from kamiyo.web.dashboard import render
from kamiyo.web.dashboard.viewer import Dashboard, Viewer, read_form

log = logging.getLogger(__name__)

CLIENTS_PAGE = "/dashboard/clients"


class ClientPages:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def list_page(self, request: Request, viewer: Viewer) -> Response:
        async with self.dashboard.database() as session:
            grants = await oauth_grants.list_grants(session, viewer.account.pk)
        context = viewer.context(grants=grants, revoked=request.query_params.get("revoked"))
        return render.page(request, "clients.html", context)

    async def revoke(self, request: Request, viewer: Viewer) -> Response:
        form = await read_form(request)
        client_id = form.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            return render.message(
                request,
                400,
                "Nothing was revoked",
                "The form named no client.",
                context=viewer.context(),
            )
        async with self.dashboard.database() as session:
            ended = await oauth_grants.revoke_client(session, viewer.account.pk, client_id)
            await revocation.commit(session, self.dashboard.settings)
        log.info("account %s revoked OAuth client access (%d grants)", viewer.account.pk, ended)
        return RedirectResponse(f"{CLIENTS_PAGE}?revoked={ended}", 303, headers=render.headers())
