"""The ``kamiyo`` commands that live in other modules, imported only when one of them runs.

A process runs one command, so it imports that command's module and no other: ``kamiyo
search`` does not pay for the accounts, usage or billing commands and what they import (the
suite starts hundreds of ``kamiyo`` processes, desktop hosts start one per launch). ``--help``
and completion list every command and so import every module.

A module here has ``register(app)``, which adds its commands to a ``typer.Typer``; each name
it adds is listed in ``COMMAND_MODULES`` (tests/test_cli_startup.py checks that the two agree).
"""

import functools
import importlib
from typing import Any, Protocol

import typer
from typer import _click as click  # typer vendors its own click since 0.25
from typer.core import TyperGroup

# Every command and command group defined outside cli.py, and the module that registers it.
COMMAND_MODULES: dict[str, str] = {
    # the catalogue's operations (service/catalogue.py, ``command=Command(...)``)
    "health": "kamiyo.cli_operations",
    "search": "kamiyo.cli_operations",
    "show": "kamiyo.cli_operations",
    "stats": "kamiyo.cli_operations",
    "risk": "kamiyo.cli_operations",
    "wallet": "kamiyo.cli_operations",
    "tx": "kamiyo.cli_operations",
    "pricing": "kamiyo.cli_operations",
    "accounts": "kamiyo.cli_accounts",
    "keys": "kamiyo.cli_accounts",
    "token": "kamiyo.cli_accounts",
    "oauth": "kamiyo.cli_oauth",
    "usage": "kamiyo.cli_usage",
    "billing": "kamiyo.cli_billing",
    "signup": "kamiyo.cli_billing",
    "alerts": "kamiyo.cli_alerts",
    "payments": "kamiyo.cli_payments",
    "ingest": "kamiyo.cli_ingest",
    "sources": "kamiyo.cli_ingest",
    "worker": "kamiyo.cli_ingest",
    "incidents": "kamiyo.cli_ingest",
    "backup": "kamiyo.cli_backup",
    "restore": "kamiyo.cli_backup",
}


class _Registering(Protocol):
    def register(self, app: typer.Typer) -> None: ...


@functools.cache  # once per process: ``register`` may add to typer apps its module shares
def commands_of(module_name: str) -> dict[str, click.Command]:
    """The click commands that ``module_name``'s ``register`` adds, by name."""
    module: Any = importlib.import_module(module_name)
    registering: _Registering = module
    holder = typer.Typer()
    registering.register(holder)
    return dict(typer.main.get_group(holder).commands)


class LazyGroup(TyperGroup):
    """A typer group whose commands in ``COMMAND_MODULES`` are loaded when first asked for."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._loaded: set[str] = set()

    def _load(self, module_name: str) -> None:
        if module_name not in self._loaded:
            self._loaded.add(module_name)
            for name, command in commands_of(module_name).items():
                self.commands.setdefault(name, command)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            if cmd_name in COMMAND_MODULES:
                self._load(COMMAND_MODULES[cmd_name])
            else:  # a typo: every name loaded, for typer's "Did you mean ...?"
                self.list_commands(ctx)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module_name in dict.fromkeys(COMMAND_MODULES.values()):
            self._load(module_name)
        return list(self.commands)
