"""The .mcpb desktop-extension bundle: valid by the official tool, and it really starts."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from kamiyo import __version__, bundle
from kamiyo.mcpserver.server import INSTRUCTIONS, describing_server
from tests.mcpserver.test_tools import TOOLS

NODE_DIR = Path(__file__).parent / "node"
MCPB_CLI = NODE_DIR / "node_modules" / "@anthropic-ai" / "mcpb" / "dist" / "cli" / "cli.js"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundle.build(tmp_path_factory.mktemp("bundle") / "kamiyo.mcpb", describing_server())


def test_manifest_lists_the_servers_own_tools_and_prompts(built: Path) -> None:
    with zipfile.ZipFile(built) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        names = set(archive.namelist())
    assert manifest["version"] == __version__
    assert manifest["long_description"] == INSTRUCTIONS
    assert {t["name"] for t in manifest["tools"]} == TOOLS
    assert {p["name"] for p in manifest["prompts"]} == {
        "protocol_due_diligence",
        "incident_brief",
        "wallet_safety_check",
    }
    assert "KAMIYO_API_KEY" in manifest["server"]["mcp_config"]["env"]
    assert "${user_config.api_key}" not in json.dumps(manifest["server"]["mcp_config"]["args"])
    assert {"pyproject.toml", "uv.lock", "NOTICE", "src/kamiyo/__main__.py"} <= names
    assert "src/kamiyo/intel/data/bundle.json.gz" in names
    assert not any("__pycache__" in name for name in names)


def test_the_official_mcpb_tool_accepts_it(built: Path, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None or not MCPB_CLI.exists():
        reason = f"the mcpb CLI is not installed: run `npm ci --prefix {NODE_DIR}`"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with zipfile.ZipFile(built) as archive:
        archive.extract("manifest.json", tmp_path)
    for args in (["validate", str(tmp_path / "manifest.json")], ["info", str(built)]):
        proc = subprocess.run(
            [node, str(MCPB_CLI), *args], capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "validation passes"
        in subprocess.run(
            [node, str(MCPB_CLI), "validate", str(tmp_path / "manifest.json")],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    )


@pytest.mark.anyio
async def test_the_unpacked_bundle_starts_as_a_host_would_start_it(
    built: Path, tmp_path: Path
) -> None:
    """Unpack, substitute ${__dirname} and the user's (empty) key, launch, call a tool."""
    uv = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv is None:
        pytest.skip("uv is not installed")
    folder = tmp_path / "extension"
    with zipfile.ZipFile(built) as archive:
        archive.extractall(folder)
    config = json.loads((folder / "manifest.json").read_text())["server"]["mcp_config"]
    args = [a.replace("${__dirname}", str(folder)) for a in config["args"]]
    env = {k: v.replace("${user_config.api_key}", "") for k, v in config["env"].items()}
    # A host passes its own environment; uv needs it (index, certificates, cache) to install.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("KAMIYO_", "VIRTUAL_"))}
    env = inherited | env | {"KAMIYO_DATA_DIR": str(tmp_path / "data")}
    params = StdioServerParameters(command=uv, args=args, env=env, cwd=folder)
    async with Client(params, read_timeout_seconds=300) as client:
        health = await client.call_tool("health_check", {})
    assert health.structured_content is not None
    assert health.structured_content["dataset"]["sources"]["notable"]["reports"] == 231
    assert health.structured_content["dataset"]["incidents"] > 860
