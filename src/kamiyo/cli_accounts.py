"""Operator commands for accounts and API keys (``kamiyo accounts …``, ``kamiyo keys …``)."""

import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from kamiyo.access import accounts, keys, tokens
from kamiyo.cli_support import err, fail, run, stdout_console
from kamiyo.runtime import Runtime
from kamiyo.tiers import Tier

T = TypeVar("T")

accounts_app = typer.Typer(help="Accounts (operators).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (operators).", no_args_is_help=True)


@accounts_app.command("create")
def accounts_create(
    email: Annotated[str, typer.Argument(help="The account's email address.")],
    tier: Annotated[Tier, typer.Option(help="Tier to start on.")] = Tier.FREE,
) -> None:
    """Create an account (paid tiers start with an active subscription)."""

    async def work(runtime: Runtime) -> str:
        async with runtime.sessions() as session:
            account = await accounts.create_account(session, email, tier)
            await session.commit()
            return account.email

    created = run_account_work(work)
    err.print(f"Created {created} on the {tier.value} tier.")


@keys_app.command("create")
def keys_create(
    email: Annotated[str, typer.Argument(help="Whose key.")],
    name: Annotated[str, typer.Option(help="A name to tell the key apart.")] = "default",
) -> None:
    """Create an API key and print it once (only its hash is kept)."""

    async def work(runtime: Runtime) -> keys.NewKey:
        async with runtime.sessions() as session:
            account = await accounts.find_account(session, email)
            if account is None:
                raise accounts.AccountError(f"no account for {email}")
            new = await keys.create_key(session, account, name)
            await session.commit()
            return new

    new = run_account_work(work)
    sys.stdout.write(new.key + "\n")
    err.print(f"Key {new.prefix}… ({new.name}) created. It is shown this once: store it now.")


@keys_app.command("list")
def keys_list(email: Annotated[str, typer.Argument(help="Whose keys.")]) -> None:
    """List an account's keys (prefixes only)."""

    async def work(runtime: Runtime) -> list[tuple[str, str, str, str]]:
        async with runtime.sessions() as session:
            account = await accounts.find_account(session, email)
            if account is None:
                raise accounts.AccountError(f"no account for {email}")
            return [
                (
                    k.prefix + "…",
                    k.name,
                    f"{k.created_at:%Y-%m-%d}",
                    "revoked" if k.revoked_at else "active",
                )
                for k in await keys.list_keys(session, account)
            ]

    table = Table()
    for column in ("Key", "Name", "Created", "Status"):
        table.add_column(column)
    for row in run_account_work(work):
        table.add_row(*row)
    stdout_console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix, from `keys list`.")],
) -> None:
    """Revoke a key: it stops working at once."""

    async def work(runtime: Runtime) -> bool:
        async with runtime.sessions() as session:
            key = await keys.revoke_key(session, prefix.rstrip("…"))
            await session.commit()
            return key is not None

    if not run_account_work(work):
        fail(f"no key with prefix {prefix!r}")
    err.print(f"Revoked {prefix}.")


def run_account_work(work: Callable[[Runtime], Awaitable[T]]) -> T:
    try:
        return run(work)
    except accounts.AccountError as exc:
        fail(str(exc), code=2)


token_app = typer.Typer(help="JWT access tokens (operators).", no_args_is_help=True)


@token_app.command("issue")
def token_issue(
    email: Annotated[str, typer.Argument(help="Whose token.")],
    ttl: Annotated[
        int | None, typer.Option(help="Lifetime in seconds (default from settings).")
    ] = None,
) -> None:
    """Issue a signed access token for an account and print it."""

    async def work(runtime: Runtime) -> str:
        async with runtime.sessions() as session:
            account = await accounts.find_account(session, email)
            if account is None:
                raise accounts.AccountError(f"no account for {email}")
            return await tokens.issue_token(session, runtime.settings.auth, account, ttl_s=ttl)

    sys.stdout.write(run_account_work(work) + "\n")


@token_app.command("revoke")
def token_revoke() -> None:
    """Revoke the token read from standard input (never from the command line, where `ps`
    would show it)."""
    token = sys.stdin.read().strip()

    async def work(runtime: Runtime) -> str:
        async with runtime.sessions() as session:
            jti = await tokens.revoke_token(session, runtime.settings.auth, token)
            await session.commit()
            return jti

    try:
        jti = run_account_work(work)
    except tokens.TokenError as exc:
        fail(f"cannot revoke: {exc}", code=2)
    err.print(f"Revoked token {jti}.")
