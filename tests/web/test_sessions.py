"""Stateful Streamable HTTP sessions against a real ``kamiyo serve --transport http``: an idle
session is closed after ``KAMIYO_HTTP_SESSION_IDLE_S`` (its id then answers 404, so its client
opens a new one), and at ``KAMIYO_HTTP_MAX_SESSIONS`` a new session is refused with 503 and a
clear error while the open ones go on."""

import json
import time
from pathlib import Path

from tests.mcpserver.conftest import running_http_server
from tests.web.raw_http import (
    INITIALIZE,
    INITIALIZED,
    MCP_HEADERS,
    exchange,
    post_json,
    request_head,
)

PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}


def open_session(url: str) -> tuple[int, dict[str, str], str]:
    """An initialize; its status, the headers of the session (if one opened) and its body."""
    body = json.dumps(INITIALIZE).encode()
    answer = exchange(url, request_head(url, "POST", "/mcp", MCP_HEADERS, len(body)) + body)
    if answer.status != 200:
        return answer.status, {}, answer.body.decode()
    headers = {
        "Mcp-Session-Id": answer.headers["mcp-session-id"],
        "MCP-Protocol-Version": "2025-11-25",
    }
    assert post_json(url, "/mcp", INITIALIZED, headers)[0] == 202
    return answer.status, headers, answer.body.decode()


def test_an_idle_session_is_closed_and_its_id_answers_404(tmp_path: Path) -> None:
    with running_http_server(tmp_path, [], {"KAMIYO_HTTP_SESSION_IDLE_S": "1"}) as url:
        status, session, _ = open_session(url)
        assert status == 200
        assert post_json(url, "/mcp", PING, session)[0] == 200  # in use: still open
        # Idle for well past its second (no request, no stream): the server closes it.
        time.sleep(4)
        status, answer = post_json(url, "/mcp", PING, session)
        assert status == 404
        assert answer["error"]["message"] == "Session not found"
        assert open_session(url)[0] == 200  # the client starts again


def test_a_session_over_the_cap_is_refused_and_the_open_ones_go_on(tmp_path: Path) -> None:
    with running_http_server(tmp_path, [], {"KAMIYO_HTTP_MAX_SESSIONS": "2"}) as url:
        first, second = open_session(url), open_session(url)
        assert first[0] == second[0] == 200
        status, headers, body = open_session(url)
        assert status == 503
        assert not headers
        assert json.loads(body)["error"]["message"] == "Too many open sessions"
        for _, session, _ in (first, second):
            assert post_json(url, "/mcp", PING, session)[0] == 200
