"""The MCP surface: KAMIYO's tools, resources and prompts on the official SDK's ``MCPServer``."""
