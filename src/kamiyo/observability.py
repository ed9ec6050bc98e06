"""Logging: always to stderr, because stdout carries the stdio MCP transport."""

import logging
import sys
from typing import Literal

from pythonjsonlogger.json import JsonFormatter
from rich.console import Console
from rich.logging import RichHandler


def configure_logging(level: str = "INFO", fmt: Literal["pretty", "json"] = "pretty") -> None:
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s", datefmt="[%X]"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Alembic narrates every step at INFO; the runtime logs what matters about migrations.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
    # Library warnings (solana-py's deprecations, say) go through the handler too, so a JSON
    # log stays JSON.
    logging.captureWarnings(True)
    # HTTP clients log every request's full URL at INFO, and RPC URLs carry provider API keys.
    for name in ("httpx", "httpx2", "httpcore", "httpcore2"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
