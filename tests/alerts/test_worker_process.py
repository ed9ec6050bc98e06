"""``kamiyo worker`` as an operator runs it: killed in the middle of a delivery and started
again, it sends the delivery again under the same webhook-id (receivers dedupe on it) and
records it delivered once."""

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from kamiyo.alerts.secrets import new_secret, seal
from kamiyo.config import DatabaseSettings, Settings
from kamiyo.db.alerts import AlertDelivery, AlertRule
from kamiyo.runtime import open_runtime
from tests.alerts.receiver import Answer, Receiver
from tests.alerts.test_delivery import NOW
from tests.intel.test_store import ingest, report
from tests.mcpserver.conftest import server_env

pytestmark = pytest.mark.anyio

SECRET_KEY = "worker-test-" + "k" * 40


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def start_worker(tmp_path: Path, url: str, log_name: str) -> subprocess.Popen[bytes]:
    env = server_env(tmp_path) | {
        "KAMIYO_DATABASE_URL": url,
        "KAMIYO_ENVIRONMENT": "test",
        "KAMIYO_SECRET_KEY": SECRET_KEY,
        "KAMIYO_WEBHOOKS_ALLOW_LOOPBACK": "true",
        "KAMIYO_ALERTS_LEASE_S": "2",
        "KAMIYO_ALERTS_POLL_S": "0.1",
    }
    with (tmp_path / log_name).open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "kamiyo", "worker"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=log,
        )


async def wait_for(check: object, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_killed_worker_is_taken_over_and_delivers_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'kamiyo.db'}"
    settings = Settings(database=DatabaseSettings(url=url), environment="test", _env_file=None)
    async with open_runtime(settings, upgrade=True) as runtime:
        async with runtime.sessions() as session:
            session.add(
                AlertRule(
                    id="alr_all",
                    payer="0x" + "11" * 20,
                    name="everything",
                    filters={},
                    webhook_url=receiver.url(),
                    secret=seal(SecretStr(SECRET_KEY), new_secret()),
                    enabled=True,
                    failures=0,
                    created_at=NOW,
                )
            )
            await session.commit()
            await ingest(session, [report()])

        first_gone = threading.Event()
        receiver.reply = Answer(200, until=first_gone)  # answers only after the worker is gone
        first = start_worker(tmp_path, url, "worker-1.log")
        try:

            async def posted() -> bool:
                return len(receiver.posts) == 1

            await wait_for(posted)
        finally:
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=10)
            first_gone.set()
        receiver.reply = Answer(200)

        second = start_worker(tmp_path, url, "worker-2.log")
        try:

            async def delivered() -> bool:
                async with runtime.sessions() as session:
                    status = await session.scalar(select(AlertDelivery.status))
                return status == "delivered"

            await wait_for(delivered)
        finally:
            second.send_signal(signal.SIGINT)
            out, _ = second.communicate(timeout=30)
        assert out == b""  # stdout is not the worker's: logs go to stderr
        async with runtime.sessions() as session:
            delivery = await session.scalar(select(AlertDelivery))
        assert delivery is not None
        assert (delivery.status, delivery.attempts) == ("delivered", 1)
        assert [post.headers["webhook-id"] for post in receiver.posts] == [delivery.id] * 2
        assert "Traceback" not in (tmp_path / "worker-2.log").read_text()
