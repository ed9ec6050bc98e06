"""What every serving surface runs while it serves: the runtime, the gate's background work,
the alerts worker with its change bus, and the data watch (stdio and HTTP alike)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from kamiyo.alerts.redis_bus import change_bus
from kamiyo.alerts.worker import alerts_working
from kamiyo.runtime import Runtime, open_runtime
from kamiyo.service.refreshing import keeping_current
from kamiyo.service.state import ServerState


@asynccontextmanager
async def running(state: ServerState) -> AsyncIterator[Runtime]:
    """Open everything ``state`` serves with; ``state.runtime`` is set inside the block."""
    settings = state.settings
    async with (
        open_runtime(settings) as runtime,
        state.gate.serving(runtime.sessions),
        change_bus(settings, state.changes) as bus,
        alerts_working(runtime.sessions, settings, bus) as worker,
    ):

        def data_changed() -> None:
            state.data_changed()
            worker.wake()  # an ingest here or elsewhere: its outbox rows are waiting

        async with keeping_current(runtime, data_changed):
            state.runtime, state.alerts = runtime, worker
            try:
                yield runtime
            finally:
                state.runtime, state.alerts = None, None
