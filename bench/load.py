"""Two KAMIYO instances behind Caddy, sharing PostgreSQL and Redis, at rising call rates.

    python -m bench.load                              # rates 25 50 ... 800, 10 s of calls each
    python -m bench.load --rates 25 50 100 --duration 15 --no-payments

What runs, all on loopback: a fresh PostgreSQL database of the run's own on the shared server
(``--postgres``, dropped afterwards), a Redis key prefix of its own (``--redis-url``, its keys
deleted afterwards), two ``kamiyo serve --transport http --stateless --json-response`` instances
(``bench/load_serve.py``: the enterprise tier's limits raised, nothing else changed), the bare
SDK echo server (``bench/echo_server.py``), and one Caddy (written into a temporary folder)
proxying one port to both instances (round robin) and another to the echo server. At each rate
``bench/node/load_mix.js`` (autocannon, fixed rate) sends the mix of ``bench/load_mix.py`` to
KAMIYO, ``--duration`` seconds' worth of calls at that rate (autocannon waits for every answer,
so a saturated server takes longer), then as many echo calls to the echo server. The ladder
stops at the first rate KAMIYO answers at less than half of.

While the load runs at ``--check-rate``, ``bench/load_checks.py`` checks that a free key's limit
holds across both instances and (unless ``--no-payments``; it starts anvil from
``tests/node``) that one x402 payment replayed at once on both instances settles once. After the
last rate the instances stop (SIGTERM: the meter writes its last batch) and the usage records
of the mix's accounts, by status, are compared with what the client saw answered.
"""

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections import Counter
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import asyncpg

from bench import load_checks
from bench.common import (
    HERE,
    drop_prefix,
    free_port,
    raise_open_files,
    results_file,
    stop_process,
    wait_http,
)
from bench.load_mix import METERED_AS, Accounts, mix

NODE_MIX = HERE / "node" / "load_mix.js"
ECHO_CALL = {"name": "echo", "arguments": {"text": "euler"}}
EMAILS = {
    "enterprise": [f"load-enterprise-{n}@example.com" for n in range(3)],
    "team": "load-team@example.com",
    "personal": "load-personal@example.com",
    "free": "load-free@example.com",
}
LIMIT_EMAIL = "load-limit@example.com"


def kamiyo(env: dict[str, str], *args: str) -> str:
    command = [sys.executable, "-m", "kamiyo", *args]
    return subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout


def new_key(env: dict[str, str], email: str, tier: str) -> str:
    kamiyo(env, "accounts", "create", email, "--tier", tier)
    return kamiyo(env, "keys", "create", email, "--name", "load").strip()


@contextmanager
def process(command: list[str], env: dict[str, str], health: str, log: Path) -> Any:
    with log.open("ab") as out:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=out)
    try:
        try:
            wait_http(health, proc, timeout=180)
        except (RuntimeError, TimeoutError):
            print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
        yield proc
    finally:
        stop_process(proc)


def caddyfile(kamiyo_port: int, echo_port: int, instances: list[int], echo_upstream: int) -> str:
    upstreams = " ".join(f"127.0.0.1:{port}" for port in instances)
    return f"""{{
\tadmin off
\tauto_https off
}}
http://127.0.0.1:{kamiyo_port} {{
\treverse_proxy {upstreams} {{
\t\tlb_policy round_robin
\t\tflush_interval -1
\t}}
}}
http://127.0.0.1:{echo_port} {{
\treverse_proxy 127.0.0.1:{echo_upstream}
}}
"""


