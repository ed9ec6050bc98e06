"""Alerts: where the alerts worker runs and how it shares work, and how webhooks are sent."""

from pydantic import Field

from kamiyo.config.base import Section, section_config


class AlertSettings(Section):
    """The alerts worker (outbox, webhook deliveries, mail through the outbox)."""

    model_config = section_config("KAMIYO_ALERTS_")

    worker: bool = Field(
        default=True,
        description="Run the alerts worker inside this serving instance; false where separate "
        "`kamiyo worker` processes do the work.",
    )
    poll_s: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="How often the worker looks for new changes and due deliveries (it is also "
        "woken at once by an ingest on its own instance).",
    )
    lease_s: float = Field(
        default=60,
        ge=1,
        description="How long a worker holds what it claimed; a dead worker's claims are taken "
        "over after this. Longer than one webhook attempt (KAMIYO_WEBHOOKS_TIMEOUT_S).",
    )


class WebhookSettings(Section):
    """How alert webhooks are sent: one attempt's limits, and the test-only loopback switch."""

    model_config = section_config("KAMIYO_WEBHOOKS_")

    allow_loopback: bool = Field(
        default=False,
        description="Let webhooks reach loopback addresses (127.0.0.1, ::1, localhost), over "
        "plain http too: for tests and a receiver on this machine; production refuses it.",
    )
    timeout_s: float = Field(
        default=10,
        gt=0,
        description="Seconds one delivery attempt may take, from resolving the host to reading "
        "the answer.",
    )
    max_response_bytes: int = Field(
        default=64 * 1024,
        ge=0,
        description="Bytes of a receiver's answer that are read; the rest is dropped unread.",
    )
