"""What the set-up page shows: each MCP client's configuration for this server, as text ready
to paste. The templates hold the words; this module builds the configurations, filling in a key
only when one was just created (a stored key cannot be read back: only its hash is kept).

Claude Desktop's comes from ``onboarding.setup_snippet`` (the one the mails carry), through
``mcp-remote``; the clients that speak Streamable HTTP themselves get the URL and a header.
"""

import json
import shlex
from dataclasses import dataclass
from typing import Any

from kamiyo import clients
from kamiyo.billing import onboarding
from kamiyo.config import SiteSettings

# VS Code asks for the key when it starts the server and keeps it in its secret storage, so
# the key never sits in .vscode/mcp.json, a file that is often committed with the project.
VSCODE_INPUT = "kamiyo-api-key"
EXAMPLE_PROMPTS = (
    "Search for crypto exploits from the last 7 days",
    "What's the security risk of Aave?",
    "Has 0x… interacted with exploited protocols?",
)


@dataclass(frozen=True, slots=True)
class ClientSetup:
    mcp_url: str
    key_filled_in: bool
    claude_desktop: str  # claude_desktop_config.json
    claude_code: str  # a shell command
    cursor: str  # ~/.cursor/mcp.json
    vscode: str  # .vscode/mcp.json
    mcp_remote: str  # a shell command


def client_setup(site: SiteSettings, api_key: str | None = None) -> ClientSetup:
    """Every client's configuration; ``api_key`` in place of the placeholder when given."""
    key = api_key or onboarding.KEY_PLACEHOLDER
    url = f"{onboarding.base_url(site)}/mcp"
    header = f"Bearer {key}"
    bridge = clients.remote_server_entry(url, api_key=key)
    return ClientSetup(
        mcp_url=url,
        key_filled_in=api_key is not None,
        claude_desktop=onboarding.setup_snippet(site, key),
        claude_code=shlex.join(
            [
                "claude",
                "mcp",
                "add",
                "--transport",
                "http",
                clients.SERVER_NAME,
                url,
                "--header",
                f"Authorization: {header}",
            ]
        ),
        cursor=_json(
            {
                "mcpServers": {
                    clients.SERVER_NAME: {"url": url, "headers": {"Authorization": header}}
                }
            }
        ),
        vscode=_json(
            {
                "inputs": [
                    {
                        "type": "promptString",
                        "id": VSCODE_INPUT,
                        "description": "KAMIYO API key",
                        "password": True,
                    }
                ],
                "servers": {
                    clients.SERVER_NAME: {
                        "type": "http",
                        "url": url,
                        "headers": {"Authorization": f"Bearer ${{input:{VSCODE_INPUT}}}"},
                    }
                },
            }
        ),
        # The same command Claude Desktop runs, with the header's value in the environment.
        mcp_remote=" ".join(
            [
                *(f"{name}={shlex.quote(value)}" for name, value in bridge.get("env", {}).items()),
                shlex.join([bridge["command"], *bridge["args"]]),
            ]
        ),
    )


def _json(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2, ensure_ascii=False)
