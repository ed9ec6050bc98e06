import json
import logging

import pytest

from kamiyo.observability import configure_logging


def test_json_logs_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("kamiyo.test").info("hello %s", "world", extra={"tool": "search"})
    captured = capsys.readouterr()
    assert captured.out == ""
    record = json.loads(captured.err.strip().splitlines()[-1])
    assert record["message"] == "hello world"
    assert record["level"] == "INFO"
    assert record["logger"] == "kamiyo.test"
    assert record["tool"] == "search"


def test_pretty_logs_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("WARNING", "pretty")
    logging.getLogger("kamiyo.test").warning("careful")
    logging.getLogger("kamiyo.test").info("not shown")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "careful" in captured.err
    assert "not shown" not in captured.err
