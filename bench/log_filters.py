"""What each log record costs with the handler's filters: bounding, redaction, request ids.

    python -m bench.log_filters                  # 20,000 records a round, 5 rounds
    python -m bench.log_filters --records 50000 --rounds 7

Logs ``--records`` records through ``configure_logging`` (JSON and pretty) to a handler
writing to /dev/null, in four shapes: a short message, one with arguments, one carrying a
credential (redacted), and one with a 4,000-character argument (bounded). It reports the median
over ``--rounds`` rounds of the microseconds per record, with all filters and with the
redaction filter taken off the handler (the rest the same), and their ratio.
"""

import argparse
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from kamiyo.observability import configure_logging
from kamiyo.observability.redaction import Redacted
from kamiyo.observability.request_context import serving

HERE = Path(__file__).parent
KEY = "kmy_live_" + "x" * 43
Shape = Callable[[logging.Logger], None]
SHAPES: dict[str, Shape] = {
    "short": lambda log: log.info("search_exploits refused: rate_limited"),
    "arguments": lambda log: log.info("%s answered %d results in %s", "search", 12, "3 ms"),
    "credential": lambda log: log.warning("refused Authorization: Bearer %s", KEY),
    "4,000-char argument": lambda log: log.info("unknown resource %s", "y" * 4000),
}


def _per_record_us(
    fmt: Literal["json", "pretty"], shape: Shape, records: int, redact: bool
) -> float:
    real_stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115
    configure_logging("INFO", fmt, ["configured-secret-value"])  # both handlers write to stderr
    handler = logging.getLogger().handlers[0]
    if not redact:
        for found in [f for f in handler.filters if isinstance(f, Redacted)]:
            handler.removeFilter(found)
    log = logging.getLogger("kamiyo.bench")
    with serving("0123456789abcdef0123456789abcdef"):
        started = time.perf_counter()
        for _ in range(records):
            shape(log)
        elapsed = time.perf_counter() - started
    sys.stderr.close()
    sys.stderr = real_stderr
    return elapsed / records * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for fmt in ("json", "pretty"):
        for name, shape in SHAPES.items():
            timed = {
                redact: statistics.median(
                    _per_record_us(fmt, shape, args.records, redact) for _ in range(args.rounds)
                )
                for redact in (True, False)
            }
            rows.append(
                {
                    "format": fmt,
                    "shape": name,
                    "us_all_filters": round(timed[True], 2),
                    "us_without_redaction": round(timed[False], 2),
                    "ratio": round(timed[True] / timed[False], 2),
                }
            )
    logging.getLogger().handlers.clear()
    header = f"{'format':<8}{'record':<22}{'all filters µs':>16}{'no redaction µs':>18}{'ratio':>8}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['format']:<8}{row['shape']:<22}{row['us_all_filters']:>16}"
            f"{row['us_without_redaction']:>18}{row['ratio']:>8}"
        )
    report = "\n".join(lines)
    sys.stdout.write(report + "\n")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out = results / f"log-filters-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps({"records": args.records, "rounds": args.rounds, "rows": rows}))
    sys.stdout.write(f"written to {out}\n")


if __name__ == "__main__":
    main()
