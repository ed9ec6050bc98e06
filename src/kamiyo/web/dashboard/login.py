"""Log-in by mailed link, and log-out.

- ``GET /login``: one form (an email address) that signs up and logs in alike. ``?next=`` (a
  page of ours to come back to, e.g. an OAuth consent) is kept in a short cookie of this
  browser until its link is used here; only paths under ``RETURN_PATHS`` are taken.
- ``POST /login``: always "check your email" (a malformed address is told so), never whether
  the address has an account; the account, link and mail are made after the answer is sent,
  so its timing tells nothing either. Limited per peer (429) and per address (silently).
- ``GET /login/{token}``: a "Log in" button, using nothing up (mail scanners fetch links).
- ``POST /login/{token}``: uses the link, starts a session (cookie), redirects to the kept
  ``next`` or /dashboard.
- ``POST /logout``: ends the session.

The session-less POSTs are checked by origin (see csrf.py), the log-out by CSRF token.
"""

import logging

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kamiyo.access.accounts import AccountError, normalize_email
from kamiyo.billing import onboarding
from kamiyo.billing.mailer import MailError
from kamiyo.web.access_log import logged_path
from kamiyo.web.dashboard import csrf, login_links, render, sessions
from kamiyo.web.dashboard.viewer import BadFormError, Dashboard, Viewer, form_refused, read_form

log = logging.getLogger(__name__)

HOME = "/dashboard"
# Where a log-in may send the browser back to: our own pages only (no open redirect).
RETURN_PATHS = ("/dashboard", "/oauth/authorize")
NEXT_COOKIE = "kamiyo_next"
NEXT_TTL_S = 15 * 60  # as long as a log-in link lives
MAX_NEXT = 4096


def safe_next(value: str | None) -> str | None:
    """``value`` if it is a path of ours to return to, else None."""
    if not value or len(value) > MAX_NEXT or not value.isprintable() or "\\" in value:
        return None
    path = value.split("?", 1)[0]
    if any(path == root or path.startswith(root + "/") for root in RETURN_PATHS):
        return value
    return None


class LoginPages:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.site = dashboard.settings.site

    async def form(self, request: Request) -> Response:
        back = safe_next(request.query_params.get("next"))
        live = await sessions.find(self.dashboard.database, request.cookies.get(sessions.COOKIE))
        if live is not None:  # logged in already
            return RedirectResponse(back or HOME, 303, headers=render.headers())
        response = render.page(request, "login.html", {"error": None, "email": ""})
        if back is not None:
            response.set_cookie(
                NEXT_COOKIE,
                back,
                max_age=NEXT_TTL_S,
                path="/login",
                secure=self.dashboard.secure_cookie,
                httponly=True,
                samesite="lax",
            )
        return response

    async def request_link(self, request: Request) -> Response:
        refused = self._foreign(request)
        if refused is not None:
            return refused
        peer = request.client.host if request.client else "unknown"
        wait = await self.dashboard.limits.peer_wait(peer)
        if wait is not None:
            return render.message(
                request,
                429,
                "Too many requests",
                f"Too many log-in requests from here; try again in {wait} seconds.",
                extra_headers={"Retry-After": str(wait)},
            )
        try:
            raw = (await read_form(request)).get("email")
            address = normalize_email(raw if isinstance(raw, str) else "")
        except BadFormError as exc:
            return form_refused(request, exc)
        except AccountError:
            email = raw if isinstance(raw, str) else ""
            return render.page(
                request,
                "login.html",
                {"error": "That is not an email address.", "email": email[:320]},
                status=400,
            )
        try:
            onboarding.base_url(self.site)
        except onboarding.SignupUnavailableError:
            log.error("log-in refused: KAMIYO_PUBLIC_URL is not set, mails could not link back")
            return render.message(
                request, 503, "Log-in is not available", "This server cannot mail log-in links."
            )
        task = None
        if await self.dashboard.limits.address_allowed(address):
            task = BackgroundTask(self._mail_link, address)
        else:
            log.info("log-in limit reached for one address: no mail sent")
        response = render.message(
            request,
            200,
            "Check your email",
            "If the address can receive mail, a log-in link is on its way. It works once, for "
            "15 minutes. A new address gets a free account.",
        )
        response.background = task
        return response

    async def _mail_link(self, address: str) -> None:
        try:
            await login_links.request_login(
                self.dashboard.database, self.dashboard.onboarding, address
            )
        except (MailError, onboarding.SignupUnavailableError, AccountError) as exc:
            log.error("log-in mail not sent: %s", exc)
        except Exception:  # nobody awaits this task: the log is the only place to report
            log.exception("log-in request failed")

    async def link_form(self, request: Request) -> Response:
        if not await login_links.check(self.dashboard.database, request.path_params["token"]):
            return self._gone(request)
        return render.page(request, "login_link.html", link_page=True)

    async def use_link(self, request: Request) -> Response:
        refused = self._foreign(request, link_page=True)
        if refused is not None:
            return refused
        account_pk = await login_links.use(self.dashboard.database, request.path_params["token"])
        if account_pk is None:
            return self._gone(request)
        live = await sessions.start(self.dashboard.database, account_pk)
        back = safe_next(request.cookies.get(NEXT_COOKIE)) or HOME
        response = RedirectResponse(back, 303, headers=render.headers(link_page=True))
        sessions.set_cookie(response, live, secure=self.dashboard.secure_cookie)
        if NEXT_COOKIE in request.cookies:
            response.delete_cookie(NEXT_COOKIE, path="/login", httponly=True, samesite="lax")
        return response

    async def logout(self, request: Request, viewer: Viewer) -> Response:
        await sessions.end(self.dashboard.database, viewer.live.token)
        log.info("dashboard session ended by log-out for account %s", viewer.account.pk)
        response = RedirectResponse("/login", 303, headers=render.headers())
        sessions.clear_cookie(response, secure=self.dashboard.secure_cookie)
        return response

    def _foreign(self, request: Request, *, link_page: bool = False) -> Response | None:
        if csrf.same_origin(request, self.site.public_url):
            return None
        log.info("POST %s refused: sent from another site", logged_path(request.url.path))
        return render.message(
            request,
            403,
            "Sent from another site",
            "This form was sent from another site, so it was ignored. Open the log-in page "
            "of this server and try again.",
            link_page=link_page,
        )

    def _gone(self, request: Request) -> Response:
        return render.message(
            request,
            410,
            "This link was used or has expired",
            "Each log-in link works once, for 15 minutes, and only the newest one sent to you "
            "works. Ask for a new one on the log-in page.",
            link_page=True,
        )
