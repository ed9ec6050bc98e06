"""Where traces and error reports go, if anywhere: OpenTelemetry (OTLP/HTTP) and Sentry, both
off unless set, each needing its extra (``kamiyo[otel]``, ``kamiyo[sentry]``)."""

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator

from kamiyo.config.base import Section, section_config


class TracingSettings(Section):
    model_config = section_config("KAMIYO_")

    otel_endpoint: str | None = Field(
        default=None,
        description="An OTLP/HTTP collector's base URL (http://collector:4318): sends a span "
        "per HTTP request and per tool call, with its request id; needs kamiyo[otel]. Unset: "
        "no tracing, and nothing of OpenTelemetry is loaded.",
    )
    otel_service_name: str = Field(
        default="kamiyo", description="The service.name the spans are reported under."
    )
    sentry_dsn: SecretStr | None = Field(
        default=None,
        description="Sentry's DSN: error logs and unhandled exceptions go to Sentry, credentials "
        "scrubbed first; needs kamiyo[sentry]. Unset: nothing of sentry-sdk is loaded.",
    )
    sentry_environment: str | None = Field(
        default=None,
        description="The environment Sentry files events under; unset: KAMIYO_ENVIRONMENT.",
    )

    @field_validator("otel_endpoint")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None:
            try:
                AnyHttpUrl(url)
            except ValueError:
                raise ValueError("needs an http(s) URL, e.g. http://127.0.0.1:4318") from None
        return url
