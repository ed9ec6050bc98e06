"""Operator commands for the OAuth clients an account has let in (``kamiyo accounts clients``,
``kamiyo accounts revoke-client``): the same functions the dashboard calls
(``access/oauth_grants.py``). A revocation commits through ``revocation.commit``, so its
access tokens stop working on the next call. ``kamiyo oauth prune`` deletes expired and revoked
codes and tokens and stale clients (``access/oauth_cleanup.py``), as serving instances do
every ``oauth_prune_every_s``."""

from typing import Annotated

import typer
from rich.table import Table

from kamiyo.access import accounts, oauth_cleanup, oauth_grants, revocation
from kamiyo.cli_accounts import _day, _warn_unless, run_account_work
from kamiyo.cli_support import err, fail, stdout_console
from kamiyo.db.oauth import OAuthGrant
from kamiyo.runtime import Runtime

oauth_app = typer.Typer(
    help="KAMIYO's OAuth authorization server (operators).", no_args_is_help=True
)


def add_commands(accounts_app: typer.Typer) -> None:
    accounts_app.command("clients")(accounts_clients)
    accounts_app.command("revoke-client")(accounts_revoke_client)


def accounts_clients(
    email: Annotated[str, typer.Argument(help="The account's email address.")],
) -> None:
    """List the OAuth clients (MCP hosts) the account has granted access."""

    async def work(runtime: Runtime) -> list[OAuthGrant]:
        async with runtime.sessions() as session:
            account = await accounts.require_account(session, email)
            return await oauth_grants.list_grants(session, account.pk)

    table = Table()
    for column in ("Client", "Client ID", "Granted", "Last used"):
        table.add_column(column)
    for grant in run_account_work(work):
        table.add_row(
            grant.client_name, grant.client_id, _day(grant.created_at), _day(grant.last_used_at)
        )
    stdout_console().print(table)


def accounts_revoke_client(
    email: Annotated[str, typer.Argument(help="The account's email address.")],
    client_id: Annotated[str, typer.Argument(help="The client's ID, from `accounts clients`.")],
) -> None:
    """Revoke a client's access: its tokens stop working at once."""

    async def work(runtime: Runtime) -> tuple[int, bool]:
        async with runtime.sessions() as session:
            account = await accounts.require_account(session, email)
            revoked = await oauth_grants.revoke_client(session, account.pk, client_id)
            return revoked, await revocation.commit(session, runtime.settings)

    revoked, told = run_account_work(work)
    if not revoked:
        fail(f"{email} has not granted access to {client_id!r}", code=2)
    err.print(f"Revoked {client_id}'s access to {email}'s account.")
    _warn_unless(told)


@oauth_app.command("prune")
def oauth_prune(
    stale_client_days: Annotated[
        int | None,
        typer.Option(min=1, help="Delete unused registered clients older than this (days)."),
    ] = None,
) -> None:
    """Delete expired and revoked OAuth codes and tokens, and registered clients never used.

    Live grants and the retired refresh tokens that guard them are kept."""

    def told(kind: str, count: int) -> None:
        err.print(f"  {kind.replace('_', ' ')}: {count} deleted")

    async def work(runtime: Runtime) -> oauth_cleanup.Pruned:
        days = stale_client_days or runtime.settings.auth.oauth_stale_client_days
        err.print(f"Pruning OAuth state (unused clients older than {days} days)...")
        async with runtime.sessions() as session:
            return await oauth_cleanup.prune(session, days, progress=told)

    pruned = run_account_work(work)
    table = Table()
    for column in ("Deleted", "Rows"):
        table.add_column(column)
    for kind, count in pruned.summary_rows():
        table.add_row(kind, str(count))
    table.add_row("total", str(pruned.total))
    stdout_console().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(oauth_app, name="oauth")
