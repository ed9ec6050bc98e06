"""The ``kamiyo`` command line: search and inspect incidents, serve MCP, manage the database."""

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel
from rich.table import Table

from kamiyo import __version__, clients, intel
from kamiyo.cli_accounts import accounts_app, keys_app, token_app
from kamiyo.cli_billing import billing_app, signup
from kamiyo.cli_support import (
    check_serving,
    configured_or_exit,
    err,
    execute,
    fail,
    parse_or_exit,
    run,
    safe_url,
    settings_or_exit,
    stdout_console,
)
from kamiyo.cli_usage import usage_app
from kamiyo.intel.bundled import BUNDLE_PATH, build_bundle
from kamiyo.observability import configure_logging
from kamiyo.runtime import Runtime

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

app = typer.Typer(
    name="kamiyo",
    help="Crypto-exploit intelligence: search incidents, show one, sum up losses.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema and data.", no_args_is_help=True)
data_app = typer.Typer(help="The bundled incident dataset.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(data_app, name="data")
install_app = typer.Typer(help="Connect KAMIYO to an MCP client.", no_args_is_help=True)
app.add_typer(install_app, name="install")
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")
app.add_typer(token_app, name="token")
app.add_typer(usage_app, name="usage")
app.add_typer(billing_app, name="billing")
app.command()(signup)


def _usd(amount: float | None) -> str:
    if amount is None:
        return ""
    for factor, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if amount >= factor:
            return f"${amount / factor:,.1f}{suffix}"
    return f"${amount:,.0f}"


def _print_json(model: BaseModel) -> None:
    sys.stdout.write(model.model_dump_json(indent=2) + "\n")


@app.callback()
def _configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")] = False,
) -> None:
    settings = settings_or_exit()
    configure_logging("DEBUG" if verbose else settings.log.level, settings.log.format)


