"""The registry entry (server.json) and the Agent Skill (SKILL.md) say what the code does:
the version, the package and its command, settings that exist, and every tool of the
catalogue with its tier and price."""

import json
import re
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr
from typer.testing import CliRunner

from kamiyo import __version__
from kamiyo.cli import app
from kamiyo.config import Settings
from kamiyo.service.catalogue import CATALOGUE, ToolName

ROOT = Path(__file__).resolve().parents[1]
SERVER = json.loads((ROOT / "server.json").read_text(encoding="utf-8"))
SKILL = (ROOT / "SKILL.md").read_text(encoding="utf-8")
TOOL_LINE = re.compile(r"^- `(\w+)` \(tier: (\w+), price: ([^)]*)\): \S.*$", re.M)


def test_server_json_has_this_version_and_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert SERVER["version"] == __version__
    assert re.fullmatch(r"[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+", SERVER["name"])
    assert 0 < len(SERVER["description"]) <= 100  # the registry's limit
    (package,) = SERVER["packages"]
    assert (package["registryType"], package["identifier"]) == ("pypi", project["name"])
    assert package["version"] == __version__
    assert package["transport"] == {"type": "stdio"}
    arguments = [argument["value"] for argument in package["packageArguments"]]
    assert arguments == ["serve"]
    # `kamiyo serve` is a command of this package's entry point.
    assert project["scripts"]["kamiyo"] == "kamiyo.cli:main"
    assert CliRunner().invoke(app, [*arguments, "--help"]).exit_code == 0


def _values(model: BaseModel) -> list[str]:
    """Every setting's value as text, secrets revealed."""
    found: list[str] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            found += _values(value)
        elif isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        else:
            found.append(json.dumps(value, default=str))
    return found


@pytest.mark.parametrize(
    "variable",
    SERVER["packages"][0]["environmentVariables"],
    ids=lambda variable: variable["name"],
)
def test_each_environment_variable_is_a_setting(
    variable: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    value = variable.get("placeholder") or f"kmy-{uuid.uuid4().hex}"
    assert variable["description"]
    before = _values(Settings(_env_file=None))
    monkeypatch.setenv(variable["name"], value)
    after = _values(Settings(_env_file=None))
    assert after != before
    expected = json.loads(value)[0] if value.startswith("[") else value
    # As given, past a scheme the settings may spell out (postgresql -> postgresql+asyncpg).
    assert any(expected.split("://")[-1] in text for text in after)


def test_the_remote_is_the_streamable_http_endpoint_marked_as_a_placeholder() -> None:
    (remote,) = SERVER["remotes"]
    assert remote["type"] == "streamable-http"
    assert remote["url"].endswith("/mcp")
    note = SERVER["_meta"]["io.modelcontextprotocol.registry/publisher-provided"]["remote_url"]
    assert note.startswith("placeholder")
    assert remote["url"].removesuffix("/mcp") in note


def test_the_skill_names_every_tool_with_its_tier_and_price() -> None:
    _, front, body = SKILL.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert re.fullmatch(r"[a-z0-9-]{1,64}", meta["name"])
    assert 0 < len(meta["description"]) <= 1024
    listed = {name: (tier, price) for name, tier, price in TOOL_LINE.findall(body)}
    assert set(listed) == {name.value for name in ToolName}
    for name, (tier, price) in listed.items():
        operation = CATALOGUE[ToolName(name)]
        assert tier == operation.tier.value, name
        assert price == (operation.price.describe() if operation.price else "free"), name
    # Any tool named anywhere in it exists.
    named = set(re.findall(r"`([a-z]+(?:_[a-z]+)+)`", body))
    assert named <= set(listed), named - set(listed)
