"""Printing the search benchmark's results (``bench/search.py``) as tables."""

from rich.console import Console
from rich.table import Table


def print_report(console: Console, results: list[dict[str, object]]) -> None:
    for result in results:
        for part in ("bundled", "synthetic"):
            shapes_report = result.get(part)
            if not isinstance(shapes_report, dict):
                continue
            rows = (
                result.get("synthetic_rows") if part == "synthetic" else result.get("bundled_rows")
            )
            table = Table(
                title=f"{result['backend']}: {part} ({rows:,} incidents + bundled)"
                if part == "synthetic"
                else f"{result['backend']}: bundled ({result.get('bundled_rows')})"
            )
            table.add_column("query shape")
            table.add_column("p50 ms", justify="right")
            table.add_column("p99 ms", justify="right")
            for name, numbers in shapes_report.items():
                table.add_row(
                    name,
                    f"{numbers['p50_ms']:.2f}",
                    f"{numbers['p99_ms']:.2f}" if "p99_ms" in numbers else "",
                )
            console.print(table)
        extras = {k: v for k, v in result.items() if k not in ("bundled", "synthetic")}
        console.print(extras)
