"""Rate limits on the OAuth endpoints (registration, authorize, token, revocation), per client
address, in the windows the dashboard's log-in uses (``request_limits.SharedWindows``:
Redis when configured, so every instance shares the count; this process otherwise).

Over the limit the request is not read: HTTP 429 with ``Retry-After`` and an RFC 6749 error
body (``temporarily_unavailable``, the registered code for "try later"), which the SDKs'
clients already read, and a log line (through ``throttled_log.Throttle``: whoever floods an
endpoint decides how many refusals there are, so a flood writes one line, then a count a
minute). The limits are settings (``KAMIYO_OAUTH_*_LIMIT``).
"""

import logging

from limits import RateLimitItem, parse
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from kamiyo.config import Settings
from kamiyo.web.access_log import logged_path
from kamiyo.web.request_limits import SharedWindows
from kamiyo.web.throttled_log import Throttle

log = logging.getLogger(__name__)


class OAuthLimits:
    """The windows, and a wrapper that puts one endpoint behind its limit."""

    def __init__(self, settings: Settings) -> None:
        auth = settings.auth
        self.windows = SharedWindows(settings.redis, "OAuth")
        self.report = Throttle(log, "OAuth requests refused by their rate limits")
        self.items: dict[str, RateLimitItem] = {
            "register": parse(auth.oauth_register_limit),
            "authorize": parse(auth.oauth_authorize_limit),
            "token": parse(auth.oauth_token_limit),
            "revoke": parse(auth.oauth_revoke_limit),
        }

    async def aclose(self) -> None:
        await self.windows.aclose()

    def limited(self, endpoint: str, app: ASGIApp) -> ASGIApp:
        return _Limited(app, self, endpoint)


class _Limited:
    def __init__(self, app: ASGIApp, limits: OAuthLimits, endpoint: str) -> None:
        self.app = app
        self.limits = limits
        self.endpoint = endpoint
        self.item = limits.items[endpoint]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # CORS preflights cost nothing and carry no request: not counted.
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        peer = scope["client"][0] if scope.get("client") else "unknown"
        wait = await self.limits.windows.wait(self.item, "oauth", self.endpoint, peer)
        if wait is None:
            await self.app(scope, receive, send)
            return
        if self.limits.report.admit(self.endpoint):
            log.warning(
                "429 on %s %s: OAuth %s limit (%s) reached for one client address",
                scope["method"],
                logged_path(scope["path"]),
                self.endpoint,
                self.item,
            )
        refused = JSONResponse(
            {
                "error": "temporarily_unavailable",
                "error_description": f"Too many {self.endpoint} requests from this address "
                f"(limit {self.item.amount} per {_per(self.item)}); try again in {wait} seconds.",
            },
            429,
            headers={
                "Retry-After": str(wait),
                "Cache-Control": "no-store",
                # Browser clients (the MCP Inspector) may only read it when it is exposed.
                "Access-Control-Expose-Headers": "Retry-After",
            },
        )
        await refused(scope, receive, send)


def _per(item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    return unit if item.multiples == 1 else f"{item.multiples} {unit}s"
