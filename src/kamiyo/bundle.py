"""``kamiyo bundle``: a desktop-extension bundle (``.mcpb``: a zip with ``manifest.json``).

The bundle carries the project's source, ``pyproject.toml`` and ``uv.lock``; the host starts it
with ``uv run`` (manifest server type ``uv``), so it installs exactly the locked dependencies.
The manifest's tool list is the catalogue's operations and its prompt list and instructions are
read from the MCP server itself, handed in (``kamiyo bundle`` builds one; the dashboard's
download uses the app's own, so this module does not import the MCP face and the web face may
use it); the whole manifest is checked against the MCPB schema (``schemas/``) before anything
is written.
"""

import asyncio
import json
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
from mcp.server.mcpserver import MCPServer

from kamiyo import __version__
from kamiyo.service.catalogue import OPERATIONS

SCHEMA = Path(__file__).parent / "schemas" / "mcpb-manifest-v0.4.schema.json"
# Repository files a bundle needs besides src/kamiyo.
PROJECT_FILES = ("pyproject.toml", "uv.lock", "README.md", "LICENSE", "NOTICE")


class BundleError(RuntimeError):
    """The bundle cannot be built from here."""


def source_root() -> Path:
    """The checkout this package runs from (bundles are built from source, not an install)."""
    root = Path(__file__).resolve().parents[2]
    if not all((root / name).is_file() for name in PROJECT_FILES):
        raise BundleError(
            f"{root} is not a KAMIYO source checkout (it needs {', '.join(PROJECT_FILES)}): "
            "build bundles from a clone of the repository"
        )
    return root


async def manifest(server: MCPServer) -> dict[str, Any]:
    """The bundle's ``manifest.json`` for ``server``, checked against the MCPB schema."""
    tools = [{"name": op.name.value, "description": op.description} for op in OPERATIONS]
    prompts = [
        {"name": p.name, "description": p.description or "", "text": p.description or ""}
        for p in await server.list_prompts()
    ]
    document: dict[str, Any] = {
        "manifest_version": "0.4",
        "name": "kamiyo",
        "display_name": "KAMIYO",
        "version": __version__,
        "description": "Crypto-exploit intelligence: search incidents, protocol history, "
        "address screening.",
        "long_description": server.instructions or "",
        "author": {"name": "KAMIYO"},
        "server": {
            "type": "uv",
            "entry_point": "src/kamiyo/__main__.py",
            "mcp_config": {
                "command": "uv",
                "args": [
                    "run",
                    "--directory",
                    "${__dirname}",
                    "--frozen",
                    "--no-dev",
                    "kamiyo",
                    "serve",
                ],
                "env": {"KAMIYO_API_KEY": "${user_config.api_key}"},
            },
        },
        "tools": tools,
        "prompts": prompts,
        "keywords": ["security", "defi", "exploits", "crypto", "mcp"],
        "license": "Apache-2.0",
        "compatibility": {
            "platforms": ["darwin", "linux", "win32"],
            "runtimes": {"python": ">=3.11"},
        },
        "user_config": {
            "api_key": {
                "type": "string",
                "title": "KAMIYO API key",
                "description": "Optional: a key unlocks your subscription's tools and limits.",
                "sensitive": True,
                "required": False,
            }
        },
    }
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    try:
        jsonschema.validate(document, schema)
    except jsonschema.ValidationError as exc:
        raise BundleError(f"the manifest does not fit the MCPB schema: {exc.message}") from exc
    return document


def write(out: Path, document: dict[str, Any]) -> Path:
    """Write the ``.mcpb`` bundle with the manifest ``document`` to ``out``; returns it."""
    root = source_root()
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(document, indent=2) + "\n")
        for name in PROJECT_FILES:
            archive.write(root / name, name)
        for path in sorted((root / "src" / "kamiyo").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(root).as_posix())
    return out


def build(out: Path, server: MCPServer) -> Path:
    """Write the ``.mcpb`` bundle for ``server`` to ``out`` (outside an event loop)."""
    source_root()  # not from a checkout: say so before anything else
    return write(out, asyncio.run(manifest(server)))
