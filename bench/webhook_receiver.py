"""A webhook receiver for ``bench.alerts``, in a process of its own so that receiving does not
share the worker's event loop: prints ``<unix time> <webhook-id>`` per POST on stdout.

    python -m bench.webhook_receiver --port 9100
"""

import argparse
import sys
import time
from typing import Any

import uvicorn

Scope = dict[str, Any]


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    arrived = time.time()
    headers = dict(scope["headers"])
    webhook_id = headers.get(b"webhook-id", b"-").decode()
    sys.stdout.write(f"{arrived:.6f} {webhook_id}\n")
    sys.stdout.flush()
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
