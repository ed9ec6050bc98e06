"""MCP sessions for ``bench.alerts --transport http``, in a process of their own so that the
clients do not share the server's event loop or core: opens ``--sessions`` Streamable HTTP
sessions (handshake era), subscribes each to ``--uri``, keeps each one's GET stream open, and
prints ``ready`` once all are subscribed, then ``<unix time> <session index>`` per
``notifications/resources/updated`` on stdout.

    python -m bench.alert_sessions --url http://127.0.0.1:8000/mcp --sessions 1000 --uri kamiyo://exploits/recent
"""

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import httpx2

VERSION = "2025-11-25"
OPENING_AT_ONCE = 50  # sessions being set up concurrently (the server takes them as they come)


def _post_headers(session_id: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if session_id is not None:
        headers |= {"mcp-session-id": session_id, "mcp-protocol-version": VERSION}
    return headers


async def _open(http: httpx2.AsyncClient, url: str, uri: str) -> str:
    """A subscribed session's id."""
    hello = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": VERSION,
            "capabilities": {},
            "clientInfo": {"name": "bench-alert-sessions", "version": "1"},
        },
    }
    answer = await http.post(url, json=hello, headers=_post_headers(None))
    answer.raise_for_status()
    session_id = answer.headers["mcp-session-id"]
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    await http.post(url, json=initialized, headers=_post_headers(session_id))
    subscribe = {"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": uri}}
    answer = await http.post(url, json=subscribe, headers=_post_headers(session_id))
    answer.raise_for_status()
    return session_id


async def _listen(http: httpx2.AsyncClient, url: str, session_id: str, index: int) -> None:
    headers = {
        "Accept": "text/event-stream",
        "mcp-session-id": session_id,
        "mcp-protocol-version": VERSION,
    }
    async with http.stream("GET", url, headers=headers) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data:") and "notifications/resources/updated" in line:
                arrived = time.time()
                message: dict[str, Any] = json.loads(line[5:])
                if message.get("method") == "notifications/resources/updated":
                    sys.stdout.write(f"{arrived:.6f} {index}\n")
                    sys.stdout.flush()


async def main(args: argparse.Namespace) -> None:
    limits = httpx2.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx2.AsyncClient(limits=limits, timeout=None) as http:
        gate = asyncio.Semaphore(OPENING_AT_ONCE)

        async def opened(index: int) -> tuple[int, str]:
            async with gate:
                return index, await _open(http, args.url, args.uri)

        sessions = await asyncio.gather(*(opened(n) for n in range(args.sessions)))
        listening = [
            asyncio.create_task(_listen(http, args.url, session_id, index))
            for index, session_id in sessions
        ]
        await asyncio.sleep(1.0)  # every GET stream has reached the server
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await asyncio.gather(*listening)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--uri", required=True)
    asyncio.run(main(parser.parse_args()))
