"""The product's settings, in sections, read from ``KAMIYO_*`` variables and ``.env``.

Each component receives its own section (``settings.x402``, ``settings.stripe``, …), never the
whole object. A section is a ``BaseSettings`` of its own: its ``env_prefix`` names most of its
variables, and ``validation_alias`` the few that do not share the prefix, so the variable names
stay those of the README's table. ``Settings`` composes them and keeps the checks that span
sections (production's refusal of insecure settings).
"""

import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

import platformdirs
from pydantic import (
    AnyHttpUrl,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.sources import ENV_FILE_SENTINEL, DotenvType
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from kamiyo.chains import AcceptedNetwork

# The development secret is public (it is in this file), so production refuses it.
DEVELOPMENT_SECRET = "kamiyo-development-secret-do-not-use-in-production"  # noqa: S105
MIN_SECRET_LENGTH = 32


class InsecureSettingsError(RuntimeError):
    """Production was asked to start with settings that would expose it."""


class ConfigurationError(ValueError):
    """A setting cannot work as given; the message names it and says what to put there."""


def _section_config(env_prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=env_prefix,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        hide_input_in_errors=True,  # errors must never echo a secret back
    )


_JSON_EXPECTED = {
    "Expecting value": "expected a value",
    "Expecting property name enclosed in double quotes": "expected a name in double quotes",
    "Expecting ',' delimiter": "expected a comma",
    "Expecting ':' delimiter": "expected a colon",
}


def _json_setting(example: str) -> BeforeValidator:
    """Parse a JSON variable ourselves, so a mistake is one line that never repeats the value."""

    def parse(value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            found = _JSON_EXPECTED.get(exc.msg, exc.msg.lower())
            raise ValueError(
                f"is not valid JSON: {found} at character {exc.pos + 1}; write it as {example}"
            ) from None

    return BeforeValidator(parse)


# validate_by_name as a class argument, where the mypy plugin sees it: Python code passes field
# names, the environment the aliases.
class Section(BaseSettings, validate_by_name=True):
    """One part of the settings. Subclasses set ``model_config = _section_config(prefix)``."""

    @classmethod
    def env_name(cls, field: str) -> str:
        """The variable that sets ``field`` (``KAMIYO_…``)."""
        info = cls.model_fields.get(field)
        if info is not None and isinstance(info.validation_alias, str):
            return info.validation_alias.upper()
        if info is None:  # errors from the environment name the variable already
            return field.upper()
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


class DatabaseSettings(Section):
    model_config = _section_config("KAMIYO_DATABASE_")

    url: str | None = Field(
        default=None,
        description="postgresql://… or sqlite:///…; unset means SQLite under data_dir.",
    )
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("kamiyo")),
        validation_alias="KAMIYO_DATA_DIR",
    )
    auto_migrate: bool | None = Field(
        default=None,
        validation_alias="KAMIYO_AUTO_MIGRATE",
        description="Upgrade the schema and load the bundled dataset on start; "
        "unset means yes except in production (run `kamiyo db upgrade` there).",
    )

    @field_validator("url")
    @classmethod
    def _async_driver(cls, url: str | None) -> str | None:
        return async_database_url(url) if url else None

    @property
    def resolved_url(self) -> str:
        if self.url:
            return self.url
        return f"sqlite+aiosqlite:///{self.data_dir / 'kamiyo.db'}"


# KAMIYO talks to each database through one async driver; a bare URL gets it.
_ASYNC_DRIVERS = {"postgresql": "asyncpg", "sqlite": "aiosqlite"}
_USE = "use postgresql://user@host:5432/db or sqlite:////path/to/kamiyo.db"


