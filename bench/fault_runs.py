"""The fault runs of ``bench/faults.py``: each starts its own services and two instances.

Faults: ``redis`` (redis-server SIGKILLed, restarted on its port), ``postgres`` (the cluster
stopped in immediate mode, SIGQUIT, and started again), ``kill`` (instance i1 SIGKILLed, not
restarted), ``rpc`` (the x402 payment RPC answering 503, then hanging, mid-run; anvil behind a
proxy), ``disk`` (SQLite on a tmpfs that a filler file fills, then frees). Each run: ``--warm``
seconds of load, the fault for ``--outage`` seconds, ``--after`` seconds more; then the
instances are stopped cleanly (SIGTERM, which flushes the meter) and the usage records are
counted against the calls answered ok.
"""

import argparse
import asyncio
import datetime as dt
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench.fault_load import Load, examples, kinds, recovery_s
from bench.fault_rig import Instance, base_env, enterprise_keys, kamiyo, start_instances
from bench.fault_webhooks import Webhooks, instance_env
from tests.private_services import PrivatePostgres, PrivateRedis, private_postgres, private_redis

LOGS = Path(__file__).parent / "results" / "fault-logs"
KEYS = 4  # enterprise accounts: 500 calls a minute each, above the default load's share
FLUSH_S = 1.0  # KAMIYO_METER_FLUSH_S: the bound on what a SIGKILL loses


@dataclass
class Timing:
    warm: float
    outage: float
    after: float


@dataclass
class Row:
    fault: str
    seen: dict[str, int]
    messages: dict[str, str]
    body_tracebacks: int
    log_tracebacks: int
    recovery: dict[str, float | None]
    answered_ok: int
    recorded_ok: int
    settled_twice: int | str = 0
    webhooks_twice: str = "n/a (no alert webhooks in the run)"
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return max(0, self.answered_ok - self.recorded_ok)


@dataclass
class Rig:
    folder: Path
    env: dict[str, str]
    keys: list[str]
    instances: list[Instance]
    database: str  # postgresql://… for asyncpg, or a SQLite file's path

    @property
    def urls(self) -> dict[str, str]:
        return {i.name: i.url for i in self.instances}


@contextmanager
def services(folder: Path) -> Iterator[tuple[PrivatePostgres, PrivateRedis, dict[str, str]]]:
    with private_postgres() as cluster, private_redis(folder) as redis:
        url = cluster.create_database("faults")
        env = {
            "KAMIYO_DATABASE_URL": url,
            "KAMIYO_REDIS_URL": redis.url,
            "KAMIYO_REDIS_PREFIX": "faults",
            "KAMIYO_METER_FLUSH_S": str(FLUSH_S),
        }
        yield cluster, redis, env


@contextmanager
def rig(folder: Path, extra: dict[str, str], database: str) -> Iterator[Rig]:
    env = base_env(folder) | extra
    kamiyo(env, "db", "upgrade")
    keys = enterprise_keys(env, KEYS)
    instances = start_instances(env, folder)
    try:
        yield Rig(folder, env, keys, instances, database)
    finally:
        for instance in instances:
            instance.stop()
        # The run's folder goes at its end; the logs stay, to read what the table counts.
        LOGS.mkdir(parents=True, exist_ok=True)
        for instance in instances:
            shutil.copyfile(instance.log, LOGS / f"{folder.name.split('-')[2]}-{instance.name}.log")


async def ok_records(database: str) -> int:
    query = "SELECT count(*) FROM usage_records WHERE status = 'ok'"
    if database.startswith("postgresql"):
        connection = await asyncpg.connect(database)
        try:
            return int(await connection.fetchval(query))
        finally:
            await connection.close()
    with sqlite3.connect(database) as connection:
        return int(connection.execute(query).fetchone()[0])


async def settled_in_journal(database: str) -> int:
    """Payments the instances' shared journal holds as settled (one row per payment)."""
    connection = await asyncpg.connect(database)
    try:
        query = "SELECT count(*) FROM payments WHERE state = 'settled'"
        return int(await connection.fetchval(query))
    finally:
        await connection.close()


async def last_flush_at(database: str, pid: int) -> float:
    """When the instance with ``pid`` last wrote usage (wall clock, seconds)."""
    query = "SELECT last_flush_at FROM serving_instances WHERE pid = $1"
    connection = await asyncpg.connect(database)
    try:
        stamp = await connection.fetchval(query, pid)
    finally:
        await connection.close()
    if stamp.tzinfo is None:  # stored as UTC
        stamp = stamp.replace(tzinfo=dt.UTC)
    return float(stamp.timestamp())


