import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from typer.testing import CliRunner

from kamiyo import clients
from kamiyo.cli import app

FIXTURES = Path(__file__).parent / "fixtures" / "mcp"
DOCS_CONFIG = FIXTURES / "claude_desktop_config.macos.docs_example.json"
DOCS_ENTRY = FIXTURES / "claude_desktop_config.server_entry_with_env.docs_fragment.json"


def test_config_paths_per_operating_system(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    mac = clients.claude_desktop_config_path("darwin")
    assert mac == tmp_path / "Library/Application Support/Claude/claude_desktop_config.json"
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    assert clients.claude_desktop_config_path("win32") == (
        tmp_path / "Roaming" / "Claude" / "claude_desktop_config.json"
    )
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert clients.claude_desktop_config_path("linux") == (
        tmp_path / "xdg" / "Claude" / "claude_desktop_config.json"
    )
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert clients.claude_desktop_config_path("linux") == (
        tmp_path / ".config" / "Claude" / "claude_desktop_config.json"
    )


def test_install_merges_keeps_other_servers_and_backs_up(tmp_path: Path) -> None:
    path = tmp_path / "Claude" / "claude_desktop_config.json"
    path.parent.mkdir()
    original = DOCS_CONFIG.read_text()
    config = json.loads(original)
    config["mcpServers"] |= json.loads(DOCS_ENTRY.read_text())
    config["globalShortcut"] = "Ctrl+Space"  # keys outside mcpServers survive too
    path.write_text(json.dumps(config))
    entry = clients.local_server_entry(data_dir=tmp_path / "data", api_key="kmy_test_secret")

    backup = clients.install(path, entry)

    written = json.loads(path.read_text())
    assert written["mcpServers"]["filesystem"] == config["mcpServers"]["filesystem"]
    assert written["mcpServers"]["brave-search"]["env"]["BRAVE_API_KEY"] == "..."
    assert written["globalShortcut"] == "Ctrl+Space"
    kamiyo = written["mcpServers"]["kamiyo"]
    assert kamiyo["env"]["KAMIYO_API_KEY"] == "kmy_test_secret"
    assert "kmy_test_secret" not in json.dumps(kamiyo["args"])
    assert backup is not None
    assert json.loads(backup.read_text()) == config
    for file in (path, backup):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600

    clients.install(path, entry)  # installing again replaces our entry, nothing else
    assert list(json.loads(path.read_text())["mcpServers"]) == [
        "filesystem",
        "brave-search",
        "kamiyo",
    ]


def test_install_creates_a_missing_config(tmp_path: Path) -> None:
    path = tmp_path / "new" / "claude_desktop_config.json"
    assert clients.install(path, clients.local_server_entry(data_dir=tmp_path)) is None
    assert set(json.loads(path.read_text())["mcpServers"]) == {"kamiyo"}


@pytest.mark.parametrize("broken", ["{not json", "[1, 2]", '{"mcpServers": []}'])
def test_install_refuses_to_clobber_a_broken_config(tmp_path: Path, broken: str) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(broken)
    with pytest.raises(clients.ClientConfigError, match="left untouched"):
        clients.install(path, clients.local_server_entry(data_dir=tmp_path))
    assert path.read_text() == broken


def test_remote_entry_keeps_the_key_out_of_args() -> None:
    entry = clients.remote_server_entry("https://kamiyo.example/mcp", "kmy_live_abc")
    assert entry["command"] == "npx"
    assert "kmy_live_abc" not in json.dumps(entry["args"])
    assert "Authorization:${KAMIYO_AUTHORIZATION}" in entry["args"]
    assert entry["env"] == {"KAMIYO_AUTHORIZATION": "Bearer kmy_live_abc"}


@pytest.mark.anyio
async def test_the_written_entry_starts_a_working_server(tmp_path: Path) -> None:
    """Launch the server exactly as the config tells Claude Desktop to, with only its env."""
    entry = clients.local_server_entry(data_dir=tmp_path / "data")
    assert entry["command"] == sys.executable
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=entry["env"])
    async with Client(params) as client:
        health = await client.call_tool("health_check", {})
    assert health.structured_content is not None
    assert health.structured_content["dataset"]["sources"]["defihacklabs"]["reports"] == 860


