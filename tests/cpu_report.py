"""What each test costs in CPU, its own and that of the processes it started.

CI has 2 cores and 15 minutes. Wall-clock durations on a loaded machine rank tests by how long
they waited; CPU seconds (with the processes a test starts: ``kamiyo serve``, the CLI, the Node
clients) rank them by what they cost, whatever else runs beside them, and the wall time beyond
the CPU shows what only waits (sleeps, polls, timeouts), which more workers would overlap.

``pytest --cpu-report=FILE`` appends one JSON line per test: its node id, this process's CPU,
its reaped children's, and the wall-clock time. ``python -m tests.cpu_report FILE`` sums them by
test and by module, and lists the tests that wait most.

A child's CPU is counted once it has been waited for (``RUSAGE_CHILDREN``): a server stopped in a
module fixture's teardown is charged to that module's last test on the worker.
"""

import json
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest


def _cpu() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


class CpuReport:
    def __init__(self, path: Path) -> None:
        self.path = path

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        own, children = _cpu()
        started = time.perf_counter()
        try:
            return (yield)
        finally:
            own_after, children_after = _cpu()
            line = {
                "test": item.nodeid,
                "own": own_after - own,
                "children": children_after - children,
                "wall": time.perf_counter() - started,
            }
            with self.path.open("a") as out:  # one short append per test: workers do not interleave
                out.write(json.dumps(line) + "\n")


def register(config: pytest.Config) -> None:
    path = config.getoption("cpu_report")
    if path:
        config.pluginmanager.register(CpuReport(Path(path)), "kamiyo-cpu-report")


def _summary(path: Path, top: int = 40) -> None:
    by_test: Counter[str] = Counter()
    by_module: Counter[str] = Counter()
    waiting: Counter[str] = Counter()  # wall seconds beyond the CPU: sleeps, polls, timeouts
    for line in path.read_text().splitlines():
        row = json.loads(line)
        seconds = row["own"] + row["children"]
        by_test[row["test"]] += seconds
        by_module[row["test"].split("::")[0]] += seconds
        waiting[row["test"]] += max(0.0, row.get("wall", 0.0) - seconds)
    total = sum(by_test.values())
    print(f"{len(by_test)} tests, {total:.0f} CPU s in all, {sum(waiting.values()):.0f} s waiting")
    for title, counts in (("tests", by_test), ("modules", by_module), ("waiters", waiting)):
        print(f"\nmost costly {title}:")
        for name, seconds in counts.most_common(top):
            print(f"{seconds:8.1f} s  {100 * seconds / total:4.1f}%  {name}")


if __name__ == "__main__":
    _summary(Path(sys.argv[1]))