async def loaded(
    load: Load, fault: Callable[[], Awaitable[float | None]], timing: Timing
) -> float | None:
    """Run ``load``; after ``warm`` s call ``fault`` (returns when the service is back, or None
    when it is not brought back); ``after`` s later stop. Returns the back time."""
    task = asyncio.create_task(load.run())
    await asyncio.sleep(timing.warm)
    back = await fault()
    await asyncio.sleep(timing.after)
    load.stop()
    await task
    return back


def row_for(name: str, load: Load, rig_: Rig, back: float | None, recorded: int) -> Row:
    answers = load.answers
    return Row(
        fault=name,
        seen=dict(kinds(answers).most_common()),
        messages=examples(answers),
        body_tracebacks=sum(a.traceback for a in answers),
        log_tracebacks=sum(i.tracebacks() for i in rig_.instances),
        recovery={
            i.name: (None if back is None else recovery_s(answers, back, i.name))
            for i in rig_.instances
        },
        answered_ok=sum(a.ok for a in answers),
        recorded_ok=recorded,
        notes=[
            f"log {i.name}: {count} x {line}"
            for i in rig_.instances
            for line, count in i.warnings().most_common(6)
        ],
    )


def outage(
    stop: Callable[[], None], start: Callable[[], None], seconds: float
) -> Callable[[], Awaitable[float]]:
    async def run() -> float:
        await asyncio.to_thread(stop)
        await asyncio.sleep(seconds)
        await asyncio.to_thread(start)
        return time.monotonic()

    return run


async def run_service_fault(name: str, args: argparse.Namespace) -> Row:
    """``redis`` or ``postgres``: the service stops under the load and comes back."""
    timing = Timing(args.warm, args.outage, args.after)
    with tempfile.TemporaryDirectory(prefix=f"kamiyo-faults-{name}-") as tmp:
        folder = Path(tmp)
        with services(folder) as (cluster, redis, env):
            env |= instance_env()
            database = env["KAMIYO_DATABASE_URL"].replace("+asyncpg", "")
            hooks = Webhooks(env["KAMIYO_DATABASE_URL"])
            try:
                with rig(folder, env, database) as r:
                    await hooks.start()  # rules and a receiver (bench/fault_webhooks.py)
                    ingesting = asyncio.create_task(hooks.ingest_until_stopped())
                    load = Load(r.urls, r.keys, rate=args.rate)
                    if name == "redis":
                        fault = outage(redis.kill, redis.start, timing.outage)
                    else:
                        fault = outage(cluster.stop, cluster.start, timing.outage)
                    back = await loaded(load, fault, timing)
                    hooks.stop_ingesting()
                    await ingesting
                    deliveries = await hooks.settled()
            finally:
                hooks.close()
            row = row_for(name, load, r, back, await ok_records(database))
    webhooks = hooks.report(deliveries)
    row.webhooks_twice = str(webhooks["received_more_than_once"])
    row.notes.append(f"webhooks: {webhooks}")
    return row


