"""Stripe: checkout, customer portal, and webhooks that keep subscriptions (entitlements) current.

Knows nothing of MCP or HTTP frameworks: the web layer hands raw webhook bodies to
``billing.webhooks.handle_event`` and serves what it answers.
"""
