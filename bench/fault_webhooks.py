"""Alert webhooks during a fault run: delivered once each, or twice?

Two alert rules (no filter) post to ``bench/webhook_receiver.py``, a receiver in a process of
its own on loopback that prints every POST's ``webhook-id``. While the load runs, this process
ingests a new incident every ``INGEST_EVERY_S`` through the real ingest path (its outbox row is
written with it); both instances run their alerts worker (the default), which turns each
change into one delivery per rule and posts it. Ingests that fail while the fault lasts are
counted, not retried. At the end the run waits for every delivery to leave ``pending`` (a
bound, not a delay), then counts the receiver's POSTs per webhook id: an id received more than
once was delivered twice (a receiver that dedupes on webhook-id, as Standard Webhooks asks,
would drop the second).
"""

import asyncio
import contextlib
import datetime as dt
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.alerts import receiver
from kamiyo.alerts.secrets import new_secret, seal
from kamiyo.config import Settings
from kamiyo.db.alerts import AlertRule
from kamiyo.intel.reports import SourceReport
from kamiyo.intel.store import Store
from kamiyo.runtime import open_runtime

SECRET_KEY = "bench-faults-" + "k" * 40
RULES = 2
INGEST_EVERY_S = 2.0
SETTLE_S = 120  # how long the end waits for pending deliveries: a bound for a broken run


def instance_env() -> dict[str, str]:
    """What the instances need to deliver to a receiver on loopback with the rules' secret."""
    return {"KAMIYO_SECRET_KEY": SECRET_KEY, "KAMIYO_WEBHOOKS_ALLOW_LOOPBACK": "true"}


@dataclass
class Webhooks:
    database_url: str  # postgresql+asyncpg://…
    received: Counter[str] = field(default_factory=Counter)
    ingested: int = 0
    ingest_failed: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _process: subprocess.Popen[str] | None = None

    def _settings(self) -> Settings:
        return Settings(
            environment="test",
            database={"url": self.database_url},
            auth={"secret_key": SecretStr(SECRET_KEY)},
            log={"level": "WARNING"},
            _env_file=None,
        )

    async def start(self) -> None:
        self._process, hook = receiver()
        threading.Thread(target=self._read, daemon=True).start()
        secret = seal(SecretStr(SECRET_KEY), new_secret())
        rules = [
            AlertRule(
                id=f"alr_faults{n}",
                payer="0x" + "22" * 20,
                name=f"faults {n}",
                filters={},
                webhook_url=hook,
                secret=secret,
                enabled=True,
                failures=0,
                created_at=dt.datetime.now(dt.UTC),
            )
            for n in range(RULES)
        ]
        async with open_runtime(self._settings(), upgrade=False) as runtime:
            await _add(runtime.sessions, rules)

    def _read(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.received[line.split()[1]] += 1

    async def ingest_until_stopped(self) -> None:
        async with open_runtime(self._settings(), upgrade=False) as runtime:
            while not self._stop.is_set():
                try:
                    async with runtime.sessions() as session:
                        store = await Store.load(session)
                        await store.ingest(session, [_report()], origin="live")
                        await session.commit()
                    self.ingested += 1
                except Exception:  # the fault: the database is away, this one is skipped
                    self.ingest_failed += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), INGEST_EVERY_S)

    def stop_ingesting(self) -> None:
        self._stop.set()

    async def settled(self) -> dict[str, int]:
        """Wait until no delivery is pending (up to SETTLE_S); deliveries by status."""
        plain = self.database_url.replace("+asyncpg", "")
        deadline = time.monotonic() + SETTLE_S
        while True:
            connection = await asyncpg.connect(plain)
            try:
                rows = await connection.fetch(
                    "SELECT status, count(*) AS n FROM alert_deliveries GROUP BY status"
                )
                outbox_left = await connection.fetchval(
                    "SELECT count(*) FROM outbox WHERE done_at IS NULL"
                )
            finally:
                await connection.close()
            statuses = {row["status"]: int(row["n"]) for row in rows}
            if (not statuses.get("pending") and not outbox_left) or time.monotonic() > deadline:
                return statuses | {"outbox_left": int(outbox_left)}
            await asyncio.sleep(0.5)  # polling the workers' progress, not waiting out a delay

    def close(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=30)

    def report(self, statuses: dict[str, int]) -> dict[str, Any]:
        twice = {webhook_id: n for webhook_id, n in self.received.items() if n > 1}
        return {
            "incidents_ingested": self.ingested,
            "ingests_failed_in_fault": self.ingest_failed,
            "deliveries": statuses,
            "posts_received": sum(self.received.values()),
            "webhook_ids_received": len(self.received),
            "received_more_than_once": len(twice),
            "most_received": max(twice.values(), default=1),
        }


async def _add(sessions: async_sessionmaker[AsyncSession], rules: list[AlertRule]) -> None:
    async with sessions() as session:
        session.add_all(rules)
        await session.commit()


def _report() -> SourceReport:
    return SourceReport(
        source="defillama",
        source_id=f"faults-{uuid.uuid4().hex[:12]}",
        url="https://example.org/faults",
        date=dt.datetime.now(dt.UTC).date(),
        protocol=f"Fault Protocol {uuid.uuid4().hex[:8]}",
        chains=["ethereum"],
        loss_usd=1_000_000,
        loss_usd_basis="usd",
        loss_text="$1M",
        attack_type_raw="Reentrancy",
        description="A synthetic incident for the fault runs' webhooks.",
    )
