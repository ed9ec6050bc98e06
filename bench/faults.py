"""Faults under load: two KAMIYO instances on services of the run's own, one fault each run.

    python -m bench.faults all                  # every fault, one table
    python -m bench.faults redis postgres       # some of them
    python -m bench.faults kill --rate 30 --outage 15

Faults: ``redis`` (redis-server SIGKILLed, restarted on its port), ``postgres`` (the cluster
stopped in immediate mode and started again), ``kill`` (instance i1 SIGKILLed, not restarted),
``rpc`` (the x402 payment RPC answering 503, then hanging, mid-run), ``disk`` (SQLite on a tmpfs
that a filler file fills, then frees; needs root to mount). The table is printed and written to
``bench/results/faults-<time>.md`` with the rows as JSON beside it; docs/faults.md explains
each column. The machine's shared PostgreSQL and Redis are never used.
"""

import argparse
import asyncio
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.fault_runs import Row, run_disk, run_kill, run_rpc, run_service_fault

RESULTS = Path(__file__).parent / "results"
FAULTS = ("redis", "postgres", "kill", "rpc", "disk")


async def run(fault: str, args: argparse.Namespace) -> Row:
    if fault in ("redis", "postgres"):
        return await run_service_fault(fault, args)
    if fault == "kill":
        return await run_kill(args)
    if fault == "rpc":
        return await run_rpc(args)
    return await run_disk(args)


def _seconds(value: float | None) -> str:
    return "not recovered" if value is None else f"{value:.1f}"


def table(rows: Sequence[Row]) -> Table:
    out = Table(title="Faults under load (two instances; callers' answers by kind)")
    for column in (
        "fault",
        "callers saw",
        "tracebacks (bodies/logs)",
        "recovery s",
        "ok answered / recorded / lost",
        "settled twice",
        "webhooks twice",
    ):
        out.add_column(column)
    for row in rows:
        out.add_row(
            row.fault,
            "\n".join(f"{kind}: {count}" for kind, count in row.seen.items()),
            f"{row.body_tracebacks}/{row.log_tracebacks}",
            "\n".join(f"{name}: {_seconds(s)}" for name, s in row.recovery.items()),
            f"{row.answered_ok} / {row.recorded_ok} / {row.lost}",
            str(row.settled_twice),
            row.webhooks_twice,
        )
    return out


def details(rows: Sequence[Row]) -> list[str]:
    lines = []
    for row in rows:
        lines.append(f"{row.fault}:")
        lines += [f"  {kind}: {message}" for kind, message in row.messages.items()]
        lines += [f"  {note}" for note in row.notes]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("faults", nargs="+", choices=[*FAULTS, "all"])
    parser.add_argument("--rate", type=float, default=20.0, help="search calls a second")
    parser.add_argument("--paid-rate", type=float, default=1.0, help="rpc: paid calls a second")
    parser.add_argument("--warm", type=float, default=8.0, help="seconds of load before")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds the fault lasts")
    parser.add_argument("--after", type=float, default=15.0, help="seconds of load after")
    parser.add_argument("--disk-size", default="64m", help="disk: the tmpfs's size")
    args = parser.parse_args()
    chosen = list(FAULTS) if "all" in args.faults else args.faults
    console = Console(stderr=True, width=160)
    rows = []
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for fault in chosen:
        console.print(f"[bold]{fault}[/bold]: running")
        rows.append(asyncio.run(run(fault, args)))
        write(rows, args, stamp)  # each row as it comes: a later fault's failure keeps it
        console.print(table(rows[-1:]))
    console.print(table(rows))
    console.print("\n".join(details(rows)))


def write(rows: Sequence[Row], args: argparse.Namespace, stamp: str) -> None:
    shown = table(rows)
    with (RESULTS / f"faults-{stamp}.md").open("w") as out:
        Console(file=out, width=200).print(shown)
        out.write("\n".join(details(rows)) + "\n")
        out.write(f"\nsettings: {vars(args)}; shared machine: compare ratios, not seconds\n")
    (RESULTS / f"faults-{stamp}.json").write_text(
        json.dumps([dataclasses.asdict(r) | {"lost": r.lost} for r in rows], indent=1)
    )


if __name__ == "__main__":
    main()
