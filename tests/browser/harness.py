"""What the browser tests share: the served app, the browser, the mails, the screenshots.

The app is a real ``kamiyo serve --transport http`` on loopback (SQLite in its data folder),
its public URL its own loopback address, mailing through the real SMTP server of
``tests/billing/smtp.py``; the browser is Debian's chromium, driven by Playwright's sync API
(its driver comes in the wheel: no browser is downloaded). A page that reaches for anything but
loopback is a failure: the context records such requests (``Guard``) and every other address is
sent to a closed proxy port, so nothing leaves the machine.

The log-in form is limited to 10 posts a minute per peer, and the browser is always 127.0.0.1:
a test module logs in fewer times than that (``conftest.signed_in`` logs in once a module).
"""

import itertools
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from playwright.sync_api import Dialog, Page, Request

from kamiyo.access import accounts
from kamiyo.config import DatabaseSettings, Settings
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.db.tables import Role
from kamiyo.runtime import open_runtime
from kamiyo.tiers import Tier
from tests.billing.smtp import Mailbox, Received, running_mailbox
from tests.mcpserver.conftest import _wait_until_healthy, free_port, server_env

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; `make browser` installs it
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
MAIL_TIMEOUT_S = 10
LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")
# Chromium sends whatever is not loopback to this proxy, where nothing listens.
CLOSED_PROXY = "http://127.0.0.1:9"
T = TypeVar("T")


def chromium_or_skip() -> str:
    """Chromium's path; the test skips with the reason without it, and fails under CI."""
    if not os.access(CHROMIUM, os.X_OK):
        reason = (
            f"{CHROMIUM} is not installed: `make browser` installs Debian's chromium "
            "(as root, with apt-get)"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return str(CHROMIUM)


@dataclass(frozen=True)
class Served:
    url: str  # also its KAMIYO_PUBLIC_URL
    folder: Path  # its data folder and log
    mailbox: Mailbox

    def link_in_newest_mail(self, address: str, count: int) -> str:
        """The log-in link of the ``count``-th mail to ``address``, once it arrived."""
        mail = self.wait_for_mail(address, count)
        links = re.findall(re.escape(self.url) + r"/login/[A-Za-z0-9_-]+", mail.text)
        assert len(links) == 1, mail.text
        return str(links[0])

    def scalar(self, query: str, *params: object) -> Any:
        """The one value ``query`` selects from the app's database (read only; this module's
        own queries: the tests check what the pages say against what is stored)."""
        path = self.folder / "data" / "kamiyo.db"
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            return connection.execute(query, params).fetchone()[0]

    def wait_for_mail(self, address: str, count: int) -> Received:
        """The ``count``-th mail to ``address`` (mail goes out after the page answered)."""
        deadline = time.monotonic() + MAIL_TIMEOUT_S
        while len(mails := self.mailbox.to(address)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(mails)} of {count} mails to {address} arrived")
            time.sleep(0.02)  # the SMTP server's thread fills the mailbox
        return mails[count - 1]


def prepare_database(path: Path) -> None:
    """A SQLite database migrated and loaded with the bundled data at ``path``: each served
    app starts on a copy (migrating and loading take seconds)."""

    async def prepare() -> None:
        url = f"sqlite+aiosqlite:///{path}"
        settings = Settings(database=DatabaseSettings(url=url), environment="test", _env_file=None)
        async with open_runtime(settings, upgrade=True):
            pass

    run_async(prepare)


def run_async(function: Callable[[], Awaitable[T]]) -> T:
    """``function`` run to its end, in a thread of its own (Playwright's sync API keeps an
    event loop in this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, function).result()


@contextmanager
def serving(folder: Path, database: Path, **settings: str) -> Iterator[Served]:
    """``kamiyo serve --transport http`` on a free loopback port, on a copy of ``database``,
    mailing to a real SMTP server, without Stripe (the plan page says billing is not set up);
    ``settings`` are more of its environment variables."""
    (folder / "data").mkdir()
    shutil.copyfile(database, folder / "data" / "kamiyo.db")  # where KAMIYO_DATA_DIR puts it
    with running_mailbox() as mailbox:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = server_env(folder) | mailbox.env() | {"KAMIYO_PUBLIC_URL": url} | settings
        log_path = folder / "server.log"
        command = [sys.executable, "-m", "kamiyo", "serve", "--transport", "http"]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                cwd=folder,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            _wait_until_healthy(f"{url}/healthz", process)
            yield Served(url, folder, mailbox)
        finally:
            process.terminate()
            process.wait(timeout=30)
        assert "Traceback" not in log_path.read_text()


def change_account(
    served: Served, address: str, *, tier: Tier | None = None, role: Role | None = None
) -> None:
    """What ``kamiyo accounts set-tier`` / ``set-role`` do, done here on the served app's
    database through the same functions (the CLI costs seconds to start). The app reads an
    account's tier and role at each request (its tier cache holds only credentials that
    already called)."""

    async def change() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{served.folder / 'data' / 'kamiyo.db'}")
        try:
            async with session_factory(engine)() as session:
                account = await accounts.require_account(session, address)
                if tier is not None:
                    await accounts.set_tier(session, account, tier)
                if role is not None:
                    accounts.set_role(account, role)
                await session.commit()
        finally:
            await engine.dispose()

    run_async(change)


@dataclass
class Guard:
    """Records the requests a page makes to anything but loopback."""

    outside: list[str] = field(default_factory=list)

    def watch(self, request: Request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in {"http", "https", "ws", "wss"} and parts.hostname not in LOOPBACK:
            self.outside.append(request.url)


def shoot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """A screenshot of the whole page (else of the window), ``test-artifacts/browser/NAME.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=path, full_page=full_page)
    return path


