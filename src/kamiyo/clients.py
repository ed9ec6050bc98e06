"""Configuration for the MCP clients people connect KAMIYO to.

Claude Desktop starts local servers from ``claude_desktop_config.json``
(``{"mcpServers": {name: {command, args, env}}}``) with a minimal environment, so everything the
server needs goes in ``env``; credentials go there too, never in ``args``, where any process
listing would show them. Remote servers are reached through the ``mcp-remote`` bridge.
"""

import datetime as dt
import json
import os
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Any

SERVER_NAME = "kamiyo"


class ClientConfigError(RuntimeError):
    """An existing client configuration KAMIYO will not overwrite."""


class LauncherError(ValueError):
    """A launcher that cannot start KAMIYO as asked."""


def claude_desktop_config_path(platform: str | None = None) -> Path:
    """Where Claude Desktop reads its configuration on this (or the named) operating system."""
    platform = platform or sys.platform
    if platform == "darwin":
        return (
            Path.home()
            / "Library"
            / "Application Support"
            / "Claude"
            / "claude_desktop_config.json"
        )
    if platform == "win32":
        appdata = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(appdata) / "Claude" / "claude_desktop_config.json"
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "Claude" / "claude_desktop_config.json"


PACKAGE_DIR = Path(__file__).resolve().parent


def source_checkout(package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The source checkout this package runs from (a clone, or an editable install of one):
    the folder two levels above the package (``src/kamiyo``), if it holds KAMIYO's
    pyproject.toml; None for an installed package."""
    root = package_dir.parents[1]
    return root if _is_kamiyo_project(root) else None


def _is_kamiyo_project(folder: Path) -> bool:
    try:
        project = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return bool(project.get("project", {}).get("name") == "kamiyo")


def uvx_source(given: Path | None) -> str:
    """What ``uvx --from`` installs KAMIYO from: ``given`` (a checkout or a built wheel), else
    the checkout this package runs from, as an absolute path (desktop clients start servers in
    a folder of their own)."""
    if given is None:
        checkout = source_checkout()
        if checkout is None:
            raise LauncherError(
                "KAMIYO is not on the package index yet and this installation is not a source "
                "checkout: pass --from <a KAMIYO checkout, or a wheel built with `uv build`>"
            )
        return str(checkout)
    path = given.expanduser().resolve()
    wheel = path.is_file() and path.name.startswith("kamiyo-") and path.suffix == ".whl"
    if wheel or _is_kamiyo_project(path):
        return str(path)
    raise LauncherError(
        f"--from {given}: not a KAMIYO checkout (a folder with pyproject.toml) or a wheel (.whl)"
    )


def uvx_command() -> str:
    """uvx by its full path where it is found: desktop clients start servers with a minimal
    PATH (Claude Desktop on macOS does not see ~/.local/bin), so a bare name may not resolve."""
    name = "uvx.exe" if sys.platform == "win32" else "uvx"
    beside = Path(sys.executable).with_name(name)
    return shutil.which("uvx") or (str(beside) if beside.is_file() else "uvx")


def local_server_entry(
    *,
    data_dir: Path,
    api_key: str | None = None,
    launcher: str = "python",
    uvx_from: str | None = None,
) -> dict[str, Any]:
    """How a desktop client starts KAMIYO on stdio.

    ``python``: this very interpreter (works for pip, pipx and virtual environments);
    ``uvx``: run by uv from ``uvx_from`` (a checkout or a wheel, see ``uvx_source``), or, with
    ``uvx_from`` None, the package published on the index.
    """
    if launcher == "uvx":
        source = ["--from", uvx_from] if uvx_from is not None else []
        command, args = uvx_command(), [*source, "kamiyo", "serve"]
    else:
        command, args = sys.executable, ["-m", "kamiyo", "serve"]
    env = {"KAMIYO_DATA_DIR": str(data_dir)}
    if api_key:
        env["KAMIYO_API_KEY"] = api_key
    return {"command": command, "args": args, "env": env}


def remote_server_entry(url: str, api_key: str | None = None) -> dict[str, Any]:
    """A remote KAMIYO through ``npx mcp-remote``; the header value comes from ``env``."""
    args = ["-y", "mcp-remote", url]
    env: dict[str, str] = {}
    if api_key:
        # mcp-remote expands ${VAR} in --header from its environment, keeping the key out of args.
        args += ["--header", "Authorization:${KAMIYO_AUTHORIZATION}"]
        env["KAMIYO_AUTHORIZATION"] = f"Bearer {api_key}"
    entry: dict[str, Any] = {"command": "npx", "args": args}
    if env:
        entry["env"] = env
    return entry


def merged_config(existing: str | None, entry: dict[str, Any], name: str = SERVER_NAME) -> str:
    """``existing`` config text with ``name`` set to ``entry``; every other key is kept."""
    config: dict[str, Any] = {}
    if existing is not None and existing.strip():
        try:
            loaded = json.loads(existing)
        except json.JSONDecodeError as exc:
            raise ClientConfigError(
                f"the existing configuration is not valid JSON (line {exc.lineno}): fix or move "
                "it first; it was left untouched"
            ) from exc
        if not isinstance(loaded, dict) or not isinstance(loaded.get("mcpServers", {}), dict):
            raise ClientConfigError(
                "the existing configuration is not an object with an mcpServers object; "
                "it was left untouched"
            )
        config = loaded
    config.setdefault("mcpServers", {})[name] = entry
    return json.dumps(config, indent=2, ensure_ascii=False) + "\n"


def install(path: Path, entry: dict[str, Any], name: str = SERVER_NAME) -> Path | None:
    """Add or replace ``name`` in the config at ``path``; returns the backup made, if any.

    The old file is copied aside first, and the new one replaces it in one rename, so a crash
    never leaves a half-written configuration.
    """
    existing = path.read_text(encoding="utf-8") if path.exists() else None
    updated = merged_config(existing, entry, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    if existing is not None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        backup = path.with_name(f"{path.name}.{stamp}.bak")
        backup.write_text(existing, encoding="utf-8")
        backup.chmod(0o600)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(updated, encoding="utf-8")
    # The file (and its backup) can hold an API key: readable by their owner only.
    temporary.chmod(0o600)
    temporary.replace(path)
    return backup
