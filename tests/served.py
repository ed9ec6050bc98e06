"""What the tests' HTTP servers on loopback share: served from a daemon thread while the
``with`` block runs, shut down and closed after it."""

import threading
from http.server import ThreadingHTTPServer
from typing import Self


class ServedInThread:
    """Set ``_server`` and ``_thread`` (its ``serve_forever``) in ``__init__``."""

    _server: ThreadingHTTPServer
    _thread: threading.Thread

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
