"""The deployment files against the code they deploy (Docker does not run here): the compose
services and health checks, every KAMIYO_* name a real setting, the Dockerfile's user and
commands, the Caddyfile routing what the app serves; and docs/configuration.md current."""

import json
import re
import secrets
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from starlette.routing import Mount, Route

from kamiyo.cli import app as cli_app
from kamiyo.config import DatabaseSettings, Settings
from kamiyo.config.reference import REFERENCE_PATH, REGENERATE, render
from kamiyo.mcpserver.server import build_server
from kamiyo.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
INSTANCES = ["kamiyo-1", "kamiyo-2"]
STREAM_PATHS = {"/mcp", "/sse", "/messages"}  # the app's MCP transports (long-lived streams)


def _setting_names() -> set[str]:
    names = {Settings.env_name(f) for f in Settings.model_fields if f not in Settings.SECTIONS}
    for section in Settings.SECTIONS.values():
        names |= {section.env_name(field) for field in section.model_fields}
    return names


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_configuration_reference_is_current() -> None:
    written = (ROOT / REFERENCE_PATH).read_text(encoding="utf-8")
    assert written == render(), (
        f"{REFERENCE_PATH} differs from the settings object: regenerate it with `{REGENERATE}`"
    )
    for name in _setting_names():
        assert f"`{name}`" in written


def test_compose_runs_the_whole_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"postgres", "redis", "migrate", *INSTANCES, "worker", "caddy"}
    for name in ("postgres", "redis", *INSTANCES, "caddy"):
        assert services[name]["healthcheck"]["test"], name
    group = typer.main.get_group(cli_app)
    commands = set(group.list_commands(typer.Context(group)))
    for name in INSTANCES:
        service = services[name]
        check = " ".join(service["healthcheck"]["test"])
        assert "/readyz" in check
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["environment"]["KAMIYO_ALERTS_WORKER"] == "false"
        assert service["environment"]["KAMIYO_ENVIRONMENT"] == "production"
    assert services["worker"]["command"][:2] == ["kamiyo", "worker"]
    assert "worker" in commands
    assert services["migrate"]["command"] == ["kamiyo", "db", "upgrade"]
    assert services["caddy"]["volumes"][0].startswith("./Caddyfile:")


def test_every_kamiyo_name_in_compose_is_a_setting(compose: dict[str, Any]) -> None:
    known = _setting_names()
    used: set[str] = set()
    for service in compose["services"].values():
        used |= {name for name in service.get("environment", {}) if name.startswith("KAMIYO_")}
        # Secret files become variables by name (deploy/entrypoint.sh): kamiyo_x -> KAMIYO_X.
        used |= {s.upper() for s in service.get("secrets", []) if s.startswith("kamiyo_")}
    assert used
    assert used - known == set(), f"not settings: {sorted(used - known)}"


def test_compose_settings_pass_production_checks(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = compose["services"]["kamiyo-1"]["environment"]
    for name, value in environment.items():
        if name.startswith("KAMIYO_"):
            monkeypatch.setenv(name, str(value).replace("${DOMAIN:-localhost}", "k.test"))
    monkeypatch.setenv("KAMIYO_SECRET_KEY", secrets.token_hex(32))  # as the secret files hold
    monkeypatch.setenv("KAMIYO_DATABASE_URL", "postgresql://kamiyo:pw@postgres:5432/kamiyo")
    settings = Settings(_env_file=None)
    assert settings.production
    assert not settings.migrate_on_start
    assert settings.sources.stale_after == 86400


def test_dockerfile_builds_from_the_lock_and_runs_unprivileged() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(stages) >= 2
    assert all(image.startswith("python:3.11-slim") for image in stages)
    assert "COPY pyproject.toml uv.lock" in text
    assert re.search(r"uv sync --frozen --no-dev", text)
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users
    assert users[-1] not in {"root", "0"}
    health = re.search(r"^HEALTHCHECK .*?\n(?:.*\\\n)*.*$", text, re.MULTILINE)
    assert health
    assert "/healthz" in text[health.start() :]
    command = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert command
    assert yaml.safe_load(command.group(1))[:4] == ["kamiyo", "serve", "--transport", "http"]
    assert "--port" in command.group(1)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git"} <= set(ignored)


def _caddy_blocks(text: str) -> list[tuple[str, str]]:
    """(head, body) of each ``reverse_proxy`` directive."""
    return re.findall(r"^\s*reverse_proxy ([^{\n]*)\{(.*?)^\t\}", text, re.MULTILINE | re.DOTALL)


def _app_paths() -> set[str]:
    settings = Settings(
        database=DatabaseSettings(url="sqlite:///unused.db"), environment="test", _env_file=None
    )
    app = create_app(settings, build_server)
    return {r.path.rstrip("/") or "/" for r in app.routes if isinstance(r, Route | Mount)}


def test_caddyfile_routes_what_the_app_serves() -> None:
    text = (DEPLOY / "Caddyfile").read_text()
    paths = _app_paths()
    assert paths >= STREAM_PATHS
    assert {"/healthz", "/readyz", "/metrics"} <= paths
    matcher = re.search(r"^\s*@streams path (.+)$", text, re.MULTILINE)
    assert matcher
    streamed = set(shlex.split(matcher.group(1)))
    for path in STREAM_PATHS:
        assert {path, f"{path}/*"} <= streamed, path
    blocks = _caddy_blocks(text)
    assert len(blocks) == 2
    (stream_head, stream_body), (rest_head, _) = blocks
    assert stream_head.split()[0] == "@streams"
    assert "flush_interval -1" in stream_body  # SSE reaches the client unbuffered
    assert "lb_policy ip_hash" in stream_body  # a session stays on its instance
    # The catch-all serves every other path of the app, on every instance, checked on /readyz.
    assert rest_head.split()[0].endswith(":8000")
    for head, body in blocks:
        assert [u.split(":")[0] for u in head.split() if ":" in u] == INSTANCES
        assert "health_uri /readyz" in body
    assert re.search(r"^\s*respond /metrics 404$", text, re.MULTILINE)  # internal only
    # Compression never touches the streams.
    assert re.search(r"^\s*@compressible not path " + re.escape(matcher.group(1)), text, re.M)
    assert re.search(r"^\s*encode @compressible ", text, re.MULTILINE)


def test_caddy_accepts_the_caddyfile(tmp_path: Path) -> None:
    """Caddy's own parser and validator, where Caddy is installed (Debian: apt install caddy)."""
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed here: the Caddyfile is checked by the tests above")
    caddyfile = str(DEPLOY / "Caddyfile")
    done = subprocess.run(
        [caddy, "adapt", "--config", caddyfile, "--adapter", "caddyfile", "--validate"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DOMAIN": "kamiyo.example.com"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    (server,) = config["apps"]["http"]["servers"].values()
    (site,) = server["routes"]
    assert site["match"] == [{"host": ["kamiyo.example.com"]}]
    handlers = [route["handle"][0] for route in site["handle"][0]["routes"]]
    proxies = [h for h in handlers if h["handler"] == "reverse_proxy"]
    assert [p.get("flush_interval") for p in proxies] == [-1, None]  # streams first, unbuffered
