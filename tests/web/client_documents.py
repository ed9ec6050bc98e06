"""Client ID Metadata Documents served from 127.0.0.1, as a host publishes its own."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.served import ServedInThread


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_GET(self) -> None:
        status, body, headers = self.server.owner.documents.get(self.path, (404, b"", {}))
        self.server.owner.fetched.append(self.path)
        self.send_response(status)
        for name, value in ({"content-type": "application/json"} | headers).items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: stdout and stderr belong to the test runner


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: "DocumentServer") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner


class DocumentServer(ServedInThread):
    """Serves ``documents[path] = (status, body, headers)``; records what was fetched."""

    def __init__(self) -> None:
        self.documents: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.fetched: list[str] = []
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"
