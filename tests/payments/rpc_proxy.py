"""A loopback JSON-RPC proxy in front of a chain (anvil, or the Solana RPC over LiteSVM) that
holds a settlement's send past KAMIYO's settle timeout, as a slow node does that takes a
transaction and answers too late.

Every request is forwarded to ``upstream`` and answered, except the send (``send_method``) while
``hold_sends`` is on: the proxy takes it, answers nothing, and waits until the test calls
``release()``. Then it forwards the transaction (it lands, or reverts, as the chain decides;
unless ``drop_held``: then it is lost, as a node that never propagates it) and sets
``forwarded``; the caller gave up long before. Nothing is timed: the test says when.
"""

import json
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.served import on_loopback

EVM_SEND = "eth_sendRawTransaction"
HOLD_LIMIT_S = 60.0  # a test that never releases does not leave a thread behind for long


class HoldingRpc:
    def __init__(self, upstream: str, send_method: str = EVM_SEND) -> None:
        self.upstream = upstream
        self.send_method = send_method
        self.hold_sends = False
        self.drop_held = False
        self.held = threading.Event()  # a send arrived and is being held
        self.forwarded = threading.Event()  # a held send was let go (forwarded, or dropped)
        self.sent_hashes: list[str] = []
        self._release = threading.Event()

    def release(self) -> None:
        self._release.set()

    def forward(self, body: bytes) -> bytes:
        request = urllib.request.Request(
            self.upstream, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: bytes = response.read()
        return answer

    def handle(self, body: bytes) -> bytes | None:
        """The answer to send back, or None to answer nothing (the send was held)."""
        request: Any = json.loads(body)
        method = request.get("method") if isinstance(request, dict) else None
        if method == self.send_method and self.hold_sends:
            self.held.set()
            self._release.wait(HOLD_LIMIT_S)
            if not self.drop_held:
                answer = json.loads(self.forward(body))
                if isinstance(answer.get("result"), str):  # a resent one is refused: known
                    self.sent_hashes.append(answer["result"])
            self.forwarded.set()
            return None
        return self.forward(body)

    @contextmanager
    def running(self) -> Iterator[str]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                answer = proxy.handle(self.rfile.read(int(self.headers["Content-Length"])))
                if answer is None:
                    return  # the client has given up by now: nothing to answer
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                return None

        with on_loopback(Handler) as url:
            try:
                yield url
            finally:
                self.release()  # a held send goes on, so the server's threads can end
