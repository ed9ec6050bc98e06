"""``/dashboard/setup/kamiyo.mcpb``: the desktop-extension bundle (``kamiyo bundle``'s), for
Claude Desktop's one-click install.

Its manifest lists the app's own MCP server's prompts; the zip is this server's own source
(``bundle.write``: under a second, about a megabyte), written in a worker thread the first time
it is asked for and kept in memory for the life of the process (every app in it shares it): the
source does not change under a running server. The bundle holds no key: the host asks for one
when it installs it.
"""

import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from starlette.requests import Request
from starlette.responses import Response

from kamiyo import bundle
from kamiyo.web.dashboard import render
from kamiyo.web.dashboard.viewer import Viewer

log = logging.getLogger(__name__)

FILENAME = "kamiyo.mcpb"
MEDIA_TYPE = "application/zip"  # an .mcpb is a zip; hosts go by the file name


class BuiltOnce:
    """The bundle's bytes, written at most once per process (a failed build is tried again)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # however many ask at once, in their worker threads
        self.content: bytes | None = None

    def get(self, document: dict[str, Any]) -> bytes:
        with self._lock:
            if self.content is None:
                with tempfile.TemporaryDirectory(prefix="kamiyo-mcpb-") as folder:
                    written = bundle.write(Path(folder) / FILENAME, document)
                    self.content = written.read_bytes()
                log.info("built the .mcpb bundle (%d bytes) for downloads", len(self.content))
            return self.content


BUILT = BuiltOnce()


class BundleDownload:
    def __init__(self, server: MCPServer) -> None:
        self.server = server

    async def content(self) -> bytes:
        if BUILT.content is not None:
            return BUILT.content
        document = await bundle.manifest(self.server)
        return await anyio.to_thread.run_sync(BUILT.get, document)

    async def download(self, request: Request, viewer: Viewer) -> Response:
        try:
            content = await self.content()
        except bundle.BundleError as exc:
            log.warning("the .mcpb download is unavailable: %s", exc)
            return render.message(
                request,
                503,
                "The desktop extension is not available here",
                "This server cannot build the .mcpb bundle (it does not run from a source "
                "checkout). Use one of the configurations on the set-up page instead.",
                context=viewer.context(),
            )
        headers = {**render.headers(), "Content-Disposition": f'attachment; filename="{FILENAME}"'}
        return Response(content, media_type=MEDIA_TYPE, headers=headers)
