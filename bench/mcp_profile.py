"""Where an uncached ``search_exploits`` call's time goes: py-spy on a loaded KAMIYO server.

    python -m bench.mcp_profile                       # SQLite
    python -m bench.mcp_profile --postgres            # a fresh PostgreSQL database, dropped after

Serves KAMIYO as ``bench.mcp``'s ``kamiyo_gate_uncached`` variant does (stateless JSON HTTP, the
enterprise key, limits and metering, answer cache off), drives it with autocannon cycling
through the same 66 searches, and samples the server with ``py-spy record`` (install it into the
venv by hand: ``uv pip install py-spy``; it needs ptrace rights). The report groups the event
loop thread's samples by where they were spent (the SDK, the gate, the database driver, ...) and
lists the functions with the most inclusive and self time; the raw stacks are kept beside it
(``bench/results/``) for a flame graph (``flamegraph.pl`` or speedscope).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import free_port
from bench.mcp import HEADERS, SEARCH_MIX, autocannon, start, stop
from bench.mcp_databases import PostgresDatabase, prepare

RESULTS = Path(__file__).parent / "results"
# Where a sample is attributed: the innermost frame whose file matches one of these, in order.
AREAS = [
    ("kamiyo gate/meter/limits", ("kamiyo/access/",)),
    ("kamiyo search (SQL, rows->models)", ("kamiyo/intel/",)),
    ("kamiyo pipeline/tools/content", ("kamiyo/service/", "kamiyo/mcpserver/", "kamiyo/web/")),
    ("sqlalchemy", ("sqlalchemy/",)),
    ("driver (aiosqlite/asyncpg)", ("aiosqlite/", "asyncpg/")),
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("json", ("json/",)),
    ("mcp SDK", ("mcp/", "mcp_types/")),
    ("starlette/uvicorn/h11", ("starlette/", "uvicorn/", "h11/", "httptools/", "anyio/")),
    ("asyncio event loop", ("asyncio/",)),
]


def area_of(frames: list[str]) -> str:
    for frame in reversed(frames):  # innermost first
        for name, parts in AREAS:
            if any(part in frame for part in parts):
                return name
    return "other"


def summarize(raw: Path, top: int) -> str:
    """The event loop thread's samples by area and by function; worker threads (aiosqlite runs
    one per connection) only as a share, since their time overlaps the loop's waits."""
    loop_total, workers = 0, 0
    areas: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, counted = line.rpartition(" ")
        thread, *frames = stack.split(";")
        count = int(counted)
        if not thread.endswith("MainThread"):
            workers += count
            continue
        loop_total += count
        areas[area_of(frames)] += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1] if frames else "(no frame)"] += count
    lines = [f"event loop thread samples: {loop_total}; worker threads (busy): {workers}"]
    lines.append("\nEvent loop thread, by area (innermost matching frame):")
    lines += [f"  {n / loop_total:6.1%}  {name}" for name, n in areas.most_common()]
    lines.append(f"\nTop {top} functions by inclusive time (event loop thread):")
    lines += [f"  {n / loop_total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    lines.append(f"\nTop {top} functions by self time (event loop thread):")
    lines += [f"  {n / loop_total:6.1%}  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--postgres", action="store_true", help="run on a fresh PG database")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "KAMIYO_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        sys.exit("py-spy is missing: `.venv/bin/uv pip install py-spy`")
    pg = PostgresDatabase(args.postgres_url) if args.postgres else None
    if pg is not None and not pg.create():
        sys.exit(f"PostgreSQL at {args.postgres_url} did not answer")
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    engine = "postgresql" if pg else "sqlite"
    raw = RESULTS / f"mcp-profile-{engine}-{stamp}.stacks"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items() if not k.startswith("KAMIYO_")}
            env |= {"KAMIYO_DATA_DIR": tmp, "KAMIYO_LOG_LEVEL": "WARNING"}
            extra = {"KAMIYO_DATABASE_URL": pg.url} if pg else {}
            database = prepare(env, str(Path(tmp) / "kamiyo.db"), extra)
            port = free_port()
            url = f"http://127.0.0.1:{port}/mcp"
            headers = HEADERS | {"Authorization": f"Bearer {database.key}"}
            command = [sys.executable, "-m", "bench.kamiyo_server", "--transport", "http"]
            run_env = env | extra | {"KAMIYO_CACHE_TTL_S": "0"}
            server = start([*command, "--port", str(port)], run_env, url, headers)
            try:
                autocannon(url, SEARCH_MIX, 2, args.connections, headers)  # warm up
                record = [spy, "record", "--pid", str(server.pid), "--format", "raw"]
                record += ["--threads", "--nonblocking", "--rate", "250"]
                record += ["--duration", str(args.duration + 1), "--output", str(raw)]
                sampler = subprocess.Popen(record, stdout=subprocess.DEVNULL)
                rate, _ = autocannon(url, SEARCH_MIX, args.duration, args.connections, headers)
                sampler.wait(timeout=120)
            finally:
                stop(server)
    finally:
        if pg is not None:
            pg.drop()
    report = f"{engine}: {rate:.0f} calls/s under py-spy (shared machine)\n"
    print(report + summarize(raw, args.top))
    (RESULTS / f"mcp-profile-{engine}-{stamp}.txt").write_text(report + summarize(raw, args.top))


if __name__ == "__main__":
    main()
