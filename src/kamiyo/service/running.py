"""What every serving surface runs while it serves: the runtime, the gate's background work,
the change bus, the alerts worker (unless ``KAMIYO_ALERTS_WORKER=false`` leaves it to
``kamiyo worker`` processes) and the data watch, for stdio and HTTP alike."""

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext

from kamiyo.alerts.bus import change_bus
from kamiyo.alerts.worker import AlertWorker, alerts_working
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
    ):
        working: AbstractAsyncContextManager[AlertWorker | None] = (
            alerts_working(runtime.sessions, settings, bus)
            if settings.alerts.worker
            else nullcontext()
        )
        async with working as worker:

            def data_changed() -> None:
                state.data_changed()
                if worker is not None:
                    worker.wake()  # an ingest here or elsewhere: its outbox rows wait

            async with keeping_current(runtime, data_changed):
                state.runtime, state.alerts = runtime, worker
                try:
                    yield runtime
                finally:
                    state.runtime, state.alerts = None, None
