"""What every dashboard page carries: security headers, accessible markup, the vendored htmx
(checksum as its README says), static files that ship in the package."""

import hashlib
import re
from importlib import resources

import pytest

from kamiyo.web.dashboard import render
from tests.web.dashboard.conftest import Site

pytestmark = pytest.mark.anyio

PAGES = ("/dashboard", "/dashboard/keys", "/dashboard/setup", "/dashboard/plan")


def check_headers(headers: dict[str, str]) -> None:
    csp = headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "style-src 'self';" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"


async def test_every_page_has_the_security_headers_and_accessible_markup(site: Site) -> None:
    login = await site.http.get("/login")
    check_headers(dict(login.headers))
    assert '<label for="email">' in login.text
    assert '<main id="main"' in login.text
    csrf = await site.log_in("pages@example.com")
    for path in PAGES:
        page = await site.http.get(path)
        assert page.status_code == 200, path
        check_headers(dict(page.headers))
        assert page.headers["referrer-policy"] == "same-origin"
        text = page.text
        assert '<html lang="en">' in text
        assert '<nav aria-label="Dashboard">' in text
        assert f'hx-headers=\'{{"X-CSRF-Token": "{csrf}"}}\'' in text
        assert "<script>" not in text  # nothing inline: the CSP would block it
        assert " style=" not in text
        for field in re.findall(r'<input id="([^"]+)"', text):  # every visible field labelled
            assert f'<label for="{field}">' in text, (path, field)


async def test_the_static_files_are_served_and_htmx_matches_its_checksum(site: Site) -> None:
    readme = resources.files("kamiyo.web").joinpath("static/dashboard/vendor/README.md")
    text = readme.read_text(encoding="utf-8")
    version = re.search(r"\| (2\.\d+\.\d+) \|", text)
    checksum = re.search(r"`([0-9a-f]{64})`", text)
    assert version is not None
    assert checksum is not None
    htmx = await site.http.get(f"{render.STATIC}/vendor/htmx.min.js")
    assert htmx.status_code == 200
    assert "javascript" in htmx.headers["content-type"]
    assert hashlib.sha256(htmx.content).hexdigest() == checksum[1]
    assert f'version:"{version[1]}"' in htmx.text.replace(" ", "")
    for name in ("dashboard.css", "dashboard.js", "vendor/htmx.LICENSE"):
        assert (await site.http.get(f"{render.STATIC}/{name}")).status_code == 200, name
    assert (
        await site.http.get(f"{render.STATIC}/../templates/dashboard/base.html")
    ).status_code == 404
