"""What one hostile request writes to a real server's log, in both log formats: 4 MB names and
URIs, 100 kB headers and query strings, and the paths and query strings of ordinary requests.

Before these were bounded, a 4 MB ``resources/read`` wrote 8 MB (JSON) to 9.7 MB (pretty) of log
and, in the pretty format, held the event loop 8-10 s.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.mcpserver.conftest import STATELESS, running_http_server
from tests.web.raw_http import (
    ServerLog,
    exchange,
    longest_run,
    post_json,
    request_head,
)

HUGE = "x" * 4_000_000  # under the SDK's 4 MiB body limit, with the JSON around it
# A bounded log: a few lines for the request; no value longer than a few hundred characters.
MAX_LOG_BYTES_PER_REQUEST = 8_000
MAX_RUN = 600
SCREENED = "0xb66cd966670d962c227b3eaba30a872dbfb995db"


@dataclass
class Served:
    url: str
    log: ServerLog


@pytest.fixture(scope="module", params=["json", "pretty"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp(f"request-logs-{request.param}")
    # A wide console, so that the pretty format puts an access-log line on one line.
    env = {"KAMIYO_LOG_FORMAT": request.param, "COLUMNS": "200"}
    with running_http_server(folder, STATELESS, env) as url:
        yield Served(url, ServerLog(folder / "server.log"))


def _call(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


HOSTILE = {
    "unknown resource": _call("resources/read", {"uri": "kamiyo://" + HUGE}),
    "exploit resource": _call("resources/read", {"uri": "kamiyo://exploits/" + HUGE}),
    "tool name": _call("tools/call", {"name": HUGE, "arguments": {}}),
    "tool argument": _call(
        "tools/call", {"name": "get_exploit", "arguments": {"exploit_id": HUGE}}
    ),
    "prompt name": _call("prompts/get", {"name": HUGE}),
    "method": _call(HUGE, {}),
    "prompt argument": _call(
        "prompts/get", {"name": "incident_brief", "arguments": {"exploit_id": HUGE}}
    ),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_4_mb_name_or_uri_is_refused_in_a_few_lines(served: Served, case: str) -> None:
    served.log.mark()
    status, answer = post_json(served.url, "/mcp", HOSTILE[case])
    assert status == 200
    text = json.dumps(answer)
    assert len(text) < 2_000  # the value said back only in part
    assert "at most" in text
    logged = served.log.wait_for("POST /mcp HTTP/1.1")
    assert len(logged.encode()) < MAX_LOG_BYTES_PER_REQUEST
    assert longest_run(logged) <= MAX_RUN


def test_huge_headers_and_query_strings_are_logged_bounded(served: Served) -> None:
    """The SDK logs a refused Host header and an SSE session id in full (f-strings): the
    handler's bound cuts them."""
    big = "x" * 100_000
    served.log.mark()
    assert exchange(served.url, request_head(served.url, "GET", "/mcp", host=big)).status == 421
    json_body = {"Content-Type": "application/json"}
    sse_post = request_head(served.url, "POST", f"/messages/?session_id={big}", json_body)
    assert exchange(served.url, sse_post).status == 400
    logged = served.log.wait_for("POST /messages/ HTTP/1.1")
    assert len(logged.encode()) < MAX_LOG_BYTES_PER_REQUEST
    assert longest_run(logged) <= MAX_RUN


def test_access_lines_show_paths_without_query_strings_or_screened_addresses(
    served: Served,
) -> None:
    served.log.mark()
    for path in (
        f"/api/v1/wallets/{SCREENED}?chain=ethereum",
        f"/api/v1/exploits?address={SCREENED}&query=confidential",
        "/keys/reveal/one-time-token-value",
    ):
        exchange(served.url, request_head(served.url, "GET", path))
    logged = served.log.wait_for("/keys/reveal/[token]")
    assert "GET /api/v1/wallets/[address] HTTP/1.1" in logged
    assert "GET /api/v1/exploits HTTP/1.1" in logged
    for secret in (SCREENED, "chain=", "confidential", "one-time-token-value"):
        assert secret not in logged
