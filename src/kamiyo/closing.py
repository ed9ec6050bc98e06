"""Closing steps with a bound of their own, once the calls of a stopping server are done.

After the shutdown deadline (``KAMIYO_SHUTDOWN_GRACE_S``) a server still writes the meter's
last batch and closes its database pool. Against a database that stopped answering (a lock
held elsewhere, a host gone without closing its connections) either can wait without end, and
the supervisor's SIGKILL would then decide what is lost, with no line saying so. Each step gets
``KAMIYO_SHUTDOWN_CLOSE_S``; a step still running then is cancelled (anyio's cancellation is
level-triggered, so even a rollback awaited on the way out is cut) and logged by name.
``in_background`` is the other end of a worker's periodic passes: cancelled when its block ends.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Coroutine
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio

log = logging.getLogger(__name__)


async def within(step: str, seconds: float, work: Awaitable[object]) -> bool:
    """Await ``work`` for up to ``seconds``; False (and an ERROR line) if it was cut."""
    with anyio.move_on_after(seconds) as bound:
        await work
    if bound.cancelled_caught:
        log.error("Stopping: %s did not finish within %.0f s and was cut", step, seconds)
        return False
    return True


@asynccontextmanager
async def in_background(work: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """``work`` as a task while the block runs; cancelled, and awaited, when it ends."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
