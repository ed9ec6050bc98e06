"""Operator commands for the OAuth clients an account has let in (``kamiyo accounts clients``,
``kamiyo accounts revoke-client``): the same functions the dashboard calls
(``access/oauth_grants.py``). A revocation commits through ``revocation.commit``, so its
access tokens stop working on the next call."""

from typing import Annotated

import typer
from rich.table import Table

from kamiyo.access import accounts, oauth_grants, revocation
from kamiyo.cli_accounts import _day, _warn_unless, run_account_work
from kamiyo.cli_support import err, fail, stdout_console
from kamiyo.db.oauth import OAuthGrant
from kamiyo.runtime import Runtime


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
