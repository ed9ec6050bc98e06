"""What every ``kamiyo`` command shares: consoles, settings, running async work, clean errors."""

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from kamiyo.config import (
    ConfigurationError,
    InsecureSettingsError,
    Settings,
    describe_settings_error,
    get_settings,
)
from kamiyo.runtime import Runtime, SchemaOutOfDateError, open_runtime

err = Console(stderr=True, highlight=False, soft_wrap=True)


def stdout_console() -> Console:
    # Piped or redirected output keeps one row per line instead of wrapping at 80 columns.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


log = logging.getLogger("kamiyo.cli")

T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def settings_or_exit() -> Settings:
    """The settings, or one line naming the variable that is wrong and exit status 2."""
    try:
        return get_settings()
    except InsecureSettingsError as exc:
        fail(str(exc).splitlines()[0], code=2)
    except ValidationError as exc:
        fail(describe_settings_error(exc), code=2)


def configured_or_exit(build: Callable[[], T]) -> T:
    """``build()``, or one line and exit status 2 when a setting cannot work as given."""
    try:
        return build()
    except ConfigurationError as exc:
        fail(str(exc), code=2)


def check_serving(settings: Settings, *, database: bool = True) -> None:
    """Start what serving needs once, before the server does, so that a mistake in the
    settings stops here in one line (exit status 2) rather than as a traceback: uvicorn
    reports a failed start that way, and stdio clients only see the process die.

    Payments first (a missing key, an unreachable facilitator), then, when ``database``, the
    database. The server opens both again for itself.
    """

    async def main() -> None:
        if settings.x402.networks:  # x402 on (open_cashier's rule): only then is it loaded
            from kamiyo.payments.cashier import open_cashier

            cashier = open_cashier(
                settings.x402,
                secret_key=settings.auth.secret_key,
                upgrade_url=settings.site.upgrade_url,
                redis=settings.redis,
            )
            if cashier is not None:
                await cashier.start()
                await cashier.stop()
        if database:
            async with open_runtime(settings):
                pass

    execute(settings, main)


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def execute(settings: Settings, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main`` to completion, turning database trouble into a one-line error."""
    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except ConfigurationError as exc:
        fail(str(exc), code=2)
    except SchemaOutOfDateError as exc:
        fail(str(exc))
    except (OperationalError, DBAPIError, OSError) as exc:
        log.debug("database error", exc_info=exc)
        fail(
            f"cannot use the database at {safe_url(settings.database.resolved_url)}: "
            f"{str(exc).splitlines()[0]}"
        )


def run(work: Callable[[Runtime], Awaitable[T]], *, upgrade: bool | None = None) -> T:
    """Open the runtime, do ``work`` with it, close it."""
    settings = settings_or_exit()

    async def main() -> T:
        async with open_runtime(settings, upgrade=upgrade) as runtime:
            return await work(runtime)

    return execute(settings, main)
