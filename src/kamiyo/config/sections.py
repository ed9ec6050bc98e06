"""The sections of the settings, one component each (the database, Stripe, x402, …)."""

from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    Field,
    SecretStr,
    field_validator,
)
from pydantic_settings import NoDecode
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from kamiyo.config.base import (
    DEVELOPMENT_SECRET,
    Section,
    json_setting,
    section_config,
)
from kamiyo.db.pooling import DEFAULT_POOL_SIZE


class DatabaseSettings(Section):
    model_config = section_config("KAMIYO_DATABASE_")

    url: str | None = Field(
        default=None,
        description="postgresql://… or sqlite:///…; unset means SQLite under data_dir.",
    )
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("kamiyo")),
        validation_alias="KAMIYO_DATA_DIR",
        description="Where the default SQLite file lives (default: the user data folder, "
        "~/.local/share/kamiyo on Linux).",
    )
    auto_migrate: bool | None = Field(
        default=None,
        validation_alias="KAMIYO_AUTO_MIGRATE",
        description="Upgrade the schema and load the bundled dataset on start; "
        "unset means yes except in production (run `kamiyo db upgrade` there).",
    )
    pool_size: int = Field(
        default=DEFAULT_POOL_SIZE,
        ge=1,
        le=1000,
        description="Database connections each process keeps open: at least the calls it "
        "serves at once, or each call past it opens and closes a connection of its own.",
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
    model_config = section_config("KAMIYO_LOG_")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="The lowest level logged (to stderr)."
    )
    format: Literal["pretty", "json"] = Field(
        default="pretty", description="Log lines for people or JSON; logs always go to stderr."
    )


MCP_PATH = "/mcp"  # where Streamable HTTP is served


class SiteSettings(Section):
    """Where KAMIYO lives and where it sends people."""

    model_config = section_config("KAMIYO_")

    public_url: str | None = Field(
        default=None,
        description="This server's public base URL (https://…): OAuth protected resource "
        "metadata, links in mails, Stripe's return pages; unset means the URL the request "
        "arrived on (and no sign-up).",
    )
    upgrade_url: str | None = Field(
        default=None, description="Where locked-tool messages send people to upgrade."
    )
    cors_origins: Annotated[list[str], NoDecode, json_setting('["https://app.example.com"]')] = (
        Field(
            default_factory=list,
            description="Origins whose web pages may call the REST API, as JSON: "
            '["https://app.example.com"], or ["*"] for any; empty: none (agents need no CORS).',
        )
    )

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None:
            _require_http_url(url, "https://kamiyo.example.com")
        return url

    @property
    def issuer_url(self) -> str | None:
        """The public URL as pydantic spells it, without a final '/': the OAuth issuer (RFC
        8414 compares it exactly), None when no public URL is set."""
        return str(AnyHttpUrl(self.public_url)).rstrip("/") if self.public_url else None

    @property
    def mcp_resource_url(self) -> str | None:
        """The ``/mcp`` endpoint's URL: the resource (RFC 8707) and audience of OAuth tokens."""
        return f"{self.issuer_url}{MCP_PATH}" if self.issuer_url else None


class AnswerSettings(Section):
    """How much one call returns, and how long identical calls share an answer."""

    model_config = section_config("KAMIYO_")

    max_results: int = Field(
        default=1000, ge=1, le=10000, description="The most incidents one call returns."
    )
    cache_ttl_s: float = Field(
        default=30, ge=0, description="How long identical calls share an answer; 0 disables."
    )
    cache_size: int = Field(default=4096, ge=1, description="How many answers are kept.")


def _rate_limit(value: str) -> str:
    """A limit in the ``limits`` library's notation: "300/minute", "20/second", "5000/hour"."""
    import limits  # only for a value set from outside: the defaults are not validated

    try:
        counted = limits.parse(value).amount
    except ValueError:
        counted = 0
    if counted < 1:
        raise ValueError(f"{value!r} is not a rate limit: write e.g. 300/minute, 5000/hour")
    return value


# A default is not validated (tests/test_cli_startup.py checks them once): loading the
# settings then needs no ``limits``, which costs a command line start ~0.1 s to import.
RateLimit = Annotated[str, AfterValidator(_rate_limit), Field(validate_default=False)]


