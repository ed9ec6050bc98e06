"""What receipts cost the usage records: writing and verifying a chain, and listing receipts.

    python -m bench.receipts                       # SQLite, 20,000 records, 10 % paid
    python -m bench.receipts --records 50000 --paid 0.5 --postgres-url postgresql+asyncpg://…

A fresh migrated database per run; one account's chain of ``--records`` records, ``--paid`` of
them naming a settled payment in the journal (written through ``payments.journal`` first). The
report gives, per share of paid records (0 and ``--paid``), the median over ``--rounds`` of:
the meter's write of the chain (one batch), ``verify_chain`` over it (which reads each paid
record's receipt through the journal), and ``account_receipts`` for the 30 days.
"""

import argparse
import asyncio
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access.meter import Meter, Receipt, UsageEvent, chain_of, verify_chain
from kamiyo.access.receipts import account_receipts
from kamiyo.db import migrate
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.payments import journal


async def _payments(sessions: async_sessionmaker[AsyncSession], count: int) -> list[Receipt]:
    made = []
    for _ in range(count):
        name = uuid.uuid4().hex
        entry = journal.Entry(name, name, None, "assess_protocol_risk", "eip155:8453", 50_000)
        held = await journal.hold(sessions, entry)
        assert isinstance(held, journal.Held)
        await journal.settled(sessions, held, "0x" + "ab" * 20, "0x" + name * 2, {}, None)
        made.append(Receipt(held.pk, "eip155:8453", "0x" + "ab" * 20, 50_000, "0x" + name * 2))
    return made


async def _run(url: str, records: int, paid: float) -> dict[str, float]:
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        sessions = session_factory(engine)
        receipts = await _payments(sessions, int(records * paid))
        step = int(1 / paid) if paid else 0
        account = uuid.uuid4().int % 10**9  # a chain of its own in a database already used
        now = dt.datetime.now(dt.UTC)
        meter = Meter(flush_interval_s=3600)
        async with meter.running(sessions):
            given = iter(receipts)
            for n in range(records):
                receipt = next(given, None) if step and n % step == 0 else None
                tier = "x402" if receipt else "free"
                meter.record(UsageEvent(now, account, None, "risk", tier, "ok", 900, 1, 1, receipt))
            started = time.perf_counter()
            await meter.flush()
            wrote = time.perf_counter() - started
        async with sessions() as session:
            started = time.perf_counter()
            check = await verify_chain(session, chain_of(account))
            verified = time.perf_counter() - started
            assert (check.ok, check.records) == (True, records), check
            started = time.perf_counter()
            listed = await account_receipts(session, account, now - dt.timedelta(days=30))
            read = time.perf_counter() - started
            assert len(listed) == len(receipts)
        return {"write_s": wrote, "verify_s": verified, "list_receipts_s": read}
    finally:
        await engine.dispose()


async def _main(options: argparse.Namespace) -> dict[str, object]:
    report: dict[str, object] = {"records": options.records}
    backends = {"sqlite": None, "postgresql": options.postgres_url}
    for backend, url in backends.items():
        if backend == "postgresql" and url is None:
            continue
        for share in (0.0, options.paid):
            runs = []
            for _ in range(options.rounds):
                if backend == "sqlite":
                    folder = Path(tempfile.mkdtemp())
                    url = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
                assert url is not None
                runs.append(await _run(url, options.records, share))
            report[f"{backend}_paid_{share:g}"] = {
                name: round(statistics.median(run[name] for run in runs), 3) for name in runs[0]
            }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--paid", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres-url", help="an empty PostgreSQL database (asyncpg URL)")
    report = asyncio.run(_main(parser.parse_args()))
    sys.stderr.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
