"""stdio that lets calls in flight finish when the client closes stdin.

The SDK ends its serving loop at EOF on stdin and answers each request still running with
"Connection closed": a client that sends its last call and closes its end (a script, a pipe)
would lose the answer, and the call its usage record. Between the SDK's stdio streams and its
server this relays messages both ways, counting the requests not answered yet; at EOF it holds
the read side open until they are answered, for up to ``KAMIYO_SHUTDOWN_GRACE_S``, and only then
lets the server see the end. The meter then writes on the way out (serve_stdio's ``running``).
"""

import logging
import math
from typing import Any

import anyio
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCError, JSONRPCRequest, JSONRPCResponse

log = logging.getLogger(__name__)


class _InFlight:
    def __init__(self) -> None:
        self.ids: set[Any] = set()
        self.changed = anyio.Event()

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
        with anyio.move_on_after(grace_s if grace_s > 0 else math.inf):
            while self.ids:
                await self.changed.wait()
        return len(self.ids)


async def serve_stdio_draining(server: Server[Any], grace_s: float) -> None:
    """``server`` on stdin/stdout, as the SDK's ``run_stdio_async``, draining at EOF."""
    in_flight = _InFlight()
    to_server, server_reads = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    server_writes, from_server = anyio.create_memory_object_stream[SessionMessage](0)
    async with stdio_server() as (stdin, stdout), anyio.create_task_group() as group:

        async def relay_in() -> None:
            async with to_server:
                async for message in stdin:
                    in_flight.started(message)
                    await to_server.send(message)
                left = await in_flight.drained(grace_s)
                if left:
                    log.error(
                        "stdin closed: %d call(s) still running after %.0f s are cancelled",
                        left,
                        grace_s,
                    )

        written = anyio.Event()

        async def relay_out() -> None:
            async with from_server, stdout:
                async for message in from_server:
                    await stdout.send(message)
                    in_flight.answered(message)
            written.set()  # the server closed its side and every answer went out

        group.start_soon(relay_in)
        group.start_soon(relay_out)
        await server.run(server_reads, server_writes, server.create_initialization_options())
        await written.wait()
        group.cancel_scope.cancel()  # stdin may still be open if the server ended first
