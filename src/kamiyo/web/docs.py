"""The REST API's description: ``/api/v1/openapi.json`` and a docs page at ``/api/v1/docs``.

The page is Redoc's standalone bundle, vendored and pinned (static/vendor/README.md), served
from this server under a Content-Security-Policy that runs no script but that file: the page
has no inline script (the bundle finds the ``<redoc spec-url>`` element itself). Redoc's
styled-components write ``<style>`` elements, hence ``style-src 'unsafe-inline'``; its search
index runs in a worker it builds from a ``blob:`` URL.
"""

import hashlib
import json
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from kamiyo.web.openapi import document

OPENAPI_PATH = "/api/v1/openapi.json"
DOCS_PATH = "/api/v1/docs"
SCRIPT_PATH = "/api/v1/docs/redoc.standalone.js"
VENDORED = files("kamiyo.web") / "static" / "vendor" / "redoc.standalone.js"
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; worker-src blob:; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>KAMIYO REST API</title>
</head>
<body>
<redoc spec-url="{OPENAPI_PATH}"></redoc>
<script src="{SCRIPT_PATH}"></script>
</body>
</html>
"""


def routes() -> list[BaseRoute]:
    # Read once: the document and the bundle do not change while the process runs.
    spec = json.dumps(document(), separators=(",", ":")).encode()
    script = VENDORED.read_bytes()
    etag = '"' + hashlib.sha256(script).hexdigest()[:32] + '"'

    async def openapi(request: Request) -> Response:
        return Response(
            spec,
            media_type="application/json",
            headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=300"},
        )

    async def page(request: Request) -> Response:
        return HTMLResponse(
            PAGE,
            headers={
                "Content-Security-Policy": DOCS_CSP,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    async def bundle(request: Request) -> Response:
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(
            script,
            media_type="text/javascript",
            headers={
                "ETag": etag,
                "Cache-Control": "public, max-age=86400",
                "X-Content-Type-Options": "nosniff",
            },
        )

    return [
        Route(OPENAPI_PATH, openapi, methods=["GET"]),
        Route(DOCS_PATH, page, methods=["GET"]),
        Route(SCRIPT_PATH, bundle, methods=["GET"]),
    ]
