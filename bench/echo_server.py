"""The baseline: a bare ``mcp`` SDK server with one echo tool, served like KAMIYO serves.

python -m bench.echo_server --transport http --port 8001   # stateless JSON over HTTP
python -m bench.echo_server                                # stdio
"""

import argparse

import uvicorn
from mcp.server.mcpserver import MCPServer

# WARNING, as KAMIYO runs in the benchmarks (KAMIYO_LOG_LEVEL): at the SDK's default, INFO, every
# stateless request logs a line, which costs the baseline a good part of its speed.
server = MCPServer("echo", log_level="WARNING")


@server.tool()
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    if args.transport == "stdio":
        server.run("stdio")
        return
    app = server.streamable_http_app(stateless_http=True, json_response=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", server_header=False)


if __name__ == "__main__":
    main()
