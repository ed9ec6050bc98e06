"""``kamiyo signup EMAIL``: the web sign-up, from the command line; ``kamiyo billing sync``.

Sign-up says the same thing whether or not the address had an account (a shared terminal or a
support script should learn no more than the web form tells); the mailbox gets the details.
"""

import logging
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from kamiyo.access.accounts import AccountError, normalize_email
from kamiyo.cli_support import err, fail, run, settings_or_exit
from kamiyo.runtime import Runtime

# The billing modules (Stripe's SDK, mail) are imported in the commands that use them: every
# other ``kamiyo`` command would pay for them at start.

billing_app = typer.Typer(help="Stripe billing (operators).", no_args_is_help=True)


def signup(
    email: Annotated[str, typer.Argument(help="Who signs up; the link is mailed there.")],
) -> None:
    """Sign an address up for a free account and mail it a one-time link to its API key."""
    from kamiyo.billing import onboarding
    from kamiyo.billing.mailer import MailError

    # Its INFO lines say whether an account was made: more than the web answer tells.
    quiet = logging.getLogger(onboarding.__name__)
    quiet.setLevel(max(quiet.getEffectiveLevel(), logging.WARNING))
    try:
        address = normalize_email(email)
    except AccountError as exc:
        fail(str(exc), code=2)

    async def work(runtime: Runtime) -> None:
        await onboarding.signup(
            runtime.sessions, onboarding.Onboarding.from_settings(runtime.settings), address
        )

    try:
        run(work)
    except onboarding.SignupUnavailableError as exc:
        fail(str(exc), code=2)
    except MailError as exc:
        fail(str(exc))
    err.print(f"If {address} can sign up, a mail is on its way there: check your email.")


@billing_app.command("sync")
def billing_sync() -> None:
    """Apply every subscription Stripe holds to the accounts here, for webhooks that never
    arrived. Safe to repeat: a second run changes nothing, and a newer webhook state is kept."""
    from kamiyo.billing import subscriptions
    from kamiyo.billing.stripe_api import BillingError, BillingUnavailableError
    from kamiyo.billing.sync import SyncReport, sync_subscriptions

    settings = settings_or_exit()
    key = settings.stripe.secret_key
    if key is None or not key.get_secret_value():
        fail("KAMIYO_STRIPE_SECRET_KEY is not set: there is no Stripe account to read", code=2)
    # A line per Stripe request and per stranger's subscription is noise unless asked for (-v).
    chatty = [logging.getLogger(name) for name in ("stripe", subscriptions.__name__)]
    levels = [logger.level for logger in chatty]
    for logger in chatty:
        if logger.getEffectiveLevel() > logging.DEBUG:
            logger.setLevel(logging.WARNING)
    done = SyncReport()

    async def work(runtime: Runtime) -> SyncReport:
        nonlocal done
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed} applied"),
        )
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task("Syncing subscriptions from Stripe", total=None)

            def advance(report: SyncReport) -> None:
                nonlocal done
                done = report
                progress.update(task, completed=report.seen)

            return await sync_subscriptions(runtime.sessions, runtime.settings, on_progress=advance)

    try:
        report = run(work)
    except BillingUnavailableError as exc:
        fail(str(exc), code=2)
    except BillingError as exc:
        fail(f"Stripe sync stopped after {done.seen} subscription(s): {exc}")
    finally:
        for logger, level in zip(chatty, levels, strict=True):
            logger.setLevel(level)
    err.print(f"Synced {report.summary()}")


def register(app: typer.Typer) -> None:
    app.add_typer(billing_app, name="billing")
    app.command()(signup)