async def run_kill(args: argparse.Namespace) -> Row:
    """i1 SIGKILLed under the load and left down; i2 keeps serving."""
    timing = Timing(args.warm, args.outage, args.after)
    killed_wall, killed_pid = 0.0, 0
    with tempfile.TemporaryDirectory(prefix="kamiyo-faults-kill-") as tmp:
        folder = Path(tmp)
        with services(folder) as (_cluster, _redis, env):
            database = env["KAMIYO_DATABASE_URL"].replace("+asyncpg", "")
            with rig(folder, env, database) as r:
                load = Load(r.urls, r.keys, rate=args.rate)

                async def fault() -> None:
                    nonlocal killed_wall, killed_pid
                    killed_wall = time.time()
                    assert r.instances[0].process is not None
                    killed_pid = r.instances[0].process.pid
                    await asyncio.to_thread(r.instances[0].kill)
                    await asyncio.sleep(timing.outage)

                await loaded(load, fault, timing)
                verify = await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, "-m", "kamiyo", "usage", "verify"],
                    env=r.env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
            row = row_for("kill", load, r, None, await ok_records(database))
            # The bound: what i1 answered ok after its last usage write took its batch (the
            # meter's stamp in serving_instances); nothing answered before it can be missing.
            last_write = await last_flush_at(database, killed_pid)
    killed = [a for a in load.answers if a.instance == "i1"]
    bound = sum(1 for a in killed if a.ok and a.ended >= last_write)
    survivor = kinds([a for a in load.answers if a.instance == "i2"])
    row.recovery = {"i1": None, "i2": 0.0 if set(survivor) == {"mcp: ok", "rest: ok"} else None}
    row.notes += [
        f"i1 (killed): {dict(kinds(killed).most_common())}",
        f"i2 (kept serving): {dict(survivor.most_common())}",
        f"metering lost {row.lost} ok calls; bound: i1 answered {bound} ok calls after its last "
        f"usage write, {killed_wall - last_write:.2f} s before "
        f"the kill (it writes every {FLUSH_S:.0f} s)",
        "kamiyo usage verify: " + " ".join(verify.stderr.split())[-300:],
    ]
    return row


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (needs root): a disk that can really be full."""
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> Path:
    """Write a filler file until the filesystem is full."""
    filler = folder / "filler"
    chunk = b"\0" * (1 << 20)
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError:  # ENOSPC: full, which is the point
            pass
    small = b"\0" * 4096
    with filler.open("ab", buffering=0) as out:  # the last partial megabyte too
        try:
            while True:
                out.write(small)
        except OSError:
            pass
    return filler


async def run_disk(args: argparse.Namespace) -> Row:
    timing = Timing(args.warm, args.outage, args.after)
    with tempfile.TemporaryDirectory(prefix="kamiyo-faults-disk-") as tmp:
        folder = Path(tmp)
        with tmpfs(folder / "disk", args.disk_size) as disk, private_redis(folder) as redis:
            env = {
                "KAMIYO_DATA_DIR": str(disk),
                "KAMIYO_REDIS_URL": redis.url,
                "KAMIYO_REDIS_PREFIX": "faults",
                "KAMIYO_METER_FLUSH_S": str(FLUSH_S),
            }
            database = str(disk / "kamiyo.db")
            with rig(folder, env, database) as r:
                r.env["KAMIYO_DATA_DIR"] = str(disk)
                load = Load(r.urls, r.keys, rate=args.rate)
                filler: list[Path] = []

                async def fault() -> float:
                    filler.append(await asyncio.to_thread(fill, disk))
                    await asyncio.sleep(timing.outage)
                    filler[0].unlink()
                    return time.monotonic()

                back = await loaded(load, fault, timing)
            row = row_for("disk", load, r, back, await ok_records(database))
    row.notes.append(f"SQLite on a {args.disk_size} tmpfs filled by a filler file, then freed")
    return row


async def run_rpc(args: argparse.Namespace) -> Row:
    from bench.fault_x402 import (
        FaultyRpc,
        PaidLoad,
        paid_kinds,
        paid_messages,
        paid_recovery_s,
        settlement_report,
    )
    from tests.payments.evm_chain import running_chain
    from tests.payments.serving import evm_network

    timing = Timing(args.warm, args.outage, args.after)
    with tempfile.TemporaryDirectory(prefix="kamiyo-faults-rpc-") as tmp, ExitStack() as stack:
        folder = Path(tmp)
        chain = stack.enter_context(running_chain(folder))
        proxy = stack.enter_context(FaultyRpc(chain.rpc_url).running())
        _cluster, _redis, env = stack.enter_context(services(folder))
        key_file = folder / "relayer.key"
        key_file.write_text(chain.relayer_key)
        key_file.chmod(0o600)
        network = evm_network(chain).model_copy(update={"rpc_urls": [proxy.url]})
        env |= {
            "KAMIYO_X402_NETWORKS": json.dumps([network.model_dump(mode="json")]),
            "KAMIYO_X402_EVM_RELAYER_KEY_FILE": str(key_file),
        }
        database = env["KAMIYO_DATABASE_URL"].replace("+asyncpg", "")
        with rig(folder, env, database) as r:
            load = Load(r.urls, r.keys, rate=args.rate)
            payers = [chain.new_payer() for _ in range(3)]
            paid = PaidLoad(chain, list(r.urls.values()), payers, rate=args.paid_rate)
            paid_task = asyncio.create_task(paid.run())
            phases: list[tuple[str, float]] = []

            async def fault() -> float:
                for mode in ("fail", "pass", "hang"):
                    proxy.mode = mode
                    phases.append((mode, time.monotonic()))
                    await asyncio.sleep(timing.outage)
                proxy.mode = "pass"
                return time.monotonic()

            back = await loaded(load, fault, timing)
            paid.stop()
            await paid_task
        row = row_for("rpc", load, r, back, await ok_records(database))
        report = settlement_report(chain, paid.paid)
        report["settled_in_journal"] = await settled_in_journal(database)
    row.settled_twice = report["answered_twice"]
    row.recovery |= {"paid": paid_recovery_s(paid.paid, back)}
    row.notes += [
        f"paid calls (first try): {paid_kinds(paid.paid)}",
        f"paid calls (the same payment again, other instance): {paid_kinds(paid.paid, True)}",
        "payment messages: " + json.dumps(paid_messages(paid.paid))[:600],
        f"settlement: {report}",
        f"rpc proxy requests by mode: {proxy.requests}",
    ]
    # The paid calls answered, and the one unpaid call that read the offer (free tier, ok).
    row.answered_ok += sum(p.first[0] == "ok" or p.retry[0] == "ok" for p in paid.paid) + 1
    return row
