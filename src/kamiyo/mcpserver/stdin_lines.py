"""stdin's lines for the SDK's ``stdio_server``, read so that reading can stop at a signal.

The SDK reads stdin with ``anyio.wrap_file``: each line is a worker-thread ``readline`` that
cannot be cancelled, and its task group waits for that thread, so a server whose client keeps
stdin open could only stop when the next line or EOF came. Here a daemon thread reads the raw
descriptor (``os.read`` on a duplicate of fd 0: no buffered reader whose lock a thread left
blocked would hold at interpreter exit) and hands each line to the event loop; the loop side is
an ordinary receive, so ``stop()`` ends the iteration at once and the thread, still blocked in
``read``, is left behind without holding the process up.

``stdio_server(stdin=...)`` takes any object it can ``async for`` over for lines of text (it
only iterates it), which is what ``StdinLines`` is; the SDK then leaves fd 0 alone, where
without it fd 0 would point at the null device while serving.
"""

import logging
import os
import threading
from types import TracebackType
from typing import Self

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024


class StdinLines:
    """The lines (each ending with its newline, as a text file's) of a file descriptor."""

    def __init__(self, fd: int = 0) -> None:
        try:  # ours to read and close: the thread never reads a reused fd 0
            self._fd: int | None = os.dup(fd)
        except OSError:  # no stdin at all (started with fd 0 closed): an empty one
            self._fd = None
        self._send: MemoryObjectSendStream[str]
        self._receive: MemoryObjectReceiveStream[str]
        # No buffer: the thread reads the next line only once this one was taken (back-pressure).
        self._send, self._receive = anyio.create_memory_object_stream[str](0)
        self._waiting: anyio.CancelScope | None = None
        self.stopped = False

    async def __aenter__(self) -> Self:
        token = anyio.lowlevel.current_token()
        threading.Thread(target=self._read, args=(token,), name="kamiyo-stdin", daemon=True).start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Read no more: the iteration ends (a line being handed over is dropped)."""
        self.stopped = True
        if self._waiting is not None:
            self._waiting.cancel()
        self._receive.close()  # the thread's pending hand-over fails, and it ends

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        if self.stopped:
            raise StopAsyncIteration
        with anyio.CancelScope() as self._waiting:
            try:
                return await self._receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                raise StopAsyncIteration from None
            finally:
                self._waiting = None
        raise StopAsyncIteration  # stop() cancelled the wait

    def _read(self, token: anyio.lowlevel.EventLoopToken) -> None:
        if self._fd is None:
            anyio.from_thread.run_sync(self._send.close, token=token)
            return
        pending = bytearray()  # a line not ended yet; appended to, not copied, chunk by chunk
        try:
            while chunk := os.read(self._fd, _CHUNK):
                pending += chunk
                while (end := pending.find(b"\n")) >= 0:
                    self._hand_over(bytes(pending[: end + 1]), token)
                    del pending[: end + 1]
            if pending:
                self._hand_over(bytes(pending), token)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.RunFinishedError):
            return  # stopped, or the loop is gone: nobody wants the rest
        except OSError as exc:
            log.error("stdin could not be read (%s): no more requests are read", exc)
        finally:
            os.close(self._fd)
        try:
            anyio.from_thread.run_sync(self._send.close, token=token)  # EOF
        except anyio.RunFinishedError:
            return

    def _hand_over(self, line: bytes, token: anyio.lowlevel.EventLoopToken) -> None:
        text = line.decode("utf-8", errors="replace")  # as the SDK's own text wrapper does
        anyio.from_thread.run(self._send.send, text, token=token)
