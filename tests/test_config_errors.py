"""Configuration mistakes, met by the real ``kamiyo`` command: one line, exit status 2, no
traceback, naming the variable and what to put there (never a secret it holds)."""

import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import PostgresDatabases

# The console script the package installs, next to this interpreter (``python -m`` elsewhere).
_SCRIPT = Path(sys.executable).with_name("kamiyo")
KAMIYO = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "kamiyo"]

EVM = '[{"network": "eip155:8453", "pay_to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "rpc_urls": ["http://127.0.0.1:9"]}]'  # noqa: E501
SOLANA = '[{"network": "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp", "pay_to": "3i476kTBBTy7pBGx4CXwJpJ6phuwLQgcwLTdHhU3c7ui", "rpc_urls": ["http://127.0.0.1:9"]}]'  # noqa: E501
HTTP = ["serve", "--transport", "http", "--port", "9"]  # never reached: the check stops first
STDIO = ["serve"]


def kamiyo(tmp_path: Path, *args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KAMIYO_")}
    return subprocess.run(
        [*KAMIYO, *args],
        env=clean | {"KAMIYO_DATA_DIR": str(tmp_path / "data")} | dict(env),
        cwd=tmp_path,
        input="",  # a stdio server that started would read this end of input and stop
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a run that stopped on a configuration mistake."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0].removeprefix("error: ")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


# Database URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
async def test_a_plain_postgresql_url_simply_works(
    tmp_path: Path, postgres_databases: PostgresDatabases, scheme: str
) -> None:
    created = make_url(await postgres_databases.create())
    plain = created.set(drivername=scheme).render_as_string(hide_password=False)
    assert plain.startswith(f"{scheme}://")
    env = {"KAMIYO_DATABASE_URL": plain}
    upgraded = kamiyo(tmp_path, "db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "postgresql+asyncpg://" in upgraded.stderr  # the driver KAMIYO picked
    found = kamiyo(tmp_path, "search", "ronin", "--json", env=env)
    assert found.returncode == 0, found.stderr
    assert "20220329_ronin-network" in found.stdout


def test_a_plain_sqlite_url_simply_works(tmp_path: Path) -> None:
    env = {"KAMIYO_DATABASE_URL": f"sqlite:///{tmp_path / 'plain.db'}"}
    found = kamiyo(tmp_path, "search", "ronin", "--json", env=env)
    assert found.returncode == 0, found.stderr
    assert "20220329_ronin-network" in found.stdout
    assert (tmp_path / "plain.db").exists()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql+psycopg2://kamiyo:hunter2@127.0.0.1/kamiyo", "postgresql+psycopg2 driver"),
        ("mysql://kamiyo:hunter2@127.0.0.1/kamiyo", "mysql database"),
        ("hunter2", "is not a database URL"),
    ],
)
def test_an_unsupported_database_url_is_one_line(tmp_path: Path, url: str, says: str) -> None:
    line = one_line(kamiyo(tmp_path, "stats", env={"KAMIYO_DATABASE_URL": url}))
    assert line.startswith("KAMIYO_DATABASE_URL")
    assert says in line
    assert "postgresql://" in line  # what to write instead
    assert "hunter2" not in line


# Malformed JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KAMIYO_X402_NETWORKS", "[{hunter2"),
        ("KAMIYO_STRIPE_PRICES", "notjson-hunter2"),
        ("KAMIYO_AUTHORIZATION_SERVERS", '["https://hunter2.example",'),
    ],
)
def test_a_malformed_json_setting_is_one_line(tmp_path: Path, name: str, value: str) -> None:
    line = one_line(kamiyo(tmp_path, "stats", env={name: value}))
    assert line.startswith(f"{name} is not valid JSON: expected ")
    assert "hunter2" not in line


def test_a_public_url_that_is_not_a_url_is_one_line(tmp_path: Path) -> None:
    line = one_line(kamiyo(tmp_path, *HTTP, env={"KAMIYO_PUBLIC_URL": "kamiyo.example"}))
    assert line == "KAMIYO_PUBLIC_URL: needs http(s) URLs, e.g. https://kamiyo.example.com"


# Pay per call that cannot settle ---------------------------------------------------------------


# Each case starts a process (seconds each on a busy machine): both transports once, not all.
@pytest.mark.parametrize(
    ("transport", "networks", "key"),
    [
        (HTTP, EVM, "KAMIYO_X402_EVM_RELAYER_KEY"),
        (STDIO, EVM, "KAMIYO_X402_EVM_RELAYER_KEY"),
        (HTTP, SOLANA, "KAMIYO_X402_SVM_FEE_PAYER_KEY"),
    ],
    ids=["evm-http", "evm-stdio", "solana-http"],
)
def test_pay_per_call_without_a_key_or_facilitator_is_one_line(
    tmp_path: Path, transport: list[str], networks: str, key: str
) -> None:
    line = one_line(kamiyo(tmp_path, *transport, env={"KAMIYO_X402_NETWORKS": networks}))
    assert line.startswith("KAMIYO_X402_NETWORKS")
    assert key in line
    assert "KAMIYO_X402_FACILITATOR_URL" in line


@pytest.mark.parametrize("transport", [HTTP, STDIO], ids=["http", "stdio"])
def test_an_unreachable_facilitator_stops_the_start_in_one_line(
    tmp_path: Path, transport: list[str]
) -> None:
    port = closed_port()
    env = {
        "KAMIYO_X402_NETWORKS": EVM,
        # A key in the path and the query: neither may show.
        "KAMIYO_X402_FACILITATOR_URL": f"http://127.0.0.1:{port}/hunter2/x402?key=hunter2",
    }
    line = one_line(kamiyo(tmp_path, *transport, env=env))
    assert line.startswith("KAMIYO_X402_FACILITATOR_URL")
    assert f"127.0.0.1:{port}" in line
    assert "hunter2" not in line


@pytest.mark.parametrize(
    ("transport", "networks", "name"),
    [
        (STDIO, EVM, "KAMIYO_X402_EVM_RELAYER_KEY_FILE"),
        (HTTP, SOLANA, "KAMIYO_X402_SVM_FEE_PAYER_KEY_FILE"),
    ],
    ids=["evm-stdio", "solana-http"],
)
def test_a_key_file_that_cannot_be_read_is_one_line(
    tmp_path: Path, transport: list[str], networks: str, name: str
) -> None:
    missing = tmp_path / "no-such.key"
    env = {"KAMIYO_X402_NETWORKS": networks, name: str(missing)}
    line = one_line(kamiyo(tmp_path, *transport, env=env))
    assert line.startswith(name)
    assert str(missing) in line
    assert "No such file" in line


def test_a_key_that_is_not_a_solana_keypair_is_one_line(tmp_path: Path) -> None:
    env = {"KAMIYO_X402_NETWORKS": SOLANA, "KAMIYO_X402_SVM_FEE_PAYER_KEY": "hunter2"}
    line = one_line(kamiyo(tmp_path, *HTTP, env=env))
    assert line.startswith("KAMIYO_X402_SVM_FEE_PAYER_KEY is not a base58 Solana keypair")
    assert "hunter2" not in line
