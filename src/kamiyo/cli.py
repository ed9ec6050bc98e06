"""The ``kamiyo`` command line: search and inspect incidents, serve MCP, manage the database."""

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kamiyo import __version__, clients
from kamiyo.cli_lazy import LazyGroup
from kamiyo.cli_support import (
    check_serving,
    configured_or_exit,
    err,
    execute,
    fail,
    run,
    safe_url,
    settings_or_exit,
)
from kamiyo.config import Settings, parse_duration
from kamiyo.intel.bundled import BUNDLE_PATH, build_bundle
from kamiyo.observability import configure_logging
from kamiyo.observability.error_reports import start_error_reports
from kamiyo.observability.redaction import known_secrets
from kamiyo.observability.tracing import start_tracing
from kamiyo.runtime import Runtime

if TYPE_CHECKING:
    from kamiyo.web.graceful import GracefulServer

app = typer.Typer(
    name="kamiyo",
    help="Crypto-exploit intelligence: search incidents, show one, sum up losses.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=LazyGroup,  # the commands of cli_lazy.COMMAND_MODULES, imported when one runs
)
db_app = typer.Typer(help="Database schema and data.", no_args_is_help=True)
data_app = typer.Typer(help="The bundled incident dataset.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(data_app, name="data")
install_app = typer.Typer(help="Connect KAMIYO to an MCP client.", no_args_is_help=True)
app.add_typer(install_app, name="install")


@app.callback()
def _configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")] = False,
) -> None:
    settings = settings_or_exit()
    level = "DEBUG" if verbose else settings.log.level
    secrets = known_secrets(settings)
    configure_logging(level, settings.log.format, secrets)
    # Both off unless set, and then their packages are imported only here.
    configured_or_exit(lambda: start_tracing(settings.tracing))
    configured_or_exit(
        lambda: start_error_reports(settings.tracing, settings.environment, secrets, __version__)
    )


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
    refresh_every: Annotated[
        str | None,
        typer.Option(
            help="Refresh the enabled sources this often while serving, e.g. 15m or 1h "
            "(default: KAMIYO_SOURCES_REFRESH_EVERY, unset: never)."
        ),
    ] = None,
) -> None:
    """Serve MCP: on stdio (the default), or over HTTP at /mcp (Streamable HTTP) and /sse."""
    settings = _refreshing(settings_or_exit(), refresh_every)
    if transport is Transport.STDIO:
        from kamiyo.mcpserver.server import serve_stdio

        secret = settings.auth.api_key or settings.auth.token
        # An empty value (a desktop extension's unset option) means no credential.
        credential = (secret.get_secret_value() if secret else "") or None
        check_serving(settings, database=False)  # the database opens in one line already
        if execute(settings, lambda: serve_stdio(settings, credential)):
            from kamiyo.web.graceful import CUT_EXIT_STATUS

            raise typer.Exit(CUT_EXIT_STATUS)  # calls were cut at the deadline
        return

    from kamiyo.mcpserver.server import build_server
    from kamiyo.web.app import MAX_REQUEST_HEAD, create_app, server_state
    from kamiyo.web.serving import http_server, serve_until_stopped

    def prepare() -> "GracefulServer":
        application = create_app(
            settings, build_server, stateless=stateless, json_response=json_response, host=host
        )
        return http_server(
            application,
            host=host,
            port=port,
            settings=settings.http,
            head_size=MAX_REQUEST_HEAD,
            grace_s=settings.shutdown.grace_s,
            # /readyz 503 and listen streams ended before in-flight calls are waited for
            on_stopping=[server_state(application).shutting_down],
        )

    server = configured_or_exit(prepare)
    check_serving(settings)
    err.print(f"KAMIYO MCP on http://{host}:{port}/mcp (Streamable HTTP) and /sse (SSE)")
    serve_until_stopped(server)


