"""What a ``kamiyo`` command imports: only what it uses, so that it starts fast.

A desktop host starts ``kamiyo`` on every launch and the suite starts hundreds of them; the
reading commands load neither the serving stack (MCP, HTTP servers) nor payments, Redis, the
explorer clients or telemetry. The commands load lazily (cli_lazy.py): the table of which
module registers which command must match what the modules register.
"""

import json
import os
import sys
from pathlib import Path

import anyio
import pytest
from pydantic import BaseModel

from kamiyo.access.gate import OpenGate
from kamiyo.cli_lazy import COMMAND_MODULES, commands_of
from kamiyo.config import ConfigurationError, Settings
from kamiyo.config.sections import _rate_limit
from kamiyo.runtime import Runtime
from kamiyo.service.state import ServerState

# Top-level packages a reading command (or ``db upgrade`` at head) must not import (issue 17).
FORBIDDEN = frozenset(
    {
        "uvicorn",
        "starlette",
        "x402",
        "eth_account",
        "web3",
        "solana",
        "solders",
        "mcp",
        "mcp_types",
        "redis",
        "httpx",
        "httpx2",
        "limits",
        "stripe",
        "opentelemetry",
        "sentry_sdk",
        "alembic",  # at head, the start compares a constant and runs no migration
    }
)

# Runs commands one after another in one process, as ``kamiyo`` would run each, then prints
# the top-level packages loaded (the union over the commands: none may be forbidden).
PROBE = """
import json, sys
from kamiyo.cli import app
for command in json.loads(sys.argv[1]):
    try:
        app(command, prog_name="kamiyo")
    except SystemExit as exit:
        if exit.code:
            raise
print("LOADED " + json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""
# Settings of a gate counting limits in Redis (never reached: the gate opens no connection).
REDIS = {"redis": {"url": "redis://127.0.0.1:9/0"}}
COMMANDS = [
    ["search", "ronin", "--json"],
    ["show", "20220329_ronin-network", "--json"],
    ["stats", "--by", "chain", "--json"],
    ["db", "upgrade"],
]


@pytest.mark.anyio
@pytest.mark.parametrize("loaded_runtime", ["sqlite"], indirect=True)
async def test_reading_commands_import_no_serving_payment_or_telemetry_package(
    loaded_runtime: Runtime, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAMIYO_")}
    env |= {
        "KAMIYO_DATA_DIR": str(tmp_path / "data"),
        "KAMIYO_DATABASE_URL": loaded_runtime.settings.database.resolved_url,
        "KAMIYO_LOG_LEVEL": "WARNING",
    }
    done = await anyio.run_process(
        [sys.executable, "-c", PROBE, json.dumps(COMMANDS)], env=env, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    output = done.stdout.decode()
    assert '"Ronin Network"' in output  # the commands ran, and answered
    (line,) = [line for line in output.splitlines() if line.startswith("LOADED ")]
    loaded = set(json.loads(line.removeprefix("LOADED ")))
    assert {"kamiyo", "sqlalchemy", "typer"} <= loaded  # the probe sees what was imported
    assert sorted(loaded & FORBIDDEN) == []


def test_the_lazy_command_table_names_what_each_module_registers() -> None:
    for module in set(COMMAND_MODULES.values()):
        listed = {name for name, owner in COMMAND_MODULES.items() if owner == module}
        assert set(commands_of(module)) == listed, module


def _sections(model: type[BaseModel]) -> list[type[BaseModel]]:
    found = [model]
    for info in model.model_fields.values():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            found += _sections(kind)
    return found


def test_the_rate_limit_defaults_parse() -> None:
    """Rate-limit defaults are not validated as settings load (``limits`` stays unimported):
    checked here instead."""
    defaults = [
        info.default
        for section in _sections(Settings)
        for info in section.model_fields.values()
        if any(getattr(rule, "func", None) is _rate_limit for rule in info.metadata)
    ]
    assert len(defaults) >= 4
    for default in defaults:
        assert _rate_limit(default) == default


@pytest.mark.anyio
async def test_a_refused_explorer_url_is_caught_at_start_without_opening_a_client() -> None:
    private = Settings(explorers={"urls": {"base": "http://10.0.0.1/api"}}, _env_file=None)
    state = ServerState(settings=private, gate=OpenGate(10))
    with pytest.raises(ConfigurationError, match=r"^explorers: .*KAMIYO_EXPLORER_ALLOW_PRIVATE"):
        state.check_explorers()
    fine = Settings(explorers={"urls": {"base": "https://base.example/api"}}, _env_file=None)
    state = ServerState(settings=fine, gate=OpenGate(10))
    state.check_explorers()
    assert state.explorers is None  # checked, not opened: the first screen opens them
    opened = state.open_explorers()
    try:
        assert "base" in opened.chains
        assert state.open_explorers() is opened
    finally:
        await state.aclose()


GATE_PROBE = """
import json, sys
from kamiyo.access.account_gate import AccountGate
from kamiyo.config import Settings
AccountGate(Settings(_env_file=None, **json.loads(sys.argv[1])))
print("LOADED " + json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("redis", "expected"), [({}, set()), (REDIS, {"redis", "limits"})], ids=["alone", "redis"]
)
async def test_the_gate_loads_redis_only_where_redis_is_configured(
    redis: dict[str, object], expected: set[str], tmp_path: Path
) -> None:
    """stdio serving (a desktop host) has no Redis: its start skips redis-py and ``limits``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAMIYO_")}
    env["KAMIYO_DATA_DIR"] = str(tmp_path)
    done = await anyio.run_process(
        [sys.executable, "-c", GATE_PROBE, json.dumps(redis)], env=env, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    (line,) = [x for x in done.stdout.decode().splitlines() if x.startswith("LOADED ")]
    assert set(json.loads(line.removeprefix("LOADED "))) & {"redis", "limits"} == expected