@app.command()
def search(
    query: Annotated[str | None, typer.Argument(help="Words to look for.")] = None,
    chain: Annotated[str | None, typer.Option(help="e.g. ethereum, bsc, arbitrum.")] = None,
    since: Annotated[str | None, typer.Option(help="Earliest date, YYYY-MM-DD.")] = None,
    until: Annotated[str | None, typer.Option(help="Latest date, YYYY-MM-DD.")] = None,
    min_loss: Annotated[float | None, typer.Option(help="Minimum loss in USD.")] = None,
    attack_type: Annotated[
        str | None, typer.Option(help="e.g. reentrancy, access_control.")
    ] = None,
    address: Annotated[str | None, typer.Option(help="Incidents that list this address.")] = None,
    sort: Annotated[str | None, typer.Option(help="relevance, recent or loss.")] = None,
    limit: Annotated[int, typer.Option(help="How many incidents at most.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Find incidents by words and filters."""
    search_query = parse_or_exit(
        intel.SearchQuery,
        query=query,
        chain=chain,
        since=since,
        until=until,
        min_loss_usd=min_loss,
        attack_type=attack_type,
        address=address,
        sort=sort,
        limit=limit,
    )

    async def work(runtime: Runtime) -> intel.SearchResult:
        async with runtime.sessions() as session:
            return await intel.search_incidents(
                session, search_query, max_results=runtime.settings.answers.max_results
            )

    result = run(work)
    out = stdout_console()
    if as_json:
        _print_json(result)
        return
    if not result.incidents:
        out.print("No incidents match.")
        return
    table = Table(show_lines=False)
    table.add_column("Date", no_wrap=True)
    table.add_column("Protocol", overflow="fold")
    table.add_column("Chains")
    table.add_column("Loss", justify="right")
    table.add_column("Attack type", overflow="fold")
    table.add_column("ID", no_wrap=True)  # people copy it into `kamiyo show`
    for incident in result.incidents:
        table.add_row(
            incident.date.isoformat(),
            incident.protocol,
            " ".join(incident.chains),
            _usd(incident.loss_usd) or (incident.loss_text or "")[:24],
            incident.attack_type.value,
            incident.id,
        )
    out.print(table)
    if result.truncated:
        out.print(f"Showing the first {result.count}; more match (raise --limit).")


@app.command()
def show(
    incident_id: Annotated[str, typer.Argument(help="An incident id from `kamiyo search`.")],
    as_json: JsonFlag = False,
) -> None:
    """Show one incident with its addresses, transactions and references."""

    async def work(runtime: Runtime) -> intel.Incident | None:
        async with runtime.sessions() as session:
            return await intel.get_incident(session, incident_id)

    incident = run(work)
    out = stdout_console()
    if incident is None:
        fail(f"no incident with id {incident_id!r} (ids look like 20230313_eulerfinance)")
    if as_json:
        _print_json(incident)
        return
    out.print(f"[bold]{incident.protocol}[/bold]  {incident.id}")
    date = incident.date.isoformat()[:7] if incident.date_precision == "month" else incident.date
    out.print(f"Date: {date}   Chains: {', '.join(incident.chains) or 'unknown'}")
    loss = _usd(incident.loss_usd)
    out.print(
        f"Loss: {loss or 'no USD figure'}"
        + (
            f" ({incident.loss_usd_basis}; source says: {incident.loss_text})"
            if incident.loss_text
            else ""
        )
    )
    out.print(
        f"Attack type: {incident.attack_type.value}"
        + (f" ({incident.attack_type_raw})" if incident.attack_type_raw else "")
    )
    out.print(f"Status: {incident.status}")
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
    out.print("\n[bold]Provenance[/bold]")
    for p in incident.provenance:
        out.print(f"  {p.source} ({p.source_ref}), ingested {p.ingested_at:%Y-%m-%d %H:%M} UTC")


@app.command()
def stats(
    by: Annotated[str, typer.Option(help="chain, year, month or attack-type.")] = "year",
    since: Annotated[str | None, typer.Option(help="Earliest date, YYYY-MM-DD.")] = None,
    until: Annotated[str | None, typer.Option(help="Latest date, YYYY-MM-DD.")] = None,
    chain: Annotated[str | None, typer.Option(help="Only this chain.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Count incidents and add up losses by chain, year, month or attack type."""
    stats_query = parse_or_exit(
        intel.StatsQuery, group_by=by.replace("-", "_"), since=since, until=until, chain=chain
    )

    async def work(runtime: Runtime) -> intel.Stats:
        async with runtime.sessions() as session:
            return await intel.incident_stats(session, stats_query)

    result = run(work)
    out = stdout_console()
    if as_json:
        _print_json(result)
        return
    table = Table()
    table.add_column(by.replace("_", "-").capitalize())
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
    out.print(table)
    if result.note:
        out.print(result.note)


class Transport(StrEnum):
    STDIO = "stdio"
    HTTP = "http"


@app.command()
def serve(
    transport: Annotated[
        Transport, typer.Option(help="stdio for Claude Desktop, http for remote agents.")
    ] = Transport.STDIO,
    host: Annotated[str, typer.Option(help="HTTP: address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP: port to listen on.")] = 8000,
    stateless: Annotated[
        bool, typer.Option(help="HTTP: no sessions; any instance answers any request.")
    ] = False,
    json_response: Annotated[
        bool, typer.Option(help="HTTP: plain JSON answers instead of SSE streams.")
    ] = False,
) -> None:
    """Serve MCP: on stdio (the default), or over HTTP at /mcp (Streamable HTTP) and /sse."""
    settings = settings_or_exit()
    if transport is Transport.STDIO:
        from kamiyo.mcpserver.server import serve_stdio

        secret = settings.auth.api_key or settings.auth.token
        # An empty value (a desktop extension's unset option) means no credential.
        credential = (secret.get_secret_value() if secret else "") or None
        check_serving(settings, database=False)  # the database opens in one line already
        execute(settings, lambda: serve_stdio(settings, credential))
        return

    import uvicorn

    from kamiyo.web.app import MAX_REQUEST_HEAD, create_app

    application = configured_or_exit(
        lambda: create_app(settings, stateless=stateless, json_response=json_response, host=host)
    )
    check_serving(settings)
    err.print(f"KAMIYO MCP on http://{host}:{port}/mcp (Streamable HTTP) and /sse (SSE)")
    # log_config=None: uvicorn logs through our handlers, to stderr like everything else.
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_config=None,
        server_header=False,
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD,
    )


class Launcher(StrEnum):
    PYTHON = "python"
    UVX = "uvx"


@install_app.command("claude-desktop")
def install_claude_desktop(
    api_key: Annotated[
        bool,
        typer.Option(
            "--api-key",
            help="Store an API key in the server's env: taken from KAMIYO_API_KEY if set, "
            "else asked for (hidden). Never passed as an argument, so `ps` cannot show it.",
        ),
    ] = False,
    print_only: Annotated[
        bool, typer.Option("--print", help="Print the configuration instead of writing it.")
    ] = False,
    remote: Annotated[
        str | None,
        typer.Option(help="URL of a remote KAMIYO (…/mcp), bridged with npx mcp-remote."),
    ] = None,
    launcher: Annotated[
        Launcher, typer.Option(help="python: this interpreter; uvx: run through uv.")
    ] = Launcher.PYTHON,
    config: Annotated[
        Path | None, typer.Option(help="Config file to write (default: Claude Desktop's).")
    ] = None,
) -> None:
    """Add KAMIYO to Claude Desktop's configuration, keeping every other server (with a backup).

    With --print, show the JSON instead; the same mcpServers entry works in Cursor
    (~/.cursor/mcp.json) and Claude Code (.mcp.json).
    """
    settings = settings_or_exit()
    key: str | None = None
    if api_key:
        key = os.environ.get("KAMIYO_API_KEY") or typer.prompt("API key", hide_input=True)
    entry = (
        clients.remote_server_entry(remote, key)
        if remote
        else clients.local_server_entry(
            data_dir=settings.database.data_dir, api_key=key, launcher=launcher
        )
    )
    if print_only:
        sys.stdout.write(clients.merged_config(None, entry))
        err.print(
            "Paste into Claude Desktop's claude_desktop_config.json, Cursor's "
            "~/.cursor/mcp.json or Claude Code's .mcp.json."
        )
        return
    path = config or clients.claude_desktop_config_path()
    try:
        backup = clients.install(path, entry)
    except clients.ClientConfigError as exc:
        fail(f"{path}: {exc}")
    err.print(
        f"Added '{clients.SERVER_NAME}' to {path}"
        + (f" (backup: {backup.name})" if backup else "")
        + ". Restart Claude Desktop to load it."
    )


@app.command()
def bundle(
    out: Annotated[Path | None, typer.Option(help="Where to write the bundle.")] = None,
) -> None:
    """Build a desktop-extension bundle (.mcpb) from this source checkout."""
    from kamiyo import bundle as mcpb

    target = out or Path("dist") / f"kamiyo-{__version__}.mcpb"
    try:
        written = mcpb.build(target)
    except mcpb.BundleError as exc:
        fail(str(exc))
    err.print(f"Wrote {written} ({written.stat().st_size // 1024} KiB).")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations and load the bundled dataset if it is new."""

    async def work(runtime: Runtime) -> str:
        return safe_url(runtime.settings.database.resolved_url)

    url = run(work, upgrade=True)
    err.print(f"Database {url} is up to date.")


@data_app.command("build")
def data_build(
    source: Annotated[Path, typer.Option(help="Folder with the DeFiHackLabs CSV files.")] = Path(
        "data/defihacklabs"
    ),
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the bundle.")] = (
        BUNDLE_PATH
    ),
) -> None:
    """Rebuild the bundled dataset from the CSV files (same input, same bytes)."""
    if not source.is_dir():
        fail(f"{source} is not a folder with defihacklabs_incidents.csv in it", code=2)
    count = build_bundle(source, out_path)
    err.print(f"Wrote {count} incidents to {out_path}.")


@app.command()
def version() -> None:
    """Print the version."""
    sys.stdout.write(f"{__version__}\n")


def main() -> None:
    app()