def _refreshing(settings: Settings, refresh_every: str | None) -> Settings:
    """``settings`` with --refresh-every applied."""
    if refresh_every is None:
        return settings
    try:
        every = parse_duration(refresh_every)
    except ValueError as exc:
        fail(f"--refresh-every: {exc}", code=2)
    return settings.model_copy(
        update={"sources": settings.sources.model_copy(update={"refresh_every": every})}
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
    uvx_from: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="With --launcher uvx: the KAMIYO checkout or built wheel uv runs "
            "(default: the checkout this command runs from).",
        ),
    ] = None,
    from_index: Annotated[
        bool,
        typer.Option(
            "--from-index",
            help="With --launcher uvx: the package published on the index (`uvx kamiyo`), "
            "once KAMIYO is published there.",
        ),
    ] = False,
    config: Annotated[
        Path | None, typer.Option(help="Config file to write (default: Claude Desktop's).")
    ] = None,
) -> None:
    """Add KAMIYO to Claude Desktop's configuration, keeping every other server (with a backup).

    With --print, show the JSON instead; the same mcpServers entry works in Cursor
    (~/.cursor/mcp.json) and Claude Code (.mcp.json).
    """
    if (uvx_from is not None or from_index) and launcher is not Launcher.UVX:
        fail("--from and --from-index go with --launcher uvx", 2)
    if uvx_from is not None and from_index:
        fail("give --from or --from-index, not both", 2)
    source: str | None = None
    if launcher is Launcher.UVX and not from_index and not remote:
        try:
            source = clients.uvx_source(uvx_from)
        except clients.LauncherError as exc:
            fail(str(exc), 2)
    settings = settings_or_exit()
    key: str | None = None
    if api_key:
        key = os.environ.get("KAMIYO_API_KEY") or typer.prompt("API key", hide_input=True)
    entry = (
        clients.remote_server_entry(remote, key)
        if remote
        else clients.local_server_entry(
            data_dir=settings.database.data_dir, api_key=key, launcher=launcher, uvx_from=source
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
    from kamiyo.mcpserver.server import describing_server

    target = out or Path("dist") / f"kamiyo-{__version__}.mcpb"
    try:
        written = mcpb.build(target, describing_server())
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
    data: Annotated[
        Path,
        typer.Option(help="The repository's data folder (defihacklabs/, notable/, ofac/)."),
    ] = Path("data"),
    upstream: Annotated[
        str | None,
        typer.Option(
            help="Read DeFiHackLabs from its own files instead of data/defihacklabs: a clone "
            "of the repository, or a raw URL such as "
            "https://raw.githubusercontent.com/SunWeb3Sec/DeFiHackLabs/main.",
        ),
    ] = None,
    out_path: Annotated[
        Path,
        typer.Option("--out", help="Where to write the bundle (the sanctions list beside it)."),
    ] = (BUNDLE_PATH),
) -> None:
    """Rebuild the bundled reports and sanctions list from the data folder (same input, same
    bytes)."""
    if not all((data / folder).is_dir() for folder in ("defihacklabs", "notable", "ofac")):
        fail(f"{data} is not a data folder with defihacklabs/, notable/ and ofac/ in it", code=2)
    replacing = None
    if upstream is not None:
        from kamiyo.service.refreshing import collect_upstream

        settings = settings_or_exit()
        replacing = execute(settings, lambda: collect_upstream(settings.sources, upstream))
    counts = build_bundle(data, out_path, defihacklabs_reports=replacing)
    listed = ", ".join(f"{name} {n}" for name, n in counts.items())
    err.print(f"Wrote {sum(counts.values())} reports ({listed}) to {out_path}.")
    from kamiyo.intel.sanctions import SNAPSHOT_PATH, build_snapshot

    snapshot = out_path.parent / SNAPSHOT_PATH.name
    addresses = build_snapshot(data / "ofac", snapshot)
    err.print(f"Wrote {addresses} sanctioned addresses to {snapshot}.")


@app.command()
def version() -> None:
    """Print the version."""
    sys.stdout.write(f"{__version__}\n")


def main() -> None:
    app()
