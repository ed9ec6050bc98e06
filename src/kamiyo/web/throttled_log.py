"""Log lines for events that come in floods: one line at once, then one count per interval.

An attacker decides how often a connection is closed on a deadline, and a server out of file
descriptors hears of it on every accept(); a line per event would let them fill the disk and
stall the event loop on writing the log (issue 11 saw 65,519 lines of the one asyncio error).
"""

import asyncio
import errno
import logging
import time
from collections import Counter
from collections.abc import Callable

# What a line per interval sums up, at most: an operator reads a minute's worth at a glance.
INTERVAL_S = 60.0


class Throttle:
    """Lets the first event of a quiet spell be logged as it comes; counts the ones after it,
    by kind, until ``interval_s`` has passed, then logs those counts in one line and starts
    counting again (so a flood writes one line per interval, and the line after it ends says
    how big it was).
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.what = what
        self.interval_s = interval_s
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self.window_ends: float | None = None
        self.timer: asyncio.TimerHandle | None = None

    def admit(self, kind: str) -> bool:
        """Whether to log this event now; if not, it is counted for the next summary."""
        now = self.clock()
        if self.window_ends is not None and now < self.window_ends:
            self.counts[kind] += 1
            return False
        self.flush()  # a summary that no timer wrote (no event loop): before the new line
        self.window_ends = now + self.interval_s
        self._schedule()
        return True

    def flush(self) -> None:
        """Log the counts gathered so far, if any, in one line."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.counts:
            return
        counts, self.counts = self.counts, Counter()
        parts = ", ".join(f"{count} {kind}" for kind, count in counts.most_common())
        self.logger.warning(
            "%s: %d more in the last %.0f s (%s)",
            self.what,
            counts.total(),
            self.interval_s,
            parts,
        )

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: the next event after the window writes the summary
            return
        self.timer = loop.call_later(self.interval_s, self._window_ended)

    def _window_ended(self) -> None:
        self.timer = None
        if self.counts:
            self.flush()
            # The flood goes on: count through one more window before letting a line through.
            self.window_ends = self.clock() + self.interval_s
            self._schedule()
        else:
            self.window_ends = None


ACCEPT_FAILED = "socket.accept() out of system resource"
OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class AcceptErrors(logging.Filter):
    """Throttles asyncio's "socket.accept() out of system resource" errors.

    asyncio logs one (with a traceback) per failed accept(), and Python 3.11 retries up to the
    listen backlog's length of times per loop tick, each failing the same way. Installed on the
    ``asyncio`` logger, this lets one through per interval and counts the rest.
    """

    def __init__(self, throttle: Throttle) -> None:
        super().__init__()
        self.throttle = throttle

    def filter(self, record: logging.LogRecord) -> bool:
        if not is_accept_failure(record):
            return True
        return self.throttle.admit("failed accept()")


def is_accept_failure(record: logging.LogRecord) -> bool:
    if isinstance(record.msg, str) and record.msg.startswith(ACCEPT_FAILED):
        return True
    exc = record.exc_info[1] if record.exc_info else None
    # The same condition as other event loops (uvloop) report it.
    return isinstance(exc, OSError) and exc.errno in OUT_OF_RESOURCES


def throttle_accept_errors(open_files: int | None) -> AcceptErrors:
    """Install the filter on asyncio's logger; its summaries name the open-file limit."""
    limit = f" (open-file limit {open_files})" if open_files else ""
    throttle = Throttle(logging.getLogger(__name__), f"{ACCEPT_FAILED}{limit}")
    accept_errors = AcceptErrors(throttle)
    logging.getLogger("asyncio").addFilter(accept_errors)
    return accept_errors
