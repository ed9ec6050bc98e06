"""The bookkeeping of one read: its deadline, the calls it made, what cut it short.

A history read runs several fetches at once (normal, internal and token transfers, approval
logs; or signatures then transactions). Each fetch appends what it read as it goes, so when the
time budget runs out the read stops where it is and keeps what it has, labelled truncated.
"""

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

# Called with the number of records read so far, after each page (for progress notifications).
Progress = Callable[[int], None]


def deadline_in(seconds: float) -> float:
    """A deadline ``seconds`` from now, on the clock :class:`Scan` reads (monotonic)."""
    return time.monotonic() + seconds


class ExplorerError(Exception):
    """The provider refused or could not answer a request; the message is one line for people
    (no URL, no key), and retrying the same request elsewhere would not help."""


class Scan:
    """One read's budget and record. ``deadline`` is a :func:`time.monotonic` instant;
    ``max_pages`` caps the pages of each list; ``progress`` hears of every page read."""

    def __init__(self, deadline: float, max_pages: int, progress: Progress | None = None) -> None:
        if max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        self.deadline = deadline
        self.max_pages = max_pages
        self.started = time.monotonic()
        self.calls = 0
        self.records = 0
        self.failures: list[str] = []
        # A request failed or the budget ran out (a page cap is not a failure): another read
        # could get more, so such a history is not kept for the next screen.
        self.failed = False
        self.truncated = False
        self._progress = progress

    def read(self, records: int) -> None:
        """A page of ``records`` came in."""
        self.records += records
        if self._progress is not None:
            self._progress(self.records)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def fail(self, line: str) -> None:
        """A part of the read failed: what was read stays, the whole is no longer complete."""
        self.failed = True
        if line not in self.failures:
            self.failures.append(line)
        self.truncated = True

    def cut(self, line: str) -> None:
        """The read stopped at a cap: not a failure of the provider, but still partial."""
        self.truncated = True
        if line not in self.failures:
            self.failures.append(line)

    async def run_all(self, jobs: list[Coroutine[Any, Any, None]]) -> None:
        """Run the jobs together until they end or the deadline passes; those still running
        then are cancelled and the read is marked truncated."""
        tasks = [asyncio.ensure_future(job) for job in jobs]
        if not tasks:
            return
        budget = self.remaining()
        done, pending = await asyncio.wait(tasks, timeout=max(budget, 0.0))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            self.fail(
                f"the time budget ran out after {self.elapsed():.1f} s; "
                "what was read until then is kept"
            )
        for task in done:
            error = task.exception()
            if error is not None:
                raise error
