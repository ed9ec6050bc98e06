"""stdio that lets calls in flight finish when the client closes stdin, or at SIGTERM/SIGINT.

The SDK ends its serving loop at EOF on stdin and answers each request still running with
"Connection closed": a client that sends its last call and closes its end (a script, a pipe)
would lose the answer, and the call its usage record. Between the SDK's stdio streams and its
server this relays messages both ways, counting the requests not answered yet; at EOF it holds
the read side open until they are answered, for up to ``KAMIYO_SHUTDOWN_GRACE_S``, and only then
lets the server see the end. The meter then writes on the way out (serve_stdio's ``running``).

SIGTERM or SIGINT (a supervisor, Ctrl-C) stops it the same way while stdin is still open: no
new request is read (stdin_lines.py makes that read stoppable), the calls in flight get the same
deadline, and a second signal cuts them at once. What was cut is counted and returned, so the
process can exit 1 as the HTTP server does (web/graceful.py).
"""

import logging
import signal
from typing import Any, cast

import anyio
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCError, JSONRPCRequest, JSONRPCResponse

from kamiyo.mcpserver.stdin_lines import StdinLines

log = logging.getLogger(__name__)


class _InFlight:
    def __init__(self) -> None:
        self.ids: set[Any] = set()
        self.changed = anyio.Event()
        self._deadline: anyio.CancelScope | None = None
        self.given_up = False

    def started(self, message: SessionMessage | Exception) -> None:
        if isinstance(message, SessionMessage) and isinstance(message.message, JSONRPCRequest):
            self.ids.add(message.message.id)

    def answered(self, message: SessionMessage) -> None:
        if isinstance(message.message, JSONRPCResponse | JSONRPCError):
            self.ids.discard(message.message.id)
            self.changed.set()
            self.changed = anyio.Event()

    async def drained(self, grace_s: float) -> int:
        """Wait until every request is answered, up to ``grace_s``; how many were not."""
        with anyio.move_on_after(grace_s) as self._deadline:
            if self.given_up:
                self._deadline.cancel()
            while self.ids:
                await self.changed.wait()
        return len(self.ids)

    def give_up(self) -> None:
        """Stop waiting for the calls in flight (now, or as soon as the wait begins)."""
        self.given_up = True
        if self._deadline is not None:
            self._deadline.cancel()


async def _stop_at_signals(lines: StdinLines, in_flight: _InFlight, grace_s: float) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for received in signals:
            name = signal.Signals(received).name
            if not lines.stopped:
                log.info(
                    "Stopping (%s): no new requests; %.0f s for %d call(s) in flight",
                    name,
                    grace_s,
                    len(in_flight.ids),
                )
                lines.stop()
            else:
                log.warning("%s again: the calls in flight are cut now", name)
                in_flight.give_up()


async def serve_stdio_draining(server: Server[Any], grace_s: float) -> int:
    """``server`` on stdin/stdout, as the SDK's ``run_stdio_async``, draining at EOF or at a
    signal; returns how many calls were still running at the deadline (and were cut)."""
    in_flight = _InFlight()
    cut = 0
    to_server, server_reads = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    server_writes, from_server = anyio.create_memory_object_stream[SessionMessage](0)
    async with (
        StdinLines() as lines,
        # The SDK only iterates what it is given as stdin (stdin_lines.py).
        stdio_server(stdin=cast(anyio.AsyncFile[str], lines)) as (stdin, stdout),
        anyio.create_task_group() as group,
    ):

        async def relay_in() -> None:
            nonlocal cut
            async with to_server:
                async for message in stdin:
                    in_flight.started(message)
                    await to_server.send(message)
                cut = await in_flight.drained(grace_s)
                if cut:
                    why = (
                        "A second signal"
                        if in_flight.given_up
                        else f"Shutdown deadline of {grace_s:.0f} s passed"
                    )
                    log.error(
                        "%s: cancelling %d call(s) still running (their callers get no "
                        "answer; nothing is recorded or charged for them)",
                        why,
                        cut,
                    )

        written = anyio.Event()

        async def relay_out() -> None:
            async with from_server, stdout:
                async for message in from_server:
                    await stdout.send(message)
                    in_flight.answered(message)
            written.set()  # the server closed its side and every answer went out

        group.start_soon(_stop_at_signals, lines, in_flight, grace_s)
        group.start_soon(relay_in)
        group.start_soon(relay_out)
        await server.run(server_reads, server_writes, server.create_initialization_options())
        await written.wait()
        lines.stop()  # stdin may still be open if the server ended first
        group.cancel_scope.cancel()
    return cut
