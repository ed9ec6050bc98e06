"""The app in process (httpx ASGITransport, with its lifespan) on a fresh SQLite database, a
real SMTP server for the log-in mails, and a fake Stripe for the plan page."""

import platform
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.config import DatabaseSettings, Settings
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.mcpserver.server import build_server
from kamiyo.runtime import open_runtime
from kamiyo.web.app import create_app
from tests.billing.conftest import PUBLIC_URL, billing_settings
from tests.billing.smtp import Mailbox, Received, running_mailbox
from tests.billing.stripe_fake import FakeStripe, running_fake_stripe

Sessions = async_sessionmaker[AsyncSession]

# The Stripe library asks platform for the processor once per process, which runs `uname -p`:
# asked here, at collection, so that no test is seen starting a process (tests/processes.py).
platform.uname().processor  # noqa: B018
LOGIN_LINK = re.compile(re.escape(PUBLIC_URL) + r"/login/[A-Za-z0-9_-]{43}")
CSRF_FIELD = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def login_path(mail: Received) -> str:
    [link] = LOGIN_LINK.findall(mail.text)
    return str(link).removeprefix(PUBLIC_URL)


@dataclass
class Site:
    http: httpx2.AsyncClient
    settings: Settings
    sessions: Sessions  # the app's database, opened separately
    mailbox: Mailbox
    stripe: FakeStripe
    transport: httpx2.ASGITransport

    def browser(self, cookies: dict[str, str] | None = None) -> httpx2.AsyncClient:
        """Another browser (its own cookies) on the same app."""
        return httpx2.AsyncClient(transport=self.transport, base_url=PUBLIC_URL, cookies=cookies)

    async def login_link(self, email: str, http: httpx2.AsyncClient | None = None) -> str:
        """Ask for a log-in link; the path of the link the mail carries."""
        email = email.strip().lower()  # as the mail is addressed
        before, total = len(self.mailbox.to(email)), len(self.mailbox.received)
        answer = await (http or self.http).post("/login", data={"email": email.upper()})
        assert answer.status_code == 200, answer.text
        assert "Check your email" in answer.text
        await self.mailbox.arrived(total + 1, timeout_s=10)  # mail goes out after the answer
        mails = self.mailbox.to(email)
        assert len(mails) == before + 1
        return login_path(mails[-1])

    async def log_in(self, email: str, http: httpx2.AsyncClient | None = None) -> str:
        """Log in through the mailed link; the session's CSRF token."""
        client = http or self.http
        answer = await client.post(await self.login_link(email, client))
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/dashboard"
        return await self.csrf(client)

    async def csrf(self, http: httpx2.AsyncClient | None = None) -> str:
        page = await (http or self.http).get("/dashboard")
        assert page.status_code == 200, page.text
        return str(CSRF_FIELD.findall(page.text)[0])


async def open_site(
    database_url: str,
    stripe: FakeStripe,
    mailbox: Mailbox,
    changes: dict[str, dict[str, Any]] | None = None,
    *,
    stateless: bool = False,
    json_response: bool = False,
) -> AsyncIterator[Site]:
    """``stateless``, ``json_response``: the MCP endpoint's, as ``create_app`` takes them."""
    settings = billing_settings(database_url, stripe, mailbox, **(changes or {}))
    app = create_app(settings, build_server, stateless=stateless, json_response=json_response)
    async with app.router.lifespan_context(app):  # ASGITransport sends no lifespan events
        engine = create_engine(database_url)
        transport = httpx2.ASGITransport(app=app, client=("198.51.100.7", 40000))
        try:
            async with httpx2.AsyncClient(transport=transport, base_url=PUBLIC_URL) as http:
                yield Site(http, settings, session_factory(engine), mailbox, stripe, transport)
        finally:
            await engine.dispose()


@pytest.fixture(scope="session")
async def migrated_sqlite(anyio_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated and loaded once; each test starts from a copy of it (the
    migrations and the bundled data take most of a second)."""
    path = tmp_path_factory.mktemp("dashboard-db") / "template.db"
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{path}"),
        environment="test",
        _env_file=None,
    )
    async with open_runtime(settings, upgrade=True):
        pass
    return path


@pytest.fixture
def sqlite_url(migrated_sqlite: Path, tmp_path: Path) -> str:
    """A fresh database of this test's own."""
    path = tmp_path / f"kamiyo-{uuid.uuid4().hex[:8]}.db"
    shutil.copyfile(migrated_sqlite, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def site(sqlite_url: str) -> AsyncIterator[Site]:
    with running_fake_stripe() as stripe, running_mailbox() as mailbox:
        async for opened in open_site(sqlite_url, stripe, mailbox):
            yield opened
