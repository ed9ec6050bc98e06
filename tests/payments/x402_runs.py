"""Running the x402 package's own client (tests/x402_client/pay.py) against KAMIYO, on any chain.

The chain-specific test modules (test_x402_client.py for EVM, test_x402_client_solana.py) say
what to allow and how keys are written; the rest is here.
"""

import json
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.mcpserver.conftest import running_http_server
from tests.x402_client.environment import PAY

SEARCH_PRICE = 10_000  # $0.01 in atomic USDC for up to 10 results
PAY_TIMEOUT_S = 180


def private_file(folder: Path, name: str, text: str) -> Path:
    """A key in a file only its owner reads: keys go by file, never on a command line."""
    path = folder / name
    path.write_text(text)
    path.chmod(0o600)
    return path


@contextmanager
def paying_http_server(
    factory: pytest.TempPathFactory, flags: list[str], env_for: Callable[[Path], dict[str, str]]
) -> Iterator[str]:
    """``kamiyo serve --transport http`` with the payment settings ``env_for(folder)`` gives."""
    folder = factory.mktemp("x402-client-http")
    with running_http_server(folder, flags, env_for(folder)) as url:
        yield url


def run_pay(
    python: Path,
    mode: str,
    target: list[str],
    key_file: Path,
    asset: tuple[str, str],
    *,
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    max_amount: int = SEARCH_PRICE,
) -> subprocess.CompletedProcess[str]:
    # The client allows our asset (not a USDC it knows) and caps a payment at the price.
    command = [str(python), str(PAY), mode, "--key-file", str(key_file), "--asset", *asset]
    command += ["--max-amount", str(max_amount), *extra]
    return subprocess.run(
        [*command, "--", *target],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=PAY_TIMEOUT_S,
        check=False,
    )


def outcome_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr[-4000:]
    # A stdio server logs to pay.py's stderr: a traceback there is a failure even if paid.
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    [line] = proc.stdout.splitlines()
    outcome: dict[str, Any] = json.loads(line)
    return outcome
