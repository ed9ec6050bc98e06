"""What every call shares while a surface serves: settings, the gate, the runtime, the cache."""

import time
from collections.abc import Awaitable, Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cachetools import TTLCache
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access.gate import Gate, Grant
from kamiyo.alerts.bus import MemoryBus
from kamiyo.config import ConfigurationError, Settings
from kamiyo.db.engine import read_session_factory
from kamiyo.runtime import Runtime
from kamiyo.service.answers import Answer

if TYPE_CHECKING:
    from kamiyo.alerts.worker import AlertWorker
    from kamiyo.explorers import Explorers


def default_gate(settings: Settings) -> Gate:
    """Accounts and tiers, and pay per call where x402 is configured."""
    # Imported here: the gate, the cashier and what they pull in (mail, chains' clients, JSON
    # schemas) cost a start-up that serves on the open gate (the CLI's commands) ~0.3 s.
    from kamiyo.access.account_gate import AccountGate

    if not settings.x402.networks:  # x402 off (open_cashier's rule): x402 is never loaded
        return AccountGate(settings, None)
    from kamiyo.payments.cashier import open_cashier

    cashier = open_cashier(
        settings.x402,
        secret_key=settings.auth.secret_key,
        upgrade_url=settings.site.upgrade_url,
        redis=settings.redis,
    )
    return AccountGate(settings, cashier)


@contextmanager
def _refused_explorer_urls() -> Iterator[None]:
    try:
        yield
    except ValueError as exc:  # a URL the settings allow in form but not in place
        raise ConfigurationError(f"explorers: {exc}") from None


@dataclass
class ServerState:
    settings: Settings
    gate: Gate
    runtime: Runtime | None = None
    # stdio has no headers: its credential comes from the environment at start.
    stdio_credential: str | None = None
    started_monotonic: float = field(default_factory=time.monotonic)
    # Answers to identical read-only calls with the same caps, kept for cache_ttl_s seconds.
    cache: TTLCache[Hashable, Answer] | None = None
    # The clients that read wallets' and transactions' histories from the chain, opened by
    # :meth:`open_explorers` (no request is made until a screen asks); closed by :meth:`aclose`.
    explorers: "Explorers | None" = None
    # This instance's listeners to incident changes (MCP subscriptions: mcpserver/
    # subscriptions.py); the alerts worker's bus tells them, directly or through Redis from
    # whichever instance claimed the change.
    changes: MemoryBus = field(default_factory=MemoryBus)
    # The alerts worker while serving (woken when this instance queues work for it).
    alerts: "AlertWorker | None" = None
    # Run when serving begins to stop, while clients can still be told (listen streams close).
    on_shutdown: list[Callable[[], None]] = field(default_factory=list)
    stopping: bool = False  # the on_shutdown hooks have run
    # Run by :meth:`aclose`: what a surface opened for the state's lifetime (the dashboard's
    # Redis connections for its log-in limits).
    on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # The runtime's sessions for calls that only read, made on first use (read_sessions).
    _readers: tuple[Runtime, async_sessionmaker[AsyncSession]] | None = field(
        default=None, init=False, repr=False
    )

    def __post_init__(self) -> None:
        if self.cache is None and self.settings.answers.cache_ttl_s > 0:
            self.cache = TTLCache(
                maxsize=self.settings.answers.cache_size, ttl=self.settings.answers.cache_ttl_s
            )

    def open_explorers(self) -> "Explorers":
        """The explorer clients, opened on first use (before a screen's budget starts): a
        command that never screens never loads them (httpcore2, the CA bundle). An HTTP
        server opens them at start; stdio only checks them (:meth:`check_explorers`)."""
        if self.explorers is None:
            from kamiyo.explorers import open_explorers

            with _refused_explorer_urls():
                self.explorers = open_explorers(self.settings.explorers)
        return self.explorers

    def check_explorers(self) -> None:
        """Stop on an explorer URL the settings refuse, without opening the clients."""
        from kamiyo.explorers import check_explorers

        with _refused_explorer_urls():
            check_explorers(self.settings.explorers)

    def shutting_down(self) -> None:
        """Run the ``on_shutdown`` hooks, once (the HTTP server runs them as stopping begins,
        the lifespan again on its way out)."""
        if self.stopping:
            return
        self.stopping = True
        for hook in self.on_shutdown:
            hook()

    async def aclose(self) -> None:
        """Close what the state opened (the explorer clients) and what was handed to it."""
        if self.explorers is not None:
            await self.explorers.aclose()
        for close in self.on_close:
            await close()

    def data_changed(self) -> None:
        """New or changed incidents: cached answers may be stale, so none is kept."""
        if self.cache is not None:
            self.cache.clear()

    def require_runtime(self) -> Runtime:
        if self.runtime is None:
            raise RuntimeError("the server was used before its runtime was opened")
        return self.runtime

    def read_sessions(self) -> async_sessionmaker[AsyncSession]:
        """Sessions for a call that only reads (``db.engine.read_session_factory``)."""
        runtime = self.require_runtime()
        if self._readers is None or self._readers[0] is not runtime:
            self._readers = (runtime, read_session_factory(runtime.engine))
        return self._readers[1]


# Progress of a long call, for the caller: (done, total if known, what is happening). Over MCP
# it becomes notifications/progress when the client sent a progressToken.
Progress = Callable[[float, float | None, str | None], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Job:
    """What an operation runs with: the server's state, a database session, the call's grant,
    and where to report progress (None: nobody listens)."""

    state: ServerState
    session: AsyncSession
    grant: Grant
    progress: Progress | None = None
