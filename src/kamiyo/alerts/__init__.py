"""Alerts: rules on new incidents, the outbox that announces changes, webhook delivery
(Standard Webhooks) and the fan-out of changes to MCP sessions on every instance."""
