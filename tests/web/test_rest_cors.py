"""CORS on the REST API: off unless origins are configured, then only for those origins."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx2
import pytest

from kamiyo.config import DatabaseSettings, Settings, SiteSettings
from kamiyo.mcpserver.server import build_server
from kamiyo.web.app import create_app

pytestmark = pytest.mark.anyio

PAGE = "https://app.example.com"
SEARCH = "/api/v1/exploits?query=euler"
Serve = Callable[[list[str]], AbstractAsyncContextManager[httpx2.AsyncClient]]


@pytest.fixture
def serve(empty_database_url: str) -> Serve:
    @asynccontextmanager
    async def serving(origins: list[str]) -> AsyncIterator[httpx2.AsyncClient]:
        settings = Settings(
            database=DatabaseSettings(url=empty_database_url),
            site=SiteSettings(cors_origins=origins),
            environment="test",
            _env_file=None,
        )
        app = create_app(settings, build_server)
        async with app.router.lifespan_context(app):
            transport = httpx2.ASGITransport(app=app, client=("198.51.100.9", 40000))
            async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
                yield http

    return serving


def _preflight(origin: str, method: str = "GET") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, payment-signature, kamiyo-bundle-token",
    }


async def test_without_origins_no_page_on_another_origin_may_read_answers(serve: Serve) -> None:
    async with serve([]) as http:
        answer = await http.get(SEARCH, headers={"Origin": PAGE})
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers
        preflight = await http.options(SEARCH, headers=_preflight(PAGE))
        assert preflight.status_code == 405


async def test_a_configured_origin_may_call_with_payment_and_bundle_headers(
    serve: Serve,
) -> None:
    async with serve([PAGE]) as http:
        preflight = await http.options(SEARCH, headers=_preflight(PAGE))
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == PAGE
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert {"authorization", "payment-signature", "kamiyo-bundle-token"} <= {
            h.strip() for h in allowed.split(",")
        }
        assert "access-control-allow-credentials" not in preflight.headers
        answer = await http.get(SEARCH, headers={"Origin": PAGE})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == PAGE
        assert "PAYMENT-REQUIRED" in answer.headers["access-control-expose-headers"]
        other = await http.options(SEARCH, headers=_preflight("https://evil.example"))
        assert other.status_code == 400  # Starlette refuses a preflight from any other origin
        assert "access-control-allow-origin" not in other.headers
        wrong_method = await http.options(SEARCH, headers=_preflight(PAGE, "DELETE"))
        assert wrong_method.status_code == 400
