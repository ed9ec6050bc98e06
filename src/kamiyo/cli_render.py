"""How the command line shows each kind of answer: tables and short reports on stdout."""

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from rich.markup import escape
from rich.table import Table

from kamiyo import intel
from kamiyo.cli_support import stdout_console
from kamiyo.payments.prices import PriceList


def usd(amount: float | None) -> str:
    if amount is None:
        return ""
    for factor, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if amount >= factor:
            return f"${amount / factor:,.1f}{suffix}"
    return f"${amount:,.0f}"


def incident_table(incidents: list[intel.IncidentSummary]) -> Table:
    table = Table(show_lines=False)
    table.add_column("Date", no_wrap=True)
    table.add_column("Protocol", overflow="fold")
    table.add_column("Chains")
    table.add_column("Loss", justify="right")
    table.add_column("Attack type", overflow="fold")
    table.add_column("ID", no_wrap=True)  # people copy it into `kamiyo show`
    for incident in incidents:
        table.add_row(
            incident.date.isoformat(),
            incident.protocol,
            " ".join(incident.chains),
            usd(incident.loss_usd) or (incident.loss_text or "")[:24],
            incident.attack_type.value,
            incident.id,
        )
    return table


def show_list(result: intel.IncidentList) -> None:
    out = stdout_console()
    if isinstance(result, intel.TransactionMatches):
        out.print(result.summary)
    if not result.incidents:
        if not isinstance(result, intel.TransactionMatches):
            out.print("No incidents match.")
        return
    out.print(incident_table(result.incidents))
    if result.note:
        out.print(result.note)
    elif result.truncated:
        out.print(f"Showing the first {result.count}; more match (raise --limit).")


def show_incident(incident: intel.Incident) -> None:
    out = stdout_console()
    out.print(f"[bold]{incident.protocol}[/bold]  {incident.id}")
    date = incident.date.isoformat()[:7] if incident.date_precision == "month" else incident.date
    out.print(f"Date: {date}   Chains: {', '.join(incident.chains) or 'unknown'}")
    loss = usd(incident.loss_usd) or "no USD figure"
    if incident.loss_text:
        basis = f"{incident.loss_usd_basis}; " if incident.loss_usd_basis else ""
        loss += f" ({basis}source says: {incident.loss_text})"
    out.print(f"Loss: {loss}")
    raw = f" ({incident.attack_type_raw})" if incident.attack_type_raw else ""
    out.print(f"Attack type: {incident.attack_type.value}{raw}")
    out.print(f"Status: {incident.status}")
    if incident.aliases:
        out.print(f"Also known as: {', '.join(incident.aliases)}")
    if incident.funds_returned:
        returned = usd(incident.funds_returned_usd) or "an unstated amount"
        out.print(f"Funds returned: {returned}")
    if incident.description:
        out.print(incident.description)
    if incident.addresses:
        out.print("\n[bold]Addresses[/bold]")
        for a in incident.addresses:
            out.print(f"  {a.role.value:<20} {a.chain or '':<10} {a.address}  {a.label or ''}")
    if incident.transactions:
        out.print("\n[bold]Transactions[/bold]")
        for t in incident.transactions:
            out.print(f"  {t.chain or '':<10} {t.hash}")
    if incident.references:
        out.print("\n[bold]References[/bold]")
        for r in incident.references:
            out.print(f"  {(r.firm or ''):<18} {r.url}")
    out.print("\n[bold]Sources[/bold]")
    for s in incident.sources:
        figure = f"  loss: {s.loss_text}" if s.loss_text else ""
        out.print(f"  {s.source:<18} {s.date}  {s.source_id}{figure}")
        if s.url:
            out.print(f"  {'':<18} {s.url}")


def show_stats(result: intel.Stats) -> None:
    table = Table()
    table.add_column(result.group_by.value.replace("_", "-").capitalize())
    table.add_column("Incidents", justify="right")
    table.add_column("Total loss (USD)", justify="right")
    table.add_column("With a USD figure", justify="right")
    for row in result.rows:
        table.add_row(
            row.key,
            f"{row.incidents:,}",
            f"${row.total_loss_usd:,.0f}",
            f"{row.incidents_with_loss:,}",
        )
    table.add_section()
    table.add_row("all", f"{result.incidents:,}", f"${result.total_loss_usd:,.0f}", "")
    out = stdout_console()
    out.print(table)
    if result.note:
        out.print(result.note)


