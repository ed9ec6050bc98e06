"""A virtualenv holding x402's own Python client, built once per lock file and reused.

x402's MCP client needs mcp 1.x while KAMIYO runs on mcp 2.x, so the client gets an environment
of its own, installed with uv from the pinned ``requirements.txt``. It lives in the user's cache
(``~/.cache/kamiyo-tests/x402-client-<hash>``), keyed by the lock file and the interpreter, so
later runs reuse it. A file lock keeps parallel test runs from building it at once, and a marker
written last means an interrupted build is redone rather than used.

When the package index cannot be reached the tests skip with the reason, except under CI
(``CI`` set), where that is an error.
"""

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import pytest
from filelock import FileLock
from platformdirs import user_cache_path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
PAY = HERE / "pay.py"

INSTALL_TIMEOUT_S = 600
MARKER = "kamiyo-built.json"
# How uv reports an index or download it cannot reach (as opposed to a resolution failure).
UNREACHABLE = (
    "Failed to fetch",
    "Failed to download",
    "error sending request",
    "tcp connect error",
    "dns error",
    "timed out",
)


def _missing(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _uv() -> str:
    # The uv next to the running interpreter is the one the project's environment pins.
    beside = Path(sys.executable).with_name("uv.exe" if sys.platform == "win32" else "uv")
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        _missing("uv is needed to build the x402 client's environment and was not found")
    return found


def environment_dir() -> Path:
    """Where the environment for the current lock file and interpreter lives."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    # A venv links to its base interpreter, so another interpreter needs another venv.
    digest.update(f"{sys.base_prefix}|{sys.version}|{platform.machine()}".encode())
    return user_cache_path("kamiyo-tests") / f"x402-client-{digest.hexdigest()[:16]}"


def _python_in(folder: Path) -> Path:
    if sys.platform == "win32":
        return folder / "Scripts" / "python.exe"
    return folder / "bin" / "python"


def _run(*command: str) -> None:
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        _missing(f"`{' '.join(command[:3])}` took over {INSTALL_TIMEOUT_S} s: index unreachable?")
    if proc.returncode == 0:
        return
    if any(sign in proc.stderr for sign in UNREACHABLE):
        _missing(f"cannot install the x402 client from the package index:\n{proc.stderr[-1500:]}")
    pytest.fail(f"`{' '.join(command)}` failed:\n{proc.stderr[-3000:]}")


def client_python() -> Path:
    """The interpreter of the x402 client's environment, built first if need be."""
    folder = environment_dir()
    python = _python_in(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(folder.with_name(folder.name + ".lock"), timeout=INSTALL_TIMEOUT_S):
        if (folder / MARKER).exists() and python.exists():
            return python
        uv = _uv()
        started = time.monotonic()
        shutil.rmtree(folder, ignore_errors=True)
        _run(uv, "venv", "--quiet", "--python", sys.executable, str(folder))
        _run(uv, "pip", "install", "--quiet", "--python", str(python), "-r", str(REQUIREMENTS))
        built = {"requirements": str(REQUIREMENTS), "seconds": time.monotonic() - started}
        (folder / MARKER).write_text(json.dumps(built))
    return python
