"""Pages from the Jinja2 templates in ``kamiyo/web/templates/dashboard``, with the security
headers every dashboard page carries."""

from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

STATIC = "/static/dashboard"
# Scripts and styles from this server only (htmx is vendored; no inline code), no framing.
# Forms post only here; the plan page's forms answer with a redirect to Stripe's pages.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'{forms}; frame-ancestors 'none'; base-uri 'none'"
)
STRIPE_PAGES = " https://checkout.stripe.com https://billing.stripe.com"

_templates = Jinja2Templates(
    env=Environment(
        loader=PackageLoader("kamiyo.web", "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,  # a missing value is a bug, not an empty string
        trim_blocks=True,
        lstrip_blocks=True,
    )
)


def headers(*, link_page: bool = False, stripe_forms: bool = False) -> dict[str, str]:
    """Headers for a dashboard page. Every page is private (or carries a one-time link or a
    key), so none is stored by caches; a link page's address must not leak through Referer."""
    return {
        "Content-Security-Policy": CSP.format(forms=STRIPE_PAGES if stripe_forms else ""),
        "Referrer-Policy": "no-referrer" if link_page else "same-origin",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "X-Robots-Tag": "noindex",
    }


def page(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    link_page: bool = False,
    stripe_forms: bool = False,
) -> HTMLResponse:
    values = {"static": STATIC, "csrf": None, "account": None, **(context or {})}
    response = _templates.TemplateResponse(
        request,
        f"dashboard/{template}",
        values,
        status_code=status,
        headers=headers(link_page=link_page, stripe_forms=stripe_forms),
    )
    assert isinstance(response, HTMLResponse)
    return response


def message(
    request: Request,
    status: int,
    title: str,
    text: str,
    *,
    context: Mapping[str, Any] | None = None,
    link_page: bool = False,
    extra_headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """A page that says one thing (a refusal, an error, "check your email")."""
    response = page(
        request,
        "message.html",
        {**(context or {}), "title": title, "text": text},
        status=status,
        link_page=link_page,
    )
    response.headers.update(extra_headers or {})
    return response
