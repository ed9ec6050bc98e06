"""Operator commands for an account's alert rules (``kamiyo alerts …  --account EMAIL``).

They run the same operations as the tools (``service/alert_ops.py``), as the account on the
tier it holds now, so its cap applies and a rule made here is the one its MCP sessions and
``list_alerts`` see. A signing secret is printed once, to stdout (so it can be piped into a
secret store); everything else goes to stderr. An unknown account, rule or a request to
change is one line and exit status 2.
"""

import json
import sys
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.markup import escape
from rich.table import Table

from kamiyo.access import accounts
from kamiyo.access.gate import Grant, OpenGate
from kamiyo.alerts.manage import Rule
from kamiyo.cli_accounts import run_account_work
from kamiyo.cli_support import err, fail, stdout_console
from kamiyo.errors import describe_validation_error
from kamiyo.intel.scope import NotFoundError
from kamiyo.runtime import Runtime
from kamiyo.service import alert_ops
from kamiyo.service.answers import Failure
from kamiyo.service.arguments import parse_query
from kamiyo.service.own import NoArguments
from kamiyo.service.state import Job, ServerState
from kamiyo.tiers import TIERS

Q = TypeVar("Q", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)

alerts_app = typer.Typer(help="Accounts' alert rules (operators).", no_args_is_help=True)

Account = Annotated[str, typer.Option("--account", help="The account's email address.")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
AlertId = Annotated[str, typer.Argument(help="The rule's id (alr_…), from `kamiyo alerts list`.")]


class _RefusedError(Exception):
    """A request the operator must change; the message says how."""


def _as_account(
    email: str,
    run: Callable[[Job, Q], Awaitable[R]],
    query: Q | Failure,
) -> R:
    """``run(job, query)`` as the account with ``email``, on the tier it holds now."""
    if isinstance(query, Failure):
        fail(query.message, code=2)

    async def work(runtime: Runtime) -> R:
        settings = runtime.settings
        state = ServerState(settings, OpenGate(settings.answers.max_results), runtime)
        try:
            async with runtime.sessions() as session:
                account = await accounts.require_account(session, email)
                tier = await accounts.current_tier(session, account)
                grant = Grant(
                    tier=tier.value,
                    max_results=min(TIERS[tier].max_results, settings.answers.max_results),
                    account_pk=account.pk,
                    subject=f"account:{account.pk}",
                )
                try:
                    return await run(Job(state, session, grant), query)
                except ValidationError as exc:
                    raise _RefusedError(describe_validation_error(exc)) from None
                except NotFoundError as exc:
                    raise _RefusedError(str(exc)) from None
        finally:
            await state.aclose()

    try:
        return run_account_work(work)
    except _RefusedError as exc:
        fail(escape(str(exc)), code=2)


@alerts_app.command("create")
def alerts_create(
    account: Account,
    chain: Annotated[list[str] | None, typer.Option(help="A chain (repeatable).")] = None,
    protocol: Annotated[list[str] | None, typer.Option(help="A protocol (repeatable).")] = None,
    attack_type: Annotated[
        list[str] | None, typer.Option(help="An attack type (repeatable).")
    ] = None,
    address: Annotated[
        list[str] | None, typer.Option(help="A watched address, in any role (repeatable).")
    ] = None,
    min_loss_usd: Annotated[str | None, typer.Option(help="Losses of at least this.")] = None,
    webhook: Annotated[
        str | None, typer.Option(help="A webhook URL; none: the account's MCP sessions only.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="The rule's name.")] = None,
    as_json: AsJson = False,
) -> None:
    """Create a rule for the account; its webhook signing secret is printed once, to stdout."""
    filters: dict[str, Any] = {
        key: value
        for key, value in (
            ("chains", chain),
            ("protocols", protocol),
            ("attack_types", attack_type),
            ("addresses", address),
            ("min_loss_usd", min_loss_usd),
        )
        if value
    }
    given = {"filters": filters, "webhook_url": webhook, "name": name}
    names = {"webhook_url": "--webhook"}
    query = parse_query("alerts create", alert_ops.CreateAlertQuery, given, names)
    created = _as_account(account, alert_ops.create_alert, query)
    if as_json:
        _print_json(created)
        return
    err.print(escape(created.message))
    for note in created.notes:
        err.print(f"[yellow]note[/yellow]: {escape(note)}")
    if created.secret is not None:
        sys.stdout.write(created.secret + "\n")


@alerts_app.command("list")
def alerts_list(account: Account, as_json: AsJson = False) -> None:
    """The account's rules, with each one's newest deliveries."""
    listed = _as_account(account, alert_ops.list_alerts, NoArguments())
    if as_json:
        _print_json(listed)
        return
    table = Table()
    for column in ("Id", "Name", "Status", "Webhook host", "Filters", "Last delivery"):
        table.add_column(column)
    for rule in listed.alerts:
        table.add_row(
            rule.alert_id,
            escape(rule.name),
            rule.status + (f" ({rule.disabled_reason})" if rule.disabled_reason else ""),
            # The host only: a webhook URL's path or query may carry the receiver's token.
            urllib.parse.urlsplit(rule.webhook_url).hostname or "" if rule.webhook_url else "-",
            escape(_filters(rule)),
            _last_delivery(rule),
        )
    stdout_console().print(table)
    err.print(escape(listed.message))


@alerts_app.command("delete")
def alerts_delete(alert_id: AlertId, account: Account) -> None:
    """Delete one of the account's rules (pending deliveries are not sent)."""
    query = parse_query("alerts delete", alert_ops.AlertIdQuery, {"alert_id": alert_id})
    err.print(escape(_as_account(account, alert_ops.delete_alert, query).message))


@alerts_app.command("test")
def alerts_test(alert_id: AlertId, account: Account) -> None:
    """Queue a signed test delivery to the rule's webhook; prints its delivery id."""
    query = parse_query("alerts test", alert_ops.AlertIdQuery, {"alert_id": alert_id})
    queued = _as_account(account, alert_ops.queue_test_alert, query)
    err.print(escape(queued.message))
    sys.stdout.write(queued.delivery_id + "\n")


def _filters(rule: Rule) -> str:
    given = rule.filters.model_dump(mode="json", exclude_defaults=True)
    return (
        "; ".join(
            f"{key}: {', '.join(map(str, value)) if isinstance(value, list) else value}"
            for key, value in given.items()
        )
        or "every incident"
    )


def _last_delivery(rule: Rule) -> str:
    if not rule.deliveries:
        return "-"
    last = rule.deliveries[0]
    code = f" HTTP {last.response_code}" if last.response_code is not None else ""
    return f"{last.event} {last.status}{code}"


def _print_json(model: BaseModel) -> None:
    sys.stdout.write(json.dumps(model.model_dump(mode="json"), indent=2) + "\n")


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