def async_database_url(url: str) -> str:
    """``url`` with KAMIYO's async driver named (``postgresql://`` -> ``postgresql+asyncpg://``).

    Raises ValueError, without repeating the URL (it may hold a password), for anything else.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"is not a database URL: {_USE}") from None
    backend, _, driver = parsed.drivername.partition("+")
    backend = "postgresql" if backend == "postgres" else backend
    wanted = _ASYNC_DRIVERS.get(backend)
    if wanted is None:
        raise ValueError(f"names a {backend} database, which KAMIYO does not support: {_USE}")
    if driver and driver != wanted:
        raise ValueError(
            f"names the {backend}+{driver} driver, which KAMIYO does not use: write "
            f"{backend}://… (KAMIYO picks {wanted}) or {backend}+{wanted}://…"
        )
    return parsed.set(drivername=f"{backend}+{wanted}").render_as_string(hide_password=False)


def _require_http_url(url: str, example: str) -> None:
    try:
        AnyHttpUrl(url)
    except ValueError:
        raise ValueError(f"needs http(s) URLs, e.g. {example}") from None


class LogSettings(Section):
    model_config = _section_config("KAMIYO_LOG_")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["pretty", "json"] = "pretty"


class SiteSettings(Section):
    """Where KAMIYO lives and where it sends people."""

    model_config = _section_config("KAMIYO_")

    public_url: str | None = Field(
        default=None,
        description="This server's public base URL (https://…): OAuth protected resource "
        "metadata, links in mails, Stripe's return pages; unset means the URL the request "
        "arrived on (and no sign-up).",
    )
    upgrade_url: str | None = Field(
        default=None, description="Where locked-tool messages send people to upgrade."
    )

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None:
            _require_http_url(url, "https://kamiyo.example.com")
        return url


class AnswerSettings(Section):
    """How much one call returns, and how long identical calls share an answer."""

    model_config = _section_config("KAMIYO_")

    max_results: int = Field(default=1000, ge=1, le=10000)
    cache_ttl_s: float = Field(
        default=30, ge=0, description="How long identical calls share an answer; 0 disables."
    )
    cache_size: int = Field(default=4096, ge=1)


class AuthSettings(Section):
    """Who a caller is: the signing secret, tokens, the identity cache, anonymous callers."""

    model_config = _section_config("KAMIYO_")

    secret_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    jwt_issuer: str = "kamiyo"
    jwt_audience: str = Field(
        default="kamiyo", description="The audience tokens must name: this server's resource URL."
    )
    jwt_ttl_s: int = Field(default=3600, ge=60, le=30 * 24 * 3600)
    allow_anonymous: bool = Field(
        default=True, description="Serve callers without a credential on the free tier."
    )
    tier_cache_s: float = Field(
        default=5, ge=0, description="How long a credential's account and tier are remembered."
    )
    authorization_servers: Annotated[
        list[str], NoDecode, _json_setting('["https://auth.example.com"]')
    ] = Field(
        default_factory=list,
        description="OAuth authorization servers that issue tokens for this resource.",
    )

    @field_validator("authorization_servers")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            _require_http_url(url, '["https://auth.example.com"]')
        return urls

    # The credential a stdio server presents for its user (HTTP callers send their own).
    api_key: SecretStr | None = None
    token: SecretStr | None = None


class RedisSettings(Section):
    """The Redis every instance shares (rate limits and quotas)."""

    model_config = _section_config("KAMIYO_REDIS_")

    url: str | None = Field(
        default=None,
        description="redis://host:port/db shared by every instance for rate limits and "
        "quotas; unset means limits are kept in this process only.",
    )
    prefix: str = Field(default="kamiyo", min_length=1, max_length=64)
    when_down: Literal["open", "closed"] = Field(
        default="open",
        validation_alias="KAMIYO_WHEN_REDIS_DOWN",
        description="open: keep limiting in this process until Redis answers again; "
        "closed: refuse calls as temporarily unavailable.",
    )


class MeterSettings(Section):
    model_config = _section_config("KAMIYO_METER_")

    flush_s: float = Field(
        default=1.0, gt=0, description="How often recorded calls are written to the database."
    )


class StripeSettings(Section):
    model_config = _section_config("KAMIYO_STRIPE_")

    secret_key: SecretStr | None = None
    webhook_secret: SecretStr | None = Field(
        default=None, description="whsec_… secret Stripe signs webhook deliveries with."
    )
    prices: Annotated[
        dict[str, str], NoDecode, _json_setting('{"personal": "price_…", "team": "price_…"}')
    ] = Field(
        default_factory=dict,
        description='Stripe price id per paid tier, e.g. {"personal": "price_…", "team": …}.',
    )
    api_base: str | None = Field(
        default=None, description="Another Stripe API address (a local mock in tests)."
    )
    checkout_success_url: str | None = Field(
        default=None, validation_alias="KAMIYO_CHECKOUT_SUCCESS_URL"
    )
    checkout_cancel_url: str | None = Field(
        default=None, validation_alias="KAMIYO_CHECKOUT_CANCEL_URL"
    )
    portal_return_url: str | None = Field(default=None, validation_alias="KAMIYO_PORTAL_RETURN_URL")
    past_due_grace_days: float = Field(
        default=7,
        ge=0,
        validation_alias="KAMIYO_PAST_DUE_GRACE_DAYS",
        description="How long a failed payment keeps the paid tier.",
    )


class SmtpSettings(Section):
    """The mail server sign-up and welcome mails go through."""

    model_config = _section_config("KAMIYO_SMTP_")

    host: str | None = Field(default=None, description="Mail server; unset: no email.")
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    mail_from: str = Field(
        default="KAMIYO <no-reply@localhost>", validation_alias="KAMIYO_MAIL_FROM"
    )


class X402Settings(Section):
    """Pay per call."""

    model_config = _section_config("KAMIYO_X402_")

    networks: Annotated[
        list[AcceptedNetwork],
        NoDecode,
        _json_setting('[{"network": "eip155:8453", "pay_to": "0x…", "rpc_urls": ["https://…"]}]'),
    ] = Field(
        default_factory=list,
        description='Networks that take pay-per-call USDC, as JSON: [{"network": '
        '"eip155:8453", "pay_to": "0x…", "rpc_urls": ["https://…"]}, …]; empty: x402 off.',
    )
    facilitator_url: str | None = Field(
        default=None,
        description="An x402 facilitator that verifies and settles (its /verify and /settle); "
        "unset: KAMIYO verifies on chain and settles with its own relayer or fee payer.",
    )
    evm_relayer_key: SecretStr | None = Field(
        default=None, description="Private key that submits EVM settlements (pays gas)."
    )
    evm_relayer_key_file: Path | None = None
    svm_fee_payer_key: SecretStr | None = Field(
        default=None, description="Base58 Solana keypair that pays fees and co-signs."
    )
    svm_fee_payer_key_file: Path | None = None
    max_timeout_s: int = Field(
        default=300, ge=30, le=3600, description="How long a signed payment stays usable."
    )


class Settings(Section):
    """Every section, and the environment they run in."""

    model_config = _section_config("KAMIYO_")

    environment: Literal["development", "test", "production"] = "development"
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    site: SiteSettings = Field(default_factory=SiteSettings)
    answers: AnswerSettings = Field(default_factory=AnswerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    meter: MeterSettings = Field(default_factory=MeterSettings)
    stripe: StripeSettings = Field(default_factory=StripeSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    x402: X402Settings = Field(default_factory=X402Settings)

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
