"""Who may read ``/metrics`` (the scraper's bearer token), and where ``kamiyo worker`` serves
its own."""

from pydantic import Field, SecretStr

from kamiyo.config.base import Section, section_config


class MetricsSettings(Section):
    model_config = section_config("KAMIYO_METRICS_")

    token: SecretStr | None = Field(
        default=None,
        description="Bearer token Prometheus sends to read /metrics (32+ characters in "
        "production); unset: /metrics answers loopback callers only, and none in production.",
    )
    worker_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="`kamiyo worker` serves its own /metrics (its source refreshes and alert "
        "deliveries) on this port, with the same token; unset: it serves none.",
    )
    worker_host: str = Field(
        default="127.0.0.1",
        description="The address `kamiyo worker` serves /metrics on (0.0.0.0 in a container).",
    )
