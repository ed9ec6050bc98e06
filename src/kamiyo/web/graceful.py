"""uvicorn's shutdown with a bounded deadline, and hooks that run the moment stopping begins.

uvicorn stops accepting, asks each connection to close once its answer is sent, and waits for
the requests in flight; only then does the app's lifespan shut down. Event streams (``GET /mcp``,
``GET /sse``, ``subscriptions/listen``) never end by themselves, so they must be told to go
before that wait, not in the lifespan: ``on_stopping`` runs first (``/readyz`` turns 503, the
listen streams and event streams end cleanly, see web/streams.py). After the deadline
(``KAMIYO_SHUTDOWN_GRACE_S``) what still runs is cancelled and counted; the lifespan then
flushes the meter and closes the pools, as after a clean stop.

The exit status says which it was: 0 after a clean stop (uvicorn would re-raise the signal and
die of it, which supervisors read as a crash or as 143), 1 when calls were cut, because each of
those callers got no answer and nothing was recorded for them.
"""

import asyncio
import logging
import socket
from collections.abc import Callable

import uvicorn

log = logging.getLogger(__name__)

CUT_EXIT_STATUS = 1


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, grace_s: float) -> None:
        super().__init__(config)
        self.grace_s = grace_s
        self.on_stopping: list[Callable[[], None]] = []
        self.cut = 0  # requests cancelled at the deadline

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        log.info("Stopping: no new connections; %.0f s for calls in flight", self.grace_s)
        for hook in self.on_stopping:
            hook()
        for server in self.servers:
            server.close()  # refuse new connections at once
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # idle ones close now, busy ones after their answer
        try:
            await asyncio.wait_for(self._wait_tasks_to_complete(), self.grace_s)
        except TimeoutError:
            running = list(self.server_state.tasks)
            self.cut = len(running)
            log.error(
                "Shutdown deadline of %.0f s passed: cancelling %d call(s) still running "
                "(their callers get no answer; nothing is recorded or charged for them)",
                self.grace_s,
                self.cut,
            )
            # Each cut request would log a traceback through uvicorn; the line above says it.
            logging.getLogger("uvicorn.error").addFilter(_not_cut_calls)
            for task in running:
                task.cancel("the shutdown deadline passed")
            await asyncio.gather(*running, return_exceptions=True)
        if not self.force_exit:
            await self.lifespan.shutdown()  # the meter's last write, the alerts worker, pools
        # The signal was handled: do not have uvicorn raise it again on the way out.
        self._captured_signals.clear()


def _not_cut_calls(record: logging.LogRecord) -> bool:
    return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))