def run_mix(plan: dict[str, Any], folder: Path) -> dict[str, Any]:
    path = folder / f"plan-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(plan))
    out = subprocess.run(["node", str(NODE_MIX), str(path)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"load_mix.js failed: {out.stderr[-1000:]}")
    return dict(json.loads(out.stdout))


def summary(report: dict[str, Any]) -> dict[str, Any]:
    latency = report["latency"]
    return {
        "rate_asked": report["rate_asked"],
        "calls_per_s": report["requests"]["average"],
        "answered": report["requests"]["total"],
        "p50_ms": latency["p50"],
        "p99_ms": latency["p99"],
        "errors": report["errors"] + report["timeouts"] + report["non2xx"],
    }


async def create_database(admin_url: str) -> str:
    name = f"kamiyo_load_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def drop_database(admin_url: str, name: str) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def usage_by_status(url: str, emails: list[str]) -> Counter[str]:
    """The usage records of ``emails``' accounts, by status."""
    db = await asyncpg.connect(url)
    try:
        rows = await db.fetch(
            "SELECT u.status, count(*) FROM usage_records u JOIN accounts a ON a.pk = u.account_pk"
            " WHERE a.email = ANY($1::text[]) GROUP BY u.status",
            emails,
        )
    finally:
        await db.close()
    return Counter({str(row[0]): int(row[1]) for row in rows})


def exploit_ids(base: str, key: str) -> list[str]:
    """Ids for get_exploit, from one search (metered as one ok call of the mix's accounts)."""
    import urllib.request

    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "search_exploits", "arguments": {"sort": "loss", "limit": 20}},
    }
    headers = load_checks.MCP_HEADERS | {"Authorization": f"Bearer {key}"}
    request = urllib.request.Request(
        f"{base}/mcp", data=json.dumps(message).encode(), headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    return [incident["id"] for incident in answer["result"]["structuredContent"]["incidents"]]


def run(args: argparse.Namespace, folder: Path, stack: ExitStack) -> dict[str, Any]:
    raise_open_files()
    name = asyncio.run(create_database(args.postgres))
    database = args.postgres.rsplit("/", 1)[0] + f"/{name}"
    stack.callback(lambda: None if args.keep else asyncio.run(drop_database(args.postgres, name)))
    prefix = f"kamiyo-load-{uuid.uuid4().hex[:10]}"
    stack.callback(drop_prefix, args.redis_url, prefix)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAMIYO_")}
    env |= {
        "KAMIYO_DATA_DIR": str(folder),
        "KAMIYO_DATABASE_URL": database.replace("postgresql://", "postgresql+asyncpg://"),
        "KAMIYO_REDIS_URL": args.redis_url,
        "KAMIYO_REDIS_PREFIX": prefix,
        "KAMIYO_LOG_LEVEL": "WARNING",
        # The proxy carries every client: its connections are not capped per address.
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
    }
    chain = None
    if args.payments:
        from tests.payments.evm_chain import running_chain
        from tests.payments.serving import evm_network

        chain = stack.enter_context(running_chain(folder))
        key_file = folder / "relayer.key"
        key_file.write_text(chain.relayer_key)
        key_file.chmod(0o600)
        env |= {
            "KAMIYO_X402_NETWORKS": json.dumps([evm_network(chain).model_dump()]),
            "KAMIYO_X402_EVM_RELAYER_KEY_FILE": str(key_file),
        }
    kamiyo(env, "db", "upgrade")
    accounts = Accounts(
        enterprise=[new_key(env, email, "enterprise") for email in EMAILS["enterprise"]],
        team=new_key(env, str(EMAILS["team"]), "team"),
        personal=new_key(env, str(EMAILS["personal"]), "personal"),
        free=new_key(env, str(EMAILS["free"]), "free"),
    )
    limit_key = new_key(env, LIMIT_EMAIL, "free")

    ports = [free_port(), free_port()]
    serve = [sys.executable, "-m", "bench.load_serve", "--stateless", "--json-response"]
    procs = [
        stack.enter_context(
            process(
                [*serve, "--port", str(port)],
                env,
                f"http://127.0.0.1:{port}/healthz",
                folder / f"kamiyo-{port}.log",
            )
        )
        for port in ports
    ]
    echo_port, proxy_kamiyo, proxy_echo = free_port(), free_port(), free_port()
    echo_command = [sys.executable, "-m", "bench.echo_server", "--transport", "http"]
    stack.enter_context(
        process(
            [*echo_command, "--port", str(echo_port)],
            env,
            f"http://127.0.0.1:{echo_port}/mcp",  # any answer: it serves nothing else
            folder / "echo.log",
        )
    )
    config = folder / "Caddyfile"
    config.write_text(caddyfile(proxy_kamiyo, proxy_echo, ports, echo_port))
    caddy_env = env | {"XDG_DATA_HOME": str(folder), "XDG_CONFIG_HOME": str(folder)}
    stack.enter_context(
        process(
            [args.caddy, "run", "--config", str(config), "--adapter", "caddyfile"],
            caddy_env,
            f"http://127.0.0.1:{proxy_kamiyo}/healthz",
            folder / "caddy.log",
        )
    )
    kamiyo_url, echo_url = (
        f"http://127.0.0.1:{proxy_kamiyo}/mcp",
        f"http://127.0.0.1:{proxy_echo}/mcp",
    )
    instances = [f"http://127.0.0.1:{port}" for port in ports]
    ids = exploit_ids(instances[0], accounts.enterprise[0])
    calls = mix(accounts, ids)
    plan_calls = [call.plan(n) for n, call in enumerate(calls)]
    echo_body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": ECHO_CALL})
    echo_calls = [{"kind": "echo", "weight": 1, "headers": {}, "body": echo_body}]
    base = {
        "duration": args.duration,
        "connections": args.connections,
        "headers": load_checks.MCP_HEADERS,
    }

    rows: list[dict[str, Any]] = []
    seen: Counter[str] = Counter({"ok": 1})  # the exploit_ids search
    by_kind: dict[str, Counter[str]] = {}
    checks: dict[str, Any] = {}
    for rate in args.rates:
        checker = None
        if rate == args.check_rate:
            checker = threading.Thread(target=_checks, args=(checks, instances, limit_key, chain))
            checker.start()
        answer = run_mix(base | {"url": kamiyo_url, "rate": rate, "calls": plan_calls}, folder)
        if checker is not None:
            checker.join()
        echo = run_mix(base | {"url": echo_url, "rate": rate, "calls": echo_calls}, folder)
        for kind, outcomes in answer["counts"].items():
            by_kind.setdefault(kind, Counter()).update(outcomes)
            for outcome, count in outcomes.items():
                seen[METERED_AS.get(outcome, outcome)] += count
        rows.append({"rate": rate, "kamiyo": summary(answer), "echo": summary(echo)})
        print(f"  {rate}/s: {json.dumps(rows[-1])}", file=sys.stderr)
        if rows[-1]["kamiyo"]["calls_per_s"] < rate / 2:  # saturated: higher rates say no more
            break
    for proc in procs:  # SIGTERM: each writes its meter's last batch
        stop_process(proc, timeout=120)
    emails = [
        *EMAILS["enterprise"],
        str(EMAILS["team"]),
        str(EMAILS["personal"]),
        str(EMAILS["free"]),
    ]
    recorded = asyncio.run(
        usage_by_status(env["KAMIYO_DATABASE_URL"].replace("+asyncpg", ""), emails)
    )
    return {
        "rates": rows,
        "p99_passes_100ms_at": next(
            (row["rate"] for row in rows if row["kamiyo"]["p99_ms"] > 100), None
        ),
        "outcomes_by_kind": {kind: dict(c) for kind, c in by_kind.items()},
        "metering": {
            "answered_by_status": dict(seen),
            "usage_records_by_status": dict(recorded),
            "equal": dict(seen) == dict(recorded),
        },
        "checks": checks,
    }


def _checks(into: dict[str, Any], instances: list[str], key: str, chain: Any) -> None:
    """The limit and replay checks, in a thread while the load runs."""
    try:
        into["limit"] = load_checks.limit_check(instances, key, calls=40)
        if chain is not None:
            into["replay"] = load_checks.replay_check(instances, chain, calls=50)
    except Exception as exc:  # reported in the table, not lost in a thread
        into["error"] = f"{type(exc).__name__}: {exc}"


def table(report: dict[str, Any]) -> str:
    lines = [
        "| rate asked | KAMIYO calls/s | p50 ms | p99 ms | errors "
        "| echo calls/s | p50 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rates"]:
        k, e = row["kamiyo"], row["echo"]
        lines.append(
            f"| {row['rate']} | {k['calls_per_s']:.0f} | {k['p50_ms']:.1f} | {k['p99_ms']:.1f} | "
            f"{k['errors']} | {e['calls_per_s']:.0f} | {e['p50_ms']:.1f} | {e['p99_ms']:.1f} |"
        )
    lines.append(
        f"\np99 passes 100 ms at: {report['p99_passes_100ms_at'] or 'not reached'} calls/s"
    )
    metering = report["metering"]
    lines.append("\n| status | answered (client) | usage records |\n|---|---:|---:|")
    statuses = sorted(
        set(metering["answered_by_status"]) | set(metering["usage_records_by_status"])
    )
    for status in statuses:
        answered = metering["answered_by_status"].get(status, 0)
        lines.append(
            f"| {status} | {answered} | {metering['usage_records_by_status'].get(status, 0)} |"
        )
    lines.append(f"usage records == calls answered, per status: {metering['equal']}")
    lines.append("\nchecks: " + json.dumps(report["checks"]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[25, 50, 100, 200, 400, 800])
    parser.add_argument("--duration", type=int, default=10, help="seconds per rate")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--check-rate", type=int, default=50, help="run the checks at this rate")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--caddy", default=shutil.which("caddy") or "caddy")
    parser.add_argument("--no-payments", dest="payments", action="store_false")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    if shutil.which(args.caddy) is None:
        sys.exit("caddy is missing: apt-get install -y caddy (or --caddy PATH)")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        report = run(args, Path(tmp), stack)
    report["args"] = vars(args)
    text = table(report)
    print(text)
    results_file("load", report, text)


if __name__ == "__main__":
    main()
