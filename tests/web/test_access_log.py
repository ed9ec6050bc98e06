"""What log lines show of a request target: one view, for uvicorn's access log and our own."""

import logging

import httpx2
import pytest

from kamiyo.config import Settings
from kamiyo.mcpserver.server import build_server
from kamiyo.web import access_log
from kamiyo.web.app import create_app

SCREENED = "0xb66cd966670d962c227b3eaba30a872dbfb995db"


@pytest.fixture
def app_view() -> access_log.AccessLogView:
    create_app(Settings(environment="test", _env_file=None), build_server)  # installs its view
    [view] = [
        f
        for f in logging.getLogger(access_log.ACCESS_LOGGER).filters
        if isinstance(f, access_log.AccessLogView)
    ]
    return view


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        (f"/api/v1/wallets/{SCREENED}?chain=ethereum", "/api/v1/wallets/[address]"),
        (f"/api/v1/exploits?address={SCREENED}", "/api/v1/exploits"),
        ("/keys/reveal/AbC-123_token", "/keys/reveal/[token]"),
        ("/api/v1/exploits/20230313_eulerfinance", "/api/v1/exploits/20230313_eulerfinance"),
        ("/mcp", "/mcp"),
        ("/nowhere?q=1", "/nowhere"),
    ],
)
def test_the_view_shows_paths_only(
    app_view: access_log.AccessLogView, target: str, shown: str
) -> None:
    assert app_view.path(target) == shown
    assert access_log.logged_path(target) == shown


def test_one_view_is_installed_however_often_an_app_is_built(
    app_view: access_log.AccessLogView,
) -> None:
    settings = Settings(environment="test", _env_file=None)
    create_app(settings, build_server)
    views = [
        f
        for f in logging.getLogger(access_log.ACCESS_LOGGER).filters
        if isinstance(f, access_log.AccessLogView)
    ]
    assert len(views) == 1


def test_uvicorn_records_are_rewritten(app_view: access_log.AccessLogView) -> None:
    record = logging.LogRecord(
        access_log.ACCESS_LOGGER,
        logging.INFO,
        "h11_impl.py",
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/api/v1/wallets/{SCREENED}?chain=bsc", "1.1", 403),
        None,
    )
    assert app_view.filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /api/v1/wallets/[address] HTTP/1.1" 403'


@pytest.mark.anyio
async def test_a_401_names_the_path_as_the_access_log_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(Settings(environment="test", _env_file=None), build_server)
    caplog.set_level(logging.INFO, "kamiyo.web.auth")
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        answer = await http.get(
            f"/api/v1/wallets/{SCREENED}", headers={"Authorization": "Basic abc"}
        )
    assert answer.status_code == 401
    assert "401 on GET /api/v1/wallets/[address]" in caplog.text
    assert SCREENED not in caplog.text