class AuthSettings(Section):
    """Who a caller is: the signing secret, tokens, the identity cache, anonymous callers."""

    model_config = section_config("KAMIYO_")

    secret_key: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_SECRET),
        description="Signs tokens and payment references and derives the dashboard's CSRF key; "
        "production needs 32+ characters of its own.",
    )
    jwt_issuer: str = Field(default="kamiyo", description="The issuer tokens must name.")
    jwt_audience: str = Field(
        default="kamiyo", description="The audience tokens must name: this server's resource URL."
    )
    jwt_ttl_s: int = Field(
        default=3600, ge=60, le=30 * 24 * 3600, description="Seconds issued tokens live."
    )
    allow_anonymous: bool = Field(
        default=True, description="Serve callers without a credential on the free tier."
    )
    tier_cache_s: float = Field(
        default=5, ge=0, description="How long a credential's account and tier are remembered."
    )
    authorization_servers: Annotated[
        list[str], NoDecode, json_setting('["https://auth.example.com"]')
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

    oauth_allow_loopback_clients: bool = Field(
        default=False,
        description="Fetch OAuth client metadata documents from loopback addresses, over plain "
        "http too: for tests; production refuses it.",
    )
    oauth_refresh_ttl_s: int = Field(
        default=30 * 24 * 3600,
        ge=3600,
        description="How long an OAuth refresh token lasts unused (each use replaces it).",
    )
    # Per client address, shared across instances (Redis when configured). Hosted connectors
    # (Claude, ChatGPT) register and refresh for all their users from a few vendor addresses,
    # so those two are generous; authorize comes from each person's browser.
    oauth_register_limit: RateLimit = Field("300/minute", description="Registrations per address.")
    oauth_authorize_limit: RateLimit = Field("120/minute", description="Authorize per address.")
    oauth_token_limit: RateLimit = Field("1200/minute", description="Token requests per address.")
    oauth_revoke_limit: RateLimit = Field("600/minute", description="Revocations per address.")
    oauth_prune_every_s: float = Field(
        default=3600,
        ge=0,
        description="How often a serving instance deletes expired OAuth codes and tokens and "
        "stale clients; 0: only `kamiyo oauth prune` does.",
    )
    oauth_stale_client_days: int = Field(
        default=30, ge=1, description="Days before a registered OAuth client never granted goes."
    )

    # The credential a stdio server presents for its user (HTTP callers send their own).
    api_key: SecretStr | None = Field(
        default=None, description="The API key a stdio server presents for its user."
    )
    token: SecretStr | None = Field(
        default=None, description="The access token a stdio server presents for its user."
    )


class RedisSettings(Section):
    """The Redis every instance shares (rate limits and quotas)."""

    model_config = section_config("KAMIYO_REDIS_")

    url: str | None = Field(
        default=None,
        description="redis://host:port/db shared by every instance for rate limits and "
        "quotas; unset means limits are kept in this process only.",
    )
    prefix: str = Field(
        default="kamiyo", min_length=1, max_length=64, description="Prefix of KAMIYO's Redis keys."
    )
    when_down: Literal["open", "closed"] = Field(
        default="open",
        validation_alias="KAMIYO_WHEN_REDIS_DOWN",
        description="open: keep limiting in this process until Redis answers again; "
        "closed: refuse calls as temporarily unavailable.",
    )


class MeterSettings(Section):
    model_config = section_config("KAMIYO_METER_")

    flush_s: float = Field(
        default=1.0, gt=0, description="How often recorded calls are written to the database."
    )


class StripeSettings(Section):
    model_config = section_config("KAMIYO_STRIPE_")

    secret_key: SecretStr | None = Field(
        default=None, description="Stripe secret key (sk_…); production refuses test-mode keys."
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="whsec_… secret Stripe signs webhook deliveries with."
    )
    prices: Annotated[
        dict[str, str], NoDecode, json_setting('{"personal": "price_…", "team": "price_…"}')
    ] = Field(
        default_factory=dict,
        description='Stripe price id per paid tier, e.g. {"personal": "price_…", "team": …}.',
    )
    api_base: str | None = Field(
        default=None, description="Another Stripe API address (a local mock in tests)."
    )
    checkout_success_url: str | None = Field(
        default=None,
        validation_alias="KAMIYO_CHECKOUT_SUCCESS_URL",
        description="Where Stripe sends people after paying; unset: the dashboard.",
    )
    checkout_cancel_url: str | None = Field(
        default=None,
        validation_alias="KAMIYO_CHECKOUT_CANCEL_URL",
        description="Where Stripe sends people who cancel; unset: the dashboard.",
    )
    portal_return_url: str | None = Field(
        default=None,
        validation_alias="KAMIYO_PORTAL_RETURN_URL",
        description="Where Stripe's customer portal sends people back; unset: the dashboard.",
    )
    past_due_grace_days: float = Field(
        default=7,
        ge=0,
        validation_alias="KAMIYO_PAST_DUE_GRACE_DAYS",
        description="How long a failed payment keeps the paid tier.",
    )


class SmtpSettings(Section):
    """The mail server sign-up and welcome mails go through."""

    model_config = section_config("KAMIYO_SMTP_")

    host: str | None = Field(default=None, description="Mail server; unset: no email.")
    port: int = Field(default=587, ge=1, le=65535, description="The mail server's port.")
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="How the connection to the mail server is secured."
    )
    username: str | None = Field(default=None, description="Mail server log-in name.")
    password: SecretStr | None = Field(default=None, description="Mail server password.")
    mail_from: str = Field(
        default="KAMIYO <no-reply@localhost>",
        validation_alias="KAMIYO_MAIL_FROM",
        description="Sender of sign-up and welcome mail.",
    )
