"""``kamiyo bundle``: a desktop-extension bundle (``.mcpb``: a zip with ``manifest.json``).

The bundle carries the project's source, ``pyproject.toml`` and ``uv.lock``; the host starts it
with ``uv run`` (manifest server type ``uv``), so it installs exactly the locked dependencies.
The manifest's tool list is the catalogue's operations and its prompt list is read from the
server itself; the whole manifest is checked against the MCPB schema (``schemas/``) before
anything is written.
"""

import asyncio
import json
import zipfile
from pathlib import Path
from typing import Any

import jsonschema

from kamiyo import __version__
from kamiyo.access.gate import OpenGate
from kamiyo.config import Settings
from kamiyo.mcpserver.server import INSTRUCTIONS, build_server
from kamiyo.service.catalogue import OPERATIONS
from kamiyo.service.state import ServerState

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


async def _advertised() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    settings = Settings(_env_file=None)
    server = build_server(
        ServerState(settings=settings, gate=OpenGate(settings.answers.max_results))
    )
    tools = [{"name": op.name.value, "description": op.description} for op in OPERATIONS]
    prompts = [
        {"name": p.name, "description": p.description or "", "text": p.description or ""}
        for p in await server.list_prompts()
    ]
    return tools, prompts


def manifest() -> dict[str, Any]:
    tools, prompts = asyncio.run(_advertised())
    document: dict[str, Any] = {
        "manifest_version": "0.4",
        "name": "kamiyo",
        "display_name": "KAMIYO",
        "version": __version__,
        "description": "Crypto-exploit intelligence: search incidents, protocol history, "
        "address screening.",
        "long_description": INSTRUCTIONS,
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


def build(out: Path) -> Path:
    """Write the ``.mcpb`` bundle to ``out``; returns it."""
    root = source_root()
    document = manifest()
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(document, indent=2) + "\n")
        for name in PROJECT_FILES:
            archive.write(root / name, name)
        for path in sorted((root / "src" / "kamiyo").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(root).as_posix())
    return out
