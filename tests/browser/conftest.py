"""Fixtures of the browser tests: one served app and one chromium per module (so
tests/processes.py keeps each module on one xdist worker), a fresh browser context per test, and
a page already logged in.

Playwright's sync API marks an asyncio loop as running in this thread while its driver is up,
so the driver stops with the module: the async tests a worker runs next need the thread free.

A new page's test uses ``page`` (a fresh visitor) or ``logged_in_page`` (the module's shared
account, on /dashboard); ``harness.log_in`` logs a page in as an account of its own,
``Served.link_in_newest_mail`` reads a mailed link, ``harness.shoot`` saves a screenshot,
``a11y.violations`` runs axe-core. A failing test leaves screenshots of its pages.
"""

import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.browser.harness import (
    CLOSED_PROXY,
    LOOPBACK,
    Guard,
    Served,
    chromium_or_skip,
    log_in,
    prepare_database,
    serving,
    shoot,
)

TIMEOUT_MS = 10_000  # any one step; a healthy step takes milliseconds


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    chromium_or_skip()  # before the driver starts
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(
        executable_path=chromium_or_skip(),
        headless=True,
        # Whatever is not loopback goes to a port where nothing listens: no test reaches out.
        proxy={"server": CLOSED_PROXY, "bypass": ",".join(LOOPBACK)},
    )
    yield chromium
    chromium.close()


@pytest.fixture(scope="session")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("browser-db") / "kamiyo.db"
    prepare_database(path)
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, database: Path) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("browser"), database) as app:
        yield app


@pytest.fixture(scope="session")
def strict_served(tmp_path_factory: pytest.TempPathFactory, database: Path) -> Iterator[Served]:
    """One app for the whole run that serves nobody without a credential (only then does an
    MCP client start OAuth), shared by the modules that take it as their ``served`` (starting
    one costs seconds; each logs in a few times, well under the per-peer log-in limit)."""
    with serving(
        tmp_path_factory.mktemp("browser-strict"), database, KAMIYO_ALLOW_ANONYMOUS="false"
    ) as app:
        yield app


def new_context(browser: Browser, served: Served, **options: Any) -> BrowserContext:
    context = browser.new_context(
        base_url=served.url,
        permissions=["clipboard-read", "clipboard-write"],
        viewport={"width": 1100, "height": 800},
        **options,
    )
    context.set_default_timeout(TIMEOUT_MS)
    return context


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report


@contextmanager
def watched(request: pytest.FixtureRequest, context: BrowserContext) -> Iterator[BrowserContext]:
    """``context``, closed after the test; its pages' screenshots when the test failed
    (``failed-TEST-N.png``), and a failure when they reached beyond loopback."""
    guard = Guard()
    context.on("request", guard.watch)
    try:
        yield context
    finally:
        if request.node.stash.get(FAILED, False):
            for number, page in enumerate(context.pages):
                shoot(page, f"failed-{request.node.name}-{number}")
        context.close()
    assert guard.outside == [], "pages reached beyond loopback"


@pytest.fixture
def context(
    request: pytest.FixtureRequest, browser: Browser, served: Served
) -> Iterator[BrowserContext]:
    with watched(request, new_context(browser, served)) as context:
        yield context


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def new_address(label: str) -> str:
    """An address no other test of the run uses (each gets its own account)."""
    return f"{label}-{uuid.uuid4().hex[:8]}@example.com"


@pytest.fixture(scope="module")
def signed_in(browser: Browser, served: Served) -> dict[str, Any]:
    """The cookies of one session, logged in once for the module's tests to share."""
    context = new_context(browser, served)
    try:
        log_in(context.new_page(), served, new_address("shared"))
        return dict(context.storage_state())
    finally:
        context.close()


@pytest.fixture
def logged_in_page(
    request: pytest.FixtureRequest, browser: Browser, served: Served, signed_in: dict[str, Any]
) -> Iterator[Page]:
    """A page on /dashboard of the module's shared account (do not log it out)."""
    with watched(request, new_context(browser, served, storage_state=signed_in)) as context:
        page = context.new_page()
        page.goto("/dashboard")
        yield page
