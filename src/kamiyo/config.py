"""One settings object for the whole product, read from ``KAMIYO_*`` variables and ``.env``."""

from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

import platformdirs
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kamiyo.chains import AcceptedNetwork

# The development secret is public (it is in this file), so production refuses it.
DEVELOPMENT_SECRET = "kamiyo-development-secret-do-not-use-in-production"  # noqa: S105
MIN_SECRET_LENGTH = 32


class InsecureSettingsError(RuntimeError):
    """Production was asked to start with settings that would expose it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KAMIYO_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        hide_input_in_errors=True,  # errors must never echo a secret back
    )

    environment: Literal["development", "test", "production"] = "development"
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; unset means SQLite under data_dir.",
    )
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("kamiyo")))
    auto_migrate: bool | None = Field(
        default=None,
        description="Upgrade the schema and load the bundled dataset on start; "
        "unset means yes except in production (run `kamiyo db upgrade` there).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["pretty", "json"] = "pretty"
    secret_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = Field(
        default=None, description="whsec_… secret Stripe signs webhook deliveries with."
    )
    stripe_prices: dict[str, str] = Field(
        default_factory=dict,
        description='Stripe price id per paid tier, e.g. {"personal": "price_…", "team": …}.',
    )
    stripe_api_base: str | None = Field(
        default=None, description="Another Stripe API address (a local mock in tests)."
    )
    checkout_success_url: str | None = None
    checkout_cancel_url: str | None = None
    portal_return_url: str | None = None
    past_due_grace_days: float = Field(
        default=7, ge=0, description="How long a failed payment keeps the paid tier."
    )
    smtp_host: str | None = Field(default=None, description="Mail server; unset: no email.")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    mail_from: str = "KAMIYO <no-reply@localhost>"
    max_results: int = Field(default=1000, ge=1, le=10000)
    cache_ttl_s: float = Field(
        default=30, ge=0, description="How long identical calls share an answer; 0 disables."
    )
    cache_size: int = Field(default=4096, ge=1)
    allow_anonymous: bool = Field(
        default=True, description="Serve callers without a credential on the free tier."
    )
    upgrade_url: str | None = Field(
        default=None, description="Where locked-tool messages send people to upgrade."
    )
    tier_cache_s: float = Field(
        default=5, ge=0, description="How long a credential's account and tier are remembered."
    )
    jwt_issuer: str = "kamiyo"
    jwt_audience: str = Field(
        default="kamiyo", description="The audience tokens must name: this server's resource URL."
    )
    jwt_ttl_s: int = Field(default=3600, ge=60, le=30 * 24 * 3600)
    redis_url: str | None = Field(
        default=None,
        description="redis://host:port/db shared by every instance for rate limits and "
        "quotas; unset means limits are kept in this process only.",
    )
    redis_prefix: str = Field(default="kamiyo", min_length=1, max_length=64)
    when_redis_down: Literal["open", "closed"] = Field(
        default="open",
        description="open: keep limiting in this process until Redis answers again; "
        "closed: refuse calls as temporarily unavailable.",
    )
    meter_flush_s: float = Field(
        default=1.0, gt=0, description="How often recorded calls are written to the database."
    )
    public_url: str | None = Field(
        default=None,
        description="This server's public base URL (https://…), used in OAuth protected "
        "resource metadata; unset means the URL the request arrived on.",
    )
    authorization_servers: list[str] = Field(
        default_factory=list,
        description="OAuth authorization servers that issue tokens for this resource.",
    )
    x402_networks: list[AcceptedNetwork] = Field(
        default_factory=list,
        description='Networks that take pay-per-call USDC, as JSON: [{"network": '
        '"eip155:8453", "pay_to": "0x…", "rpc_urls": ["https://…"]}, …]; empty: x402 off.',
    )
    x402_facilitator_url: str | None = Field(
        default=None,
        description="An x402 facilitator that verifies and settles (its /verify and /settle); "
        "unset: KAMIYO verifies on chain and settles with its own relayer or fee payer.",
    )
    x402_evm_relayer_key: SecretStr | None = Field(
        default=None, description="Private key that submits EVM settlements (pays gas)."
    )
    x402_evm_relayer_key_file: Path | None = None
    x402_svm_fee_payer_key: SecretStr | None = Field(
        default=None, description="Base58 Solana keypair that pays fees and co-signs."
    )
    x402_svm_fee_payer_key_file: Path | None = None
    x402_max_timeout_s: int = Field(
        default=300, ge=30, le=3600, description="How long a signed payment stays usable."
    )
    # The credential a stdio server presents for its user (HTTP callers send their own).
    api_key: SecretStr | None = None
    token: SecretStr | None = None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'kamiyo.db'}"

    @property
    def migrate_on_start(self) -> bool:
        if self.auto_migrate is not None:
            return self.auto_migrate
        return self.environment != "production"

    def insecure_reasons(self) -> list[str]:
        """Why these settings are unfit for production (empty when they are fit)."""
        reasons: list[str] = []
        secret = self.secret_key.get_secret_value()
        if secret == DEVELOPMENT_SECRET:
            reasons.append("KAMIYO_SECRET_KEY is the public development default")
        elif len(secret) < MIN_SECRET_LENGTH:
            reasons.append(f"KAMIYO_SECRET_KEY is shorter than {MIN_SECRET_LENGTH} characters")
        if not self.database_url:
            reasons.append("KAMIYO_DATABASE_URL is not set (production needs an explicit database)")
        stripe_key = self.stripe_secret_key.get_secret_value() if self.stripe_secret_key else ""
        if stripe_key.startswith(("sk_test_", "rk_test_")):
            reasons.append("KAMIYO_STRIPE_SECRET_KEY is a Stripe test-mode key")
        if stripe_key and not self.stripe_webhook_secret:
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