def show_risk(risk: intel.ProtocolRisk) -> None:
    out = stdout_console()
    out.print(risk.summary)
    if risk.factors:
        table = Table(title=f"Factors ({risk.methodology_version}, as of {risk.as_of})")
        table.add_column("Factor")
        table.add_column("Value", justify="right")
        table.add_column("Weight", justify="right")
        table.add_column("Points", justify="right")
        table.add_column("Reason", overflow="fold")
        for factor in risk.factors:
            table.add_row(
                factor.name.value,
                f"{factor.value:.2f}",
                f"{factor.weight:g}",
                f"{factor.contribution:+.1f}",
                factor.reason,
            )
        out.print(table)
    if risk.confidence:
        out.print(f"Confidence: {risk.confidence.level} ({risk.confidence.reason})")
    if risk.incidents:
        out.print(incident_table(risk.incidents))
    if risk.related:
        out.print(f"\n[bold]Related, not counted[/bold] ({risk.related_count})")
        for item in risk.related:
            incident = item.incident
            loss = usd(incident.loss_usd) or "no USD figure"
            out.print(
                f"  {incident.date}  {incident.protocol}  {loss}  {item.relation}  ({incident.id})"
            )
    for recommendation in risk.recommendations or []:
        out.print(f"\n[bold]{recommendation.attack_type.value}[/bold]")
        for check in recommendation.checks:
            out.print(f"  - {check}")
    for advice in risk.factor_checks or []:
        out.print(f"\n[bold]{advice.factor.value}[/bold] ({advice.contribution:+.1f} points)")
        for check in advice.checks:
            out.print(f"  - {check}")


_VERDICT_STYLE = {"block": "bold red", "warn": "yellow", "allow": "green", "unknown": "bold"}


def show_screen(screen: intel.AddressScreen) -> None:
    out = stdout_console()
    verdict = screen.verdict.value
    level = f", {screen.level}" if screen.level else ""
    out.print(
        f"[{_VERDICT_STYLE[verdict]}]{verdict.upper()}[/]  score {screen.score}/100{level}"
        f"  ({screen.methodology_version})"
    )
    out.print(escape(screen.summary))
    if screen.direct_matches:
        out.print("\n[bold]Direct matches[/bold]")
    for match in screen.direct_matches:
        if match.kind == "sanction":
            assets = ", ".join(match.assets)
            out.print(f"  sanction  {match.list_title} as of {match.list_date} ({assets})")
            out.print(f"            [dim]{escape(match.caveat)}[/dim]")
        else:
            role = match.role.value.replace("_", " ")
            seen = f" on {match.chain}" if match.chain else ""
            out.print(f"  {match.date}  {role}{seen}: {match.protocol}  ({match.incident_id})")
            out.print(f"            [dim]{escape(match.meaning)}[/dim]")
    if screen.counterparties:
        out.print("\n[bold]Counterparties[/bold]")
    for party in screen.counterparties:
        amount = f"{party.amount} {party.token or ''}".strip() if party.amount else ""
        when = f"{party.date:%Y-%m-%d}" if party.date else "date unknown"
        out.print(
            f"  {when} {party.direction:<3} {party.address} {party.role.value} "
            f"of {party.protocol} ({party.incident_id}, {party.timing}) {amount} {party.tx_hash}"
        )
    if screen.approvals:
        out.print("\n[bold]Open approvals: revoke them[/bold]")
    for a in screen.approvals:
        symbol = a.token_symbol or a.token
        out.print(f"  {a.chain} {symbol} -> {a.spender} ({a.protocol}, {a.incident_id}): {a.value}")
    c = screen.coverage
    lists = ", ".join(f"{x.list_title} of {x.list_date}" for x in c.sanctions_lists) or "none"
    history = (
        f"{c.transactions_scanned} transactions on {', '.join(c.chains)}"
        + (" (partial)" if c.truncated or c.failures else "")
        if c.history_read
        else "not read"
    )
    out.print(f"\n[dim]History: {history}. Sanctions lists: {lists}.[/dim]")


def show_transaction_screen(screen: intel.TransactionScreen) -> None:
    out = stdout_console()
    verdict = screen.verdict.value
    level = f", {screen.level}" if screen.level else ""
    out.print(f"[{_VERDICT_STYLE[verdict]}]{verdict.upper()}[/]  score {screen.score}/100{level}")
    out.print(escape(screen.summary))
    for attack in screen.attack_of:
        out.print(
            f"  attack transaction of {attack.protocol}, {attack.date} ({attack.incident_id})"
        )
    if screen.parties:
        out.print("\n[bold]Listed parties[/bold]")
    for party in screen.parties:
        what = (
            f"on the {party.sanction.list_title} as of {party.sanction.list_date}"
            if party.sanction
            else f"{party.role.value if party.role else '?'} of {party.protocol} "
            f"({party.incident_id})"
        )
        out.print(f"  {party.side:<9} {party.address}  {what}")
    c = screen.coverage
    read = f"{c.status}, {c.transfers} transfers on {c.chain}" if c.transaction_read else "not read"
    out.print(f"\n[dim]Transaction: {read}.[/dim]")


def show_prices(prices: PriceList) -> None:
    out = stdout_console()
    if not prices.enabled:
        out.print(prices.how_to_pay)
        return
    for tool in prices.tools:
        bands = ", ".join(f"{b.usd} up to {b.up_to_results}" for b in tool.bands)
        out.print(f"{tool.tool:<28} {tool.usd}" + (f"  ({bands})" if bands else ""))
    out.print(prices.how_to_pay)


RENDERERS: dict[type[BaseModel], Callable[[Any], None]] = {
    intel.SearchResult: show_list,
    intel.TransactionMatches: show_list,
    intel.Incident: show_incident,
    intel.Stats: show_stats,
    intel.ProtocolRisk: show_risk,
    intel.AddressScreen: show_screen,
    intel.TransactionScreen: show_transaction_screen,
    PriceList: show_prices,
}
