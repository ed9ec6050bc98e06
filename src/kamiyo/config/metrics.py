"""Who may read ``/metrics``: the scraper's bearer token."""

from pydantic import Field, SecretStr

from kamiyo.config.base import Section, section_config


class MetricsSettings(Section):
    model_config = section_config("KAMIYO_METRICS_")

    token: SecretStr | None = Field(
        default=None,
        description="Bearer token Prometheus sends to read /metrics (32+ characters in "
        "production); unset: /metrics answers loopback callers only, and none in production.",
    )
