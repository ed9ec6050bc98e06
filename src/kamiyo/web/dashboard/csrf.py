"""Cross-site request forgery checks for the dashboard's forms.

With a session: a token derived from the session (an HMAC of the session token under a key
derived from ``AuthSettings.secret_key``), sent in each form's hidden ``csrf_token`` field or,
for htmx, in the ``X-CSRF-Token`` header (``hx-headers`` on the body). Nothing is stored; a
forger who cannot read our pages cannot compute it, and it changes with each session.

Without a session (the log-in form and the log-in link's button) there is no secret to tie a
token to, so those POSTs are checked by origin instead: browsers send ``Sec-Fetch-Site`` (and
``Origin``) on every POST, and a cross-site one is refused. This stops log-in CSRF (being logged
into someone else's account). A request with neither header does not come from a browser
that a forged page could drive, so it passes.
"""

import hashlib
import hmac
from urllib.parse import urlsplit

from pydantic import SecretStr
from starlette.requests import Request

FIELD = "csrf_token"
HEADER = "x-csrf-token"
_PURPOSE = b"kamiyo dashboard csrf v1"


def token_for(secret_key: SecretStr, session_token: str) -> str:
    key = hmac.new(secret_key.get_secret_value().encode(), _PURPOSE, hashlib.sha256).digest()
    return hmac.new(key, session_token.encode(), hashlib.sha256).hexdigest()


def matches(expected: str, submitted: str | None) -> bool:
    return submitted is not None and hmac.compare_digest(expected, submitted)


def same_origin(request: Request, public_url: str | None) -> bool:
    """Whether a session-less POST came from our own pages (see the module's note)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return public_url is not None and _origin(origin) == _origin(public_url)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
