"""The one ASGI application: MCP over Streamable HTTP (/mcp) and SSE (/sse), health, and later
the REST API, webhooks and dashboard."""
