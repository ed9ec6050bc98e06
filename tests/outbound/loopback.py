"""A small HTTP server on 127.0.0.1 that can be told to fail, for the endpoint pool's tests."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

from tests.served import ServedInThread

Mode = Literal["ok", "http_503", "http_400"]


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_GET(self) -> None:
        owner = self.server.owner
        with owner.lock:
            owner.requests.append(self.path)
            owner.authorizations.append(self.headers.get("authorization"))
            mode = owner.mode
        if "/health" in self.path:
            status = 503 if mode == "http_503" else 200
        else:
            status = {"ok": 200, "http_503": 503, "http_400": 400}[mode]
        body = json.dumps({"server": owner.name, "path": self.path}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: stdout and stderr belong to the test runner


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: "LoopbackServer") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner


class LoopbackServer(ServedInThread):
    """Answers every GET with JSON naming itself, or fails as ``mode`` says; records requests."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mode: Mode = "ok"
        self.lock = threading.Lock()
        self.requests: list[str] = []
        self.authorizations: list[str | None] = []
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}/feed"

    def paths(self) -> list[str]:
        with self.lock:
            return [path.split("?")[0] for path in self.requests]
