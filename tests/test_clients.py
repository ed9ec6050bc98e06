import json
import stat
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from kamiyo import clients

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
    assert health.structured_content["dataset"]["incidents"] == 860
