"""The protocol risk back-test on the bundled data: the table of docs/risk.md.

    python -m bench.risk_backtest                 # a fresh SQLite with the bundled data
    python -m bench.risk_backtest --url sqlite+aiosqlite:///path/kamiyo.db

Markdown tables, as docs/risk.md shows them: every cutoff, each scorer's ROC AUC, precision
and lift in the top 10 % and the top 50, then the means, then the model's incident rate per
level. See ``kamiyo.intel.backtest`` for the method.
"""

import argparse
import asyncio
from pathlib import Path
from tempfile import TemporaryDirectory

from kamiyo.config import DatabaseSettings, Settings
from kamiyo.intel.backtest import SCORERS, CutoffResult, backtest, mean
from kamiyo.intel.risk_model import Level
from kamiyo.runtime import open_runtime


def _cell(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(results: list[CutoffResult]) -> str:
    names = list(SCORERS)
    head = ["cutoff", "protocols", "hit in 12 months"]
    for name in names:
        head += [f"{name}: AUC", "P@10%", "lift@10%", "P@50", "lift@50"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for result in results:
        cells = [result.cutoff.isoformat(), str(result.universe), str(result.positives)]
        for name in names:
            r = result.by_scorer[name]
            cells += [
                _cell(r.auc),
                _cell(r.precision_top_share, 3),
                _cell(r.lift_top_share, 1),
                _cell(r.precision_top_count, 3),
                _cell(r.lift_top_count, 1),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["mean", "", ""]
    for name in names:
        rows = [r.by_scorer[name] for r in results]
        cells += [
            _cell(mean([r.auc for r in rows])),
            _cell(mean([r.precision_top_share for r in rows]), 3),
            _cell(mean([r.lift_top_share for r in rows]), 1),
            _cell(mean([r.precision_top_count for r in rows]), 3),
            _cell(mean([r.lift_top_count for r in rows]), 1),
        ]
    lines.append("| " + " | ".join(f"**{c}**" if c else "" for c in cells) + " |")
    return "\n".join(lines)


def calibration(results: list[CutoffResult]) -> str:
    lines = ["| level | protocol-cutoffs | hit in 12 months | rate |", "|---|---|---|---|"]
    for level in Level:
        seen = sum(r.by_level[level][0] for r in results)
        hit = sum(r.by_level[level][1] for r in results)
        rate = f"{hit / seen:.1%}" if seen else "-"
        lines.append(f"| {level.value} | {seen} | {hit} | {rate} |")
    return "\n".join(lines)


async def run(url: str | None) -> list[CutoffResult]:
    with TemporaryDirectory() as scratch:
        url = url or f"sqlite+aiosqlite:///{Path(scratch) / 'backtest.db'}"
        settings = Settings(database=DatabaseSettings(url=url), _env_file=None)
        async with open_runtime(settings, upgrade=True) as runtime, runtime.sessions() as session:
            return await backtest(session)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: a fresh SQLite, bundled data)")
    args = parser.parse_args()
    results = asyncio.run(run(args.url))
    print(table(results))
    print()
    print(calibration(results))


if __name__ == "__main__":
    main()
