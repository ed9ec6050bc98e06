"""The product's settings, in sections, read from ``KAMIYO_*`` variables and ``.env``.

Each component receives its own section (``settings.x402``, ``settings.stripe``, …), never the
whole object. A section is a ``BaseSettings`` of its own: its ``env_prefix`` names most of its
variables, and ``validation_alias`` the few that do not share the prefix, so the variable names
stay those of the README's table. ``Settings`` composes them and keeps the checks that span
sections (production's refusal of insecure settings).
"""

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, ValidationError, model_validator
from pydantic_settings.sources import ENV_FILE_SENTINEL, DotenvType

from kamiyo.config.alerts import AlertSettings, WebhookSettings
from kamiyo.config.base import (
    DEVELOPMENT_SECRET,
    MIN_SECRET_LENGTH,
    ConfigurationError,
    InsecureSettingsError,
    Section,
    section_config,
)
from kamiyo.config.explorers import ExplorerSettings
from kamiyo.config.http import HttpSettings
from kamiyo.config.lifecycle import RetentionSettings, ShutdownSettings
from kamiyo.config.metrics import MetricsSettings
from kamiyo.config.payments import X402Settings
from kamiyo.config.sections import (
    AnswerSettings,
    AuthSettings,
    DatabaseSettings,
    LogSettings,
    MeterSettings,
    RedisSettings,
    SiteSettings,
    SmtpSettings,
    StripeSettings,
    async_database_url,
)
from kamiyo.config.sources import SourceSettings, parse_duration
from kamiyo.config.tracing import TracingSettings


class Settings(Section):
    """Every section, and the environment they run in."""

    model_config = section_config("KAMIYO_")

    environment: Literal["development", "test", "production"] = Field(
        default="development",
        description="production refuses to start on insecure settings (docs/deploy.md).",
    )
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    site: SiteSettings = Field(default_factory=SiteSettings)
    answers: AnswerSettings = Field(default_factory=AnswerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    meter: MeterSettings = Field(default_factory=MeterSettings)
    stripe: StripeSettings = Field(default_factory=StripeSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    x402: X402Settings = Field(default_factory=X402Settings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    sources: SourceSettings = Field(default_factory=SourceSettings)
    explorers: ExplorerSettings = Field(default_factory=ExplorerSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    usage: RetentionSettings = Field(default_factory=RetentionSettings)

    SECTIONS: ClassVar[dict[str, type[Section]]] = {}

    def __init__(self, _env_file: DotenvType | None = ENV_FILE_SENTINEL, **values: Any) -> None:
        # Each section reads the environment itself; build the missing ones with the same
        # .env choice (``Settings(_env_file=None)`` must read no .env anywhere).
        for name, section in self.SECTIONS.items():
            given = values.get(name)
            if given is None:
                values[name] = section(_env_file=_env_file)
            elif isinstance(given, dict):
                values[name] = section(_env_file=_env_file, **given)
        super().__init__(_env_file=_env_file, **values)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        # A flat name (``tier_cache_s``) would be set beside the sections and read by nobody.
        unknown = set(update or {}) - set(type(self).model_fields)
        if unknown:
            raise TypeError(
                f"Settings has no field {', '.join(sorted(unknown))}: settings are in sections, "
                'change them with with_changes(auth={"tier_cache_s": 0}, …)'
            )
        return super().model_copy(update=update, deep=deep)

    def with_changes(self, **sections: Mapping[str, Any]) -> Self:
        """A copy with some fields of some sections changed, e.g.
        ``settings.with_changes(stripe={"webhook_secret": None})`` (no re-validation)."""
        update = {
            name: getattr(self, name).model_copy(update=dict(changes))
            for name, changes in sections.items()
        }
        return self.model_copy(update=update)

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def migrate_on_start(self) -> bool:
        if self.database.auto_migrate is not None:
            return self.database.auto_migrate
        return self.environment != "production"

    def insecure_reasons(self) -> list[str]:
        """Why these settings are unfit for production (empty when they are fit)."""
        reasons: list[str] = []
        secret = self.auth.secret_key.get_secret_value()
        if secret == DEVELOPMENT_SECRET:
            reasons.append("KAMIYO_SECRET_KEY is the public development default")
        elif len(secret) < MIN_SECRET_LENGTH:
            reasons.append(f"KAMIYO_SECRET_KEY is shorter than {MIN_SECRET_LENGTH} characters")
        if not self.database.url:
            reasons.append("KAMIYO_DATABASE_URL is not set (production needs an explicit database)")
        stripe = self.stripe
        stripe_key = stripe.secret_key.get_secret_value() if stripe.secret_key else ""
        if stripe_key.startswith(("sk_test_", "rk_test_")):
            reasons.append("KAMIYO_STRIPE_SECRET_KEY is a Stripe test-mode key")
        if stripe_key and not stripe.webhook_secret:
            reasons.append(
                "KAMIYO_STRIPE_WEBHOOK_SECRET is not set (webhooks could not be verified)"
            )
        if self.webhooks.allow_loopback:
            reasons.append(
                "KAMIYO_WEBHOOKS_ALLOW_LOOPBACK is true (alert webhooks could reach this machine)"
            )
        if self.auth.oauth_allow_loopback_clients:
            reasons.append(
                "KAMIYO_OAUTH_ALLOW_LOOPBACK_CLIENTS is true (client metadata fetches could "
                "reach this machine)"
            )
        metrics_token = self.metrics.token.get_secret_value() if self.metrics.token else None
        if metrics_token is not None and len(metrics_token) < MIN_SECRET_LENGTH:
            reasons.append(f"KAMIYO_METRICS_TOKEN is shorter than {MIN_SECRET_LENGTH} characters")
        return reasons

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> Self:
        if self.environment == "production":
            reasons = self.insecure_reasons()
            if reasons:
                raise InsecureSettingsError(
                    "refusing to start in production: " + "; ".join(reasons)
                )
        return self


def _sections() -> dict[str, type[Section]]:
    found: dict[str, type[Section]] = {}
    for name, info in Settings.model_fields.items():
        section = info.annotation
        if isinstance(section, type) and issubclass(section, Section):
            found[name] = section
    return found


Settings.SECTIONS = _sections()
_BY_TITLE: dict[str, type[Section]] = {s.__name__: s for s in [*Settings.SECTIONS.values()]}
_BY_TITLE[Settings.__name__] = Settings


def describe_settings_error(exc: ValidationError) -> str:
    """One line naming each variable that is wrong and what is wrong with it, never its value."""
    section = _BY_TITLE.get(exc.title, Settings)
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        name = section.env_name(str(loc[0])) if loc else "settings"
        name += "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{name} {message}" if message.startswith("is ") else f"{name}: {message}")
    return "; ".join(parts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


__all__ = [
    "DEVELOPMENT_SECRET",
    "MIN_SECRET_LENGTH",
    "AlertSettings",
    "AnswerSettings",
    "AuthSettings",
    "ConfigurationError",
    "DatabaseSettings",
    "ExplorerSettings",
    "HttpSettings",
    "InsecureSettingsError",
    "LogSettings",
    "MeterSettings",
    "MetricsSettings",
    "RedisSettings",
    "RetentionSettings",
    "Section",
    "Settings",
    "ShutdownSettings",
    "SiteSettings",
    "SmtpSettings",
    "SourceSettings",
    "StripeSettings",
    "TracingSettings",
    "WebhookSettings",
    "X402Settings",
    "async_database_url",
    "describe_settings_error",
    "get_settings",
    "parse_duration",
]