def ask_for_link(page: Page, served: Served, address: str) -> str:
    """Ask for a log-in link on /login, as a person does; the link the mail brings."""
    count = len(served.mailbox.to(address)) + 1
    page.goto(f"{served.url}/login")
    page.get_by_label("Email address").fill(address)
    page.get_by_role("button", name="Mail me a log-in link").click()
    page.get_by_role("heading", name="Check your email").wait_for()
    return served.link_in_newest_mail(address, count)


def log_in(page: Page, served: Served, address: str) -> None:
    """From /login to the dashboard through the mailed link."""
    page.goto(ask_for_link(page, served, address))
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{served.url}/dashboard")


def accept_dialogs(page: Page) -> list[str]:
    """Accept the page's confirm dialogs from now on; the list of their messages."""
    messages: list[str] = []

    def accept(dialog: Dialog) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    return messages


def replace_text(page: Page, secret: str, shown: str) -> None:
    """Put ``shown`` in place of ``secret`` in the page's text (before a screenshot)."""
    page.evaluate(
        """([secret, shown]) => {
            const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
            while (walk.nextNode()) {
                walk.currentNode.nodeValue = walk.currentNode.nodeValue.replaceAll(secret, shown);
            }
        }""",
        [secret, shown],
    )


def remote_connection(config_text: str) -> tuple[str, dict[str, str]]:
    """The URL and headers Claude Desktop's config makes ``mcp-remote`` use: its ``--header``
    arguments with ``${VAR}`` filled in from the entry's ``env``, as mcp-remote does."""
    [entry] = json.loads(config_text)["mcpServers"].values()
    args, env = entry["args"], entry.get("env", {})
    [url] = [arg for arg in args if arg.startswith(("http://", "https://"))]
    headers = {}
    for flag, value in itertools.pairwise(args):
        if flag == "--header":
            name, _, template = value.partition(":")
            headers[name] = re.sub(r"\$\{(\w+)\}", lambda var: env[var[1]], template)
    return url, headers


def call_tool(url: str, headers: dict[str, str], tool: str, arguments: dict[str, Any]) -> Any:
    """``tool`` called through the SDK's client over streamable HTTP; its structured result."""

    async def call() -> Any:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            result = await client.call_tool(tool, arguments)
            assert result.is_error is not True, result.content
            return result.structured_content

    return run_async(call)


def mcp_status(url: str, headers: dict[str, str]) -> tuple[int, str]:
    """The status and body of an ``initialize`` posted to ``url`` with ``headers``."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "browser-tests", "version": "1"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}
    with httpx2.Client(timeout=30) as http:
        answer = http.post(url, json=initialize, headers=accept | headers)
    return answer.status_code, answer.text
