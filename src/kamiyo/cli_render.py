"""How the command line shows each kind of answer: tables and short reports on stdout."""

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
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


def show_screen(screen: intel.AddressScreen) -> None:
    out = stdout_console()
    out.print(("[red]FLAGGED[/red] " if screen.flagged else "") + screen.summary)
    for match in screen.matches:
        role = match.role.value.replace("_", " ")
        out.print(f"  {match.date}  {role:<20} {match.protocol}  ({match.incident_id})")
    out.print(screen.limitations)


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
    PriceList: show_prices,
}
