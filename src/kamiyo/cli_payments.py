"""``kamiyo payments reconcile``: resolve settlements sent without an answer (operators).

The payment modules are imported in the command: every other ``kamiyo`` command would pay
for them (web3, solders) at start.
"""

import json
import sys
from typing import Annotated

import typer

from kamiyo.cli_support import err, fail, run, settings_or_exit
from kamiyo.runtime import Runtime

payments_app = typer.Typer(help="x402 payments (operators).", no_args_is_help=True)


@payments_app.command("reconcile")
def payments_reconcile(
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Ask the chain how every pending settlement ended and record it: landed (the payer was
    charged; a retry of the same payment is answered as paid), never landed (nothing taken) or
    still unknown. Reports the payments charged but not answered yet. It only reads the chain,
    so it applies what it finds; running it again changes nothing more."""
    from dataclasses import asdict

    from kamiyo.payments.reconcile import Reconciled, reconcile
    from kamiyo.payments.settlements import reader_for

    settings = settings_or_exit()
    if not settings.x402.networks:
        fail("KAMIYO_X402_NETWORKS is empty: x402 is off, there is nothing to reconcile", code=2)

    async def work(runtime: Runtime) -> Reconciled:
        reader = reader_for(settings.x402.networks)
        try:
            return await reconcile(runtime.sessions, reader)
        finally:
            await reader.aclose()

    found = run(work)
    if as_json:
        sys.stdout.write(json.dumps(asdict(found), indent=2) + "\n")
        return
    err.print(
        f"{len(found.landed_unanswered)} settled on chain but not answered, "
        f"{len(found.lost)} never landed (nothing taken), {len(found.pending)} still pending."
    )
    for charged in found.landed_unanswered:
        sys.stdout.write(
            f"charged, not answered: payment {charged.pk} {charged.amount} atomic USDC for "
            f"{charged.tool} on {charged.network} by {charged.payer} "
            f"(transaction {charged.transaction or 'unknown'})\n"
        )
    for lost in found.lost:
        sys.stdout.write(f"never landed: payment {lost.pk} on {lost.network}: {lost.why}\n")
    for pending in found.pending:
        sys.stdout.write(
            f"still pending: payment {pending.pk} on {pending.network}: {pending.why}\n"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(payments_app, name="payments")
