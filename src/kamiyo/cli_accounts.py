"""Operator commands for accounts and API keys (``kamiyo accounts …``, ``kamiyo keys …``).

Changes to what a credential may do (revoking, disabling, setting a tier) commit through
``revocation.commit``, so running servers apply them on their next call. An unknown account or
key is bad input: one line, exit status 2.
"""

import datetime as dt
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access import accounts, keys, revocation, tokens
from kamiyo.access.usage import month_usage
from kamiyo.cli_support import err, fail, run, stdout_console
from kamiyo.db.tables import ApiKey, Role, Subscription
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


@accounts_app.command("list")
def accounts_list(
    tier: Annotated[Tier | None, typer.Option(help="Only accounts on this tier now.")] = None,
    status: Annotated[
        accounts.AccountStatus | None, typer.Option(help="Only accounts in this status.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List accounts: tier held now and who set it, status, keys, creation day."""

    async def work(runtime: Runtime) -> list[accounts.AccountSummary]:
        async with runtime.sessions() as session:
            grace = dt.timedelta(days=runtime.settings.stripe.past_due_grace_days)
            return await accounts.list_accounts(session, grace, tier=tier, status=status)

    found = run_account_work(work)
    if as_json:
        _print_json([_summary_json(summary) for summary in found])
        return
    table = Table()
    for column in ("Email", "Tier", "Set by", "Status", "Keys", "Created"):
        table.add_column(column)
    for summary in found:
        table.add_row(
            summary.email,
            summary.tier.value,
            summary.tier_source.value,
            summary.status,
            f"{summary.active_keys} active"
            + (
                f", {summary.keys - summary.active_keys} revoked"
                if summary.keys > summary.active_keys
                else ""
            ),
            _day(summary.created_at),
        )
    stdout_console().print(table)


@accounts_app.command("show")
def accounts_show(
    email: Annotated[str, typer.Argument(help="The account's email address.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """One account: its subscription, its keys and this month's usage."""

    async def work(runtime: Runtime) -> dict[str, Any]:
        async with runtime.sessions() as session:
            account = await accounts.require_account(session, email)
            return await _describe(session, runtime, account)

    described = run_account_work(work)
    if as_json:
        _print_json(described)
        return
    out = stdout_console()
    sub, month = described["subscription"], described["month"]
    out.print(f"{described['email']} (account {described['pk']}): {described['status']}")
    out.print(f"  created      {described['created_at']}")
    out.print(f"  tier         {described['tier']} (set by {described['tier_source']})")
    if sub is not None:
        ending = ", cancels at period end" if sub["cancel_at_period_end"] else ""
        out.print(f"  subscription {sub['tier']} {sub['status']}{ending}")
        for field in ("past_due_since", "current_period_end", "stripe_customer_id",
                      "stripe_subscription_id", "updated_at"):  # fmt: skip
            if sub[field] is not None:
                out.print(f"  {field.replace('_', ' '):<12} {sub[field]}")
    out.print(
        f"  this month   {month['calls']} call(s), {month['cost_units']} cost unit(s) "
        f"since {month['since']}"
    )
    table = Table(title="Keys")
    for column in ("Key", "Name", "Created", "Last used", "Status"):
        table.add_column(column)
    for key in described["keys"]:
        table.add_row(
            key["prefix"] + "…", key["name"], key["created_at"][:10],
            (key["last_used_at"] or "never")[:19], key["status"],
        )  # fmt: skip
    out.print(table)


@accounts_app.command("set-tier")
def accounts_set_tier(
    email: Annotated[str, typer.Argument(help="The account's email address.")],
    tier: Annotated[Tier, typer.Argument(help="The tier to give it.")],
) -> None:
    """Set an account's tier by hand (marked as such; the next Stripe change applies over it)."""

    async def work(runtime: Runtime) -> tuple[Tier, bool]:
        async with runtime.sessions() as session:
            account = await accounts.require_account(session, email)
            grace = dt.timedelta(days=runtime.settings.stripe.past_due_grace_days)
            before = await accounts.current_tier(session, account, grace)
            await accounts.set_tier(session, account, tier)
            return before, await revocation.commit(session, runtime.settings)

    before, told = run_account_work(work)
    err.print(f"{email} is on the {tier.value} tier now (was {before.value}), set by hand.")
    _warn_unless(told)


@accounts_app.command("set-role")
def accounts_set_role(
    email: Annotated[str, typer.Argument(help="The account's email address.")],
    role: Annotated[Role, typer.Argument(help="admin: may open the operators' page /admin.")],
) -> None:
    """Make an account an operator (admin) or an ordinary user again."""

    async def work(runtime: Runtime) -> bool:
        async with runtime.sessions() as session:
            account = await accounts.require_account(session, email)
            changed = accounts.set_role(account, role)
            await session.commit()
            return changed

    changed = run_account_work(work)
    err.print(f"{email} is {'an' if role is Role.ADMIN else 'a'} {role.value}" + (
        "." if changed else " already."))  # fmt: skip


def _set_status(email: str, status: accounts.AccountStatus) -> None:
    async def work(runtime: Runtime) -> tuple[bool, bool]:
        async with runtime.sessions() as session:
            account = await accounts.require_account(session, email)
            changed = await accounts.set_status(session, account, status)
            return changed, await revocation.commit(session, runtime.settings)

    changed, told = run_account_work(work)
    err.print(f"{email} is {status.value}" + ("." if changed else " already."))
    _warn_unless(told)


@accounts_app.command("disable")
def accounts_disable(
    email: Annotated[str, typer.Argument(help="The account's email address.")],
) -> None:
    """Disable an account: its keys and tokens are refused from the next call on."""
    _set_status(email, accounts.AccountStatus.DISABLED)


@accounts_app.command("enable")
def accounts_enable(
    email: Annotated[str, typer.Argument(help="The account's email address.")],
) -> None:
    """Enable a disabled account again."""
    _set_status(email, accounts.AccountStatus.ACTIVE)


@keys_app.command("create")
def keys_create(
    email: Annotated[str, typer.Argument(help="Whose key.")],
    name: Annotated[str, typer.Option(help="A name to tell the key apart.")] = "default",
) -> None:
    """Create an API key and print it once (only its hash is kept)."""

    async def work(runtime: Runtime) -> keys.NewKey:
        async with runtime.sessions() as session:
            account = await accounts.require_account(session, email)
            grace = dt.timedelta(days=runtime.settings.stripe.past_due_grace_days)
            new = await keys.create_key(session, account, name, grace)
            await session.commit()
            return new

    new = run_account_work(work)
    sys.stdout.write(new.key + "\n")
    err.print(f"Key {new.prefix}… ({new.name}) created. It is shown this once: store it now.")


@keys_app.command("list")
def keys_list(
    email: Annotated[str | None, typer.Argument(help="Whose keys (or --account).")] = None,
    account: Annotated[str | None, typer.Option("--account", help="Whose keys.")] = None,
) -> None:
    """List an account's keys (prefixes only, never the keys)."""
    if email is not None and account is not None and email != account:
        fail("name the account once: kamiyo keys list --account EMAIL", code=2)
    owner = account or email
    if owner is None:
        fail("which account? kamiyo keys list --account EMAIL", code=2)

    async def work(runtime: Runtime) -> list[ApiKey]:
        async with runtime.sessions() as session:
            found = await accounts.require_account(session, owner)
            return await keys.list_keys(session, found)

    table = Table()
    for column in ("Key", "Name", "Created", "Last used", "Status"):
        table.add_column(column)
    for key in run_account_work(work):
        table.add_row(
            key.prefix + "…", key.name, _day(key.created_at), _day(key.last_used_at), _status(key)
        )
    stdout_console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix, from `keys list`.")],
) -> None:
    """Revoke a key: it stops working at once."""

    async def work(runtime: Runtime) -> tuple[bool, bool]:
        async with runtime.sessions() as session:
            key = await keys.revoke_key(session, prefix.rstrip("…"))
            told = await revocation.commit(session, runtime.settings)
            return key is not None, told

    found, told = run_account_work(work)
    if not found:
        fail(f"no key with prefix {prefix!r}", code=2)
    err.print(f"Revoked {prefix}.")
    _warn_unless(told)


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
            account = await accounts.require_account(session, email)
            return await tokens.issue_token(session, runtime.settings.auth, account, ttl_s=ttl)

    sys.stdout.write(run_account_work(work) + "\n")


@token_app.command("revoke")
def token_revoke() -> None:
    """Revoke the token read from standard input (never from the command line, where `ps`
    would show it)."""
    token = sys.stdin.read().strip()

    async def work(runtime: Runtime) -> tuple[str, bool]:
        async with runtime.sessions() as session:
            jti = await tokens.revoke_token(session, runtime.settings.auth, token)
            return jti, await revocation.commit(session, runtime.settings)

    try:
        jti, told = run_account_work(work)
    except tokens.TokenError as exc:
        fail(f"cannot revoke: {exc}", code=2)
    err.print(f"Revoked token {jti}.")
    _warn_unless(told)


async def _describe(session: AsyncSession, runtime: Runtime, account: Any) -> dict[str, Any]:
    subscription = await session.get(Subscription, account.pk)
    grace = dt.timedelta(days=runtime.settings.stripe.past_due_grace_days)
    holds = accounts.entitled_tier(subscription, dt.datetime.now(dt.UTC), grace)
    month = await month_usage(session, account.pk)
    return {
        "pk": account.pk,
        "email": account.email,
        "status": account.status,
        "created_at": _iso(account.created_at),
        "tier": holds.value,
        "tier_source": accounts.tier_source(subscription).value,
        "subscription": None if subscription is None else _subscription_json(subscription),
        "keys": [
            {
                "prefix": key.prefix,
                "name": key.name,
                "status": _status(key),
                "created_at": _iso(key.created_at),
                "last_used_at": _iso(key.last_used_at),
                "revoked_at": _iso(key.revoked_at),
            }
            for key in await keys.list_keys(session, account)
        ],
        "month": month.model_dump(mode="json"),
    }


def _subscription_json(subscription: Subscription) -> dict[str, Any]:
    return {
        "tier": subscription.tier,
        "status": subscription.status,
        "tier_source": subscription.tier_source,
        "past_due_since": _iso(subscription.past_due_since),
        "current_period_end": _iso(subscription.current_period_end),
        "cancel_at_period_end": subscription.cancel_at_period_end,
        "stripe_customer_id": subscription.stripe_customer_id,
        "stripe_subscription_id": subscription.stripe_subscription_id,
        "updated_at": _iso(subscription.updated_at),
    }


def _summary_json(summary: accounts.AccountSummary) -> dict[str, Any]:
    return {
        "email": summary.email,
        "tier": summary.tier.value,
        "tier_source": summary.tier_source.value,
        "status": summary.status,
        "active_keys": summary.active_keys,
        "keys": summary.keys,
        "created_at": _iso(summary.created_at),
    }


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _day(moment: dt.datetime | None) -> str:
    return f"{moment:%Y-%m-%d}" if moment is not None else "never"


def _status(key: ApiKey) -> str:
    return "revoked" if key.revoked_at else "active"


def _warn_unless(told: bool) -> None:
    if not told:
        err.print(
            "[yellow]warning:[/yellow] Redis could not be told: running servers apply this "
            "when their cache entry expires (KAMIYO_TIER_CACHE_S) instead of on the next call."
        )


def register(app: typer.Typer) -> None:
    from kamiyo import cli_oauth  # which imports this module: its account commands

    cli_oauth.add_commands(accounts_app)
    app.add_typer(accounts_app, name="accounts")
    app.add_typer(keys_app, name="keys")
    app.add_typer(token_app, name="token")
