"""Who is looking at a dashboard page: the session behind the cookie, its account and its
CSRF token. Pages that need a session are wrapped by ``Dashboard.signed_in``."""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import RedirectResponse, Response

from kamiyo.access.accounts import account_role, is_active
from kamiyo.billing import onboarding
from kamiyo.db.tables import Account, Role
from kamiyo.service.state import ServerState
from kamiyo.web.access_log import logged_path
from kamiyo.web.dashboard import csrf, render, sessions
from kamiyo.web.dashboard.throttle import LoginLimits

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 16 * 1024  # the largest form here is a key name
LOGIN_PAGE = "/login"


class BadFormError(ValueError):
    """A posted form that cannot be read; the message says why, for the person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Viewer:
    live: sessions.LiveSession
    account: Account
    csrf: str
    role: Role = Role.USER

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def context(self, **values: Any) -> dict[str, Any]:
        """What the base layout needs (the account, the CSRF token, whether to show the
        operators' link), plus ``values``."""
        return {"account": self.account, "csrf": self.csrf, "is_admin": self.is_admin, **values}


Page = Callable[[Request, Viewer], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


class Dashboard:
    """What every dashboard route shares: the server state, settings, log-in limits."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.settings = state.settings
        self.onboarding = onboarding.Onboarding.from_settings(state.settings)
        self.limits = LoginLimits(state.settings.redis)
        state.on_close.append(self.limits.aclose)
        self.secure_cookie = sessions.cookie_is_secure(state.settings.site)

    @property
    def database(self) -> sessions.Sessions:
        """The database's sessions (not to be confused with the browsers' sessions)."""
        return self.state.require_runtime().sessions

    async def account_of(self, request: Request) -> int | None:
        """The active account logged in on this browser, or None (OAuth's consent asks)."""
        live = await sessions.find(self.database, request.cookies.get(sessions.COOKIE))
        if live is None:
            return None
        async with self.database() as session:
            account = await session.get(Account, live.account_pk)
        return account.pk if account is not None and is_active(account) else None

    def signed_in(self, handler: Page, *, hidden: bool = False) -> Endpoint:
        """``handler`` for a logged-in viewer: others go to the log-in page (``hidden``: get
        a 404, for a page that does not say it exists), and a POST without the session's CSRF
        token is refused with 403."""

        async def endpoint(request: Request) -> Response:
            try:
                live = await sessions.find(self.database, request.cookies.get(sessions.COOKIE))
                account, role = None, Role.USER
                if live is not None:
                    async with self.database() as session:
                        account = await session.get(Account, live.account_pk)
                        role = account_role(account) if account is not None else Role.USER
                if live is None or account is None or not is_active(account):
                    if hidden:
                        return not_found(request)
                    return self.to_login(request, had_cookie=sessions.COOKIE in request.cookies)
                viewer = Viewer(
                    live, account, csrf.token_for(self.settings.auth.secret_key, live.token), role
                )
                if request.method == "POST":
                    submitted = request.headers.get(csrf.HEADER)
                    if submitted is None:
                        submitted = _text((await read_form(request)).get(csrf.FIELD))
                    if not csrf.matches(viewer.csrf, submitted):
                        log.info(
                            "%s %s refused: no valid CSRF token",
                            request.method,
                            logged_path(request.url.path),
                        )
                        return render.message(
                            request,
                            403,
                            "This form has expired",
                            "The form was not sent from this session's own page (its security "
                            "token is missing or wrong), so nothing was changed. Reload the "
                            "page and try again.",
                            context=viewer.context(),
                        )
                return await handler(request, viewer)
            except BadFormError as exc:
                return form_refused(request, exc)
            except Exception:
                log.exception("%s %s failed", request.method, logged_path(request.url.path))
                return render.message(
                    request, 500, "Something went wrong", "Something went wrong on our side."
                )

        return endpoint

    def to_login(self, request: Request, *, had_cookie: bool) -> Response:
        response = RedirectResponse(LOGIN_PAGE, 303, headers=render.headers())
        if had_cookie:  # a session that ended: do not keep sending it
            sessions.clear_cookie(response, secure=self.secure_cookie)
        return response


async def read_form(request: Request) -> FormData:
    """The posted form, refused past MAX_FORM_BYTES (a plain form's body has no other cap)."""
    declared = request.headers.get("content-length", "")
    too_large = BadFormError(413, f"Forms here are limited to {MAX_FORM_BYTES} bytes.")
    if declared.isdigit():
        if int(declared) > MAX_FORM_BYTES:
            raise too_large
    elif "transfer-encoding" in request.headers:  # browsers declare a form's length
        raise too_large
    try:
        return await request.form(max_files=0, max_fields=20)
    except ClientDisconnect:
        log.info("%s %s: the client left mid-form", request.method, logged_path(request.url.path))
        raise BadFormError(400, "The form ended before it was complete.") from None
    except MultiPartException as exc:
        raise BadFormError(400, f"The form could not be read: {exc.message}.") from None


def not_found(request: Request, viewer: Viewer | None = None) -> Response:
    return render.message(
        request, 404, "Not found", "There is no page at this address.",
        context=viewer.context() if viewer else None,
    )  # fmt: skip


def form_refused(request: Request, error: BadFormError) -> Response:
    return render.message(request, error.status, "The form was not accepted", str(error))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