CHECKOUT = Path(__file__).resolve().parents[1]
UNREACHABLE = ("Failed to fetch", "Failed to download", "error sending request", "dns error")


def test_the_uvx_launcher_runs_the_checkout_kamiyo_runs_from() -> None:
    assert clients.source_checkout() == CHECKOUT
    entry = clients.local_server_entry(
        data_dir=CHECKOUT / "data", launcher="uvx", uvx_from=clients.uvx_source(None)
    )
    assert entry["args"] == ["--from", str(CHECKOUT), "kamiyo", "serve"]
    assert Path(entry["command"]).name in {"uvx", "uvx.exe"}
    # The published package, for when KAMIYO is on the index.
    published = clients.local_server_entry(data_dir=CHECKOUT, launcher="uvx")
    assert published["args"] == ["kamiyo", "serve"]


def test_an_installed_package_is_not_a_checkout(tmp_path: Path) -> None:
    site = tmp_path / "lib" / "python3.11" / "site-packages" / "kamiyo"
    site.mkdir(parents=True)
    assert clients.source_checkout(site) is None
    other = tmp_path / "other" / "src" / "kamiyo"
    other.mkdir(parents=True)
    (tmp_path / "other" / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    assert clients.source_checkout(other) is None


def test_uvx_from_takes_a_checkout_or_a_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = tmp_path / "kamiyo-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert clients.uvx_source(Path(wheel.name)) == str(wheel)  # made absolute
    assert clients.uvx_source(CHECKOUT / "src" / "..") == str(CHECKOUT)
    with pytest.raises(clients.LauncherError, match="not a KAMIYO checkout"):
        clients.uvx_source(tmp_path)
    monkeypatch.setattr(clients, "source_checkout", lambda: None)  # as from an installed wheel
    with pytest.raises(clients.LauncherError, match="pass --from"):
        clients.uvx_source(None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "."], "go with --launcher uvx"),
        (["--launcher", "uvx", "--from", ".", "--from-index"], "not both"),
        (["--launcher", "uvx", "--from", "nowhere"], "not a KAMIYO checkout"),
    ],
)
def test_install_refuses_launcher_options_that_do_not_fit(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["install", "claude-desktop", "--print", *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def machine_network() -> dict[str, str]:
    """This machine's settings for uv and the network (its cache, proxies, CA bundle), which a
    desktop user's uv finds in the system rather than in the server's env."""
    names = {"SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"}
    return {
        name: value
        for name, value in os.environ.items()
        if name.upper() in names or name.startswith("UV_")
    }


PRINT_UVX = ["install", "claude-desktop", "--launcher", "uvx", "--print"]


@pytest.fixture
def printed_uvx_entry(tmp_path: Path) -> dict[str, Any]:
    """The entry ``kamiyo install claude-desktop --launcher uvx --print`` prints, on a data
    folder of the test's, once uv has what it needs to run it."""
    printed = subprocess.run(
        [sys.executable, "-m", "kamiyo", *PRINT_UVX],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    entry: dict[str, Any] = json.loads(printed.stdout)["mcpServers"]["kamiyo"]
    entry["env"]["KAMIYO_DATA_DIR"] = str(tmp_path / "data")
    # uv resolves the tool's dependencies on its first run: it needs the index or a warm cache.
    warm = subprocess.run(
        [entry["command"], *entry["args"][:-1], "version"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if warm.returncode != 0 and any(sign in warm.stderr for sign in UNREACHABLE):
        reason = f"uvx cannot reach the package index:\n{warm.stderr[-1000:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    assert warm.returncode == 0, warm.stderr[-3000:]
    return entry


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_printed_uvx_command_starts_a_working_server(
    printed_uvx_entry: dict[str, Any],
) -> None:
    """The printed command, started as Claude Desktop would (with its env only), answers
    initialize, tools/list and a call."""
    entry = printed_uvx_entry
    assert entry["args"] == ["--from", str(CHECKOUT), "kamiyo", "serve"]
    params = StdioServerParameters(
        command=entry["command"], args=entry["args"], env=entry["env"] | machine_network()
    )
    async with Client(params) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        health = await client.call_tool("health_check", {})
    assert {"search_exploits", "get_exploit", "health_check"} <= tools
    assert health.structured_content is not None
    assert health.structured_content["dataset"]["sources"]["defihacklabs"]["reports"] == 860
