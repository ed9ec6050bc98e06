from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from kamiyo.config import (
    DEVELOPMENT_SECRET,
    AuthSettings,
    DatabaseSettings,
    InsecureSettingsError,
    Section,
    Settings,
    StripeSettings,
    async_database_url,
    describe_settings_error,
)

STRONG = "s" * 48
PG = "postgresql+asyncpg://kamiyo@db/kamiyo"


def test_development_defaults_to_sqlite_under_the_data_dir() -> None:
    settings = Settings(_env_file=None)
    assert settings.database.resolved_url.startswith("sqlite+aiosqlite:///")
    assert settings.database.resolved_url.endswith("kamiyo.db")
    assert settings.migrate_on_start is True


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAMIYO_DATABASE_URL", PG)
    monkeypatch.setenv("KAMIYO_LOG_FORMAT", "json")
    settings = Settings(_env_file=None)
    assert settings.database.resolved_url == PG
    assert settings.log.format == "json"


# Every variable of the README's table lands in its section under the name it always had.
VARIABLES = [
    ("KAMIYO_ENVIRONMENT", "test", lambda s: s.environment, "test"),
    ("KAMIYO_DATA_DIR", "/srv/kamiyo", lambda s: s.database.data_dir, Path("/srv/kamiyo")),
    ("KAMIYO_AUTO_MIGRATE", "false", lambda s: s.database.auto_migrate, False),
    ("KAMIYO_LOG_LEVEL", "ERROR", lambda s: s.log.level, "ERROR"),
    ("KAMIYO_SECRET_KEY", STRONG, lambda s: s.auth.secret_key.get_secret_value(), STRONG),
    ("KAMIYO_STRIPE_WEBHOOK_SECRET", "whsec_1", lambda s: s.stripe.webhook_secret, "whsec_1"),
    ("KAMIYO_STRIPE_PRICES", '{"team": "price_t"}', lambda s: s.stripe.prices, {"team": "price_t"}),
    ("KAMIYO_CHECKOUT_SUCCESS_URL", "https://a", lambda s: s.stripe.checkout_success_url, "https://a"),
    ("KAMIYO_CHECKOUT_CANCEL_URL", "https://b", lambda s: s.stripe.checkout_cancel_url, "https://b"),
    ("KAMIYO_PORTAL_RETURN_URL", "https://c", lambda s: s.stripe.portal_return_url, "https://c"),
    ("KAMIYO_PAST_DUE_GRACE_DAYS", "3", lambda s: s.stripe.past_due_grace_days, 3),
    ("KAMIYO_SMTP_HOST", "mail.example", lambda s: s.smtp.host, "mail.example"),
    ("KAMIYO_SMTP_PORT", "2525", lambda s: s.smtp.port, 2525),
    ("KAMIYO_SMTP_SECURITY", "tls", lambda s: s.smtp.security, "tls"),
    ("KAMIYO_SMTP_USERNAME", "u", lambda s: s.smtp.username, "u"),
    ("KAMIYO_MAIL_FROM", "K <k@example.com>", lambda s: s.smtp.mail_from, "K <k@example.com>"),
    ("KAMIYO_API_KEY", "kmy_1", lambda s: s.auth.api_key, "kmy_1"),
    ("KAMIYO_TOKEN", "eyJ", lambda s: s.auth.token, "eyJ"),
    ("KAMIYO_MAX_RESULTS", "5", lambda s: s.answers.max_results, 5),
    ("KAMIYO_CACHE_TTL_S", "0", lambda s: s.answers.cache_ttl_s, 0),
    ("KAMIYO_ALLOW_ANONYMOUS", "false", lambda s: s.auth.allow_anonymous, False),
    ("KAMIYO_TIER_CACHE_S", "1", lambda s: s.auth.tier_cache_s, 1),
    ("KAMIYO_UPGRADE_URL", "https://u", lambda s: s.site.upgrade_url, "https://u"),
    ("KAMIYO_JWT_AUDIENCE", "https://k/mcp", lambda s: s.auth.jwt_audience, "https://k/mcp"),
    ("KAMIYO_JWT_ISSUER", "iss", lambda s: s.auth.jwt_issuer, "iss"),
    ("KAMIYO_JWT_TTL_S", "120", lambda s: s.auth.jwt_ttl_s, 120),
    ("KAMIYO_REDIS_URL", "redis://r:6379/0", lambda s: s.redis.url, "redis://r:6379/0"),
    ("KAMIYO_REDIS_PREFIX", "p", lambda s: s.redis.prefix, "p"),
    ("KAMIYO_WHEN_REDIS_DOWN", "closed", lambda s: s.redis.when_down, "closed"),
    ("KAMIYO_METER_FLUSH_S", "2.5", lambda s: s.meter.flush_s, 2.5),
    ("KAMIYO_PUBLIC_URL", "https://k", lambda s: s.site.public_url, "https://k"),
    ("KAMIYO_AUTHORIZATION_SERVERS", '["https://a"]', lambda s: s.auth.authorization_servers, ["https://a"]),
    ("KAMIYO_X402_FACILITATOR_URL", "https://f", lambda s: s.x402.facilitator_url, "https://f"),
    ("KAMIYO_X402_EVM_RELAYER_KEY_FILE", "/k", lambda s: s.x402.evm_relayer_key_file, Path("/k")),
    ("KAMIYO_X402_MAX_TIMEOUT_S", "60", lambda s: s.x402.max_timeout_s, 60),
    ("KAMIYO_X402_EVM_NONCE_LEASE_S", "5", lambda s: s.x402.evm_nonce_lease_s, 5),
    (
        "KAMIYO_X402_EVM_RPC_REQUESTS_PER_SECOND",
        "8",
        lambda s: s.x402.evm_rpc_requests_per_second,
        8,
    ),
    ("KAMIYO_HTTP_HEAD_TIMEOUT_S", "3", lambda s: s.http.head_timeout_s, 3),
    ("KAMIYO_HTTP_BODY_TIMEOUT_S", "4", lambda s: s.http.body_timeout_s, 4),
    ("KAMIYO_HTTP_BODY_MIN_RATE", "100", lambda s: s.http.body_min_rate, 100),
    ("KAMIYO_HTTP_KEEP_ALIVE_S", "2", lambda s: s.http.keep_alive_s, 2),
    ("KAMIYO_HTTP_SEND_TIMEOUT_S", "9", lambda s: s.http.send_timeout_s, 9),
    ("KAMIYO_HTTP_MAX_CONNECTIONS", "50", lambda s: s.http.max_connections, 50),
    ("KAMIYO_HTTP_MAX_CONNECTIONS_PER_CLIENT", "5", lambda s: s.http.max_connections_per_client, 5),
    ("KAMIYO_HTTP_MAX_STREAMS", "7", lambda s: s.http.max_streams, 7),
    ("KAMIYO_HTTP_MAX_STREAMS_PER_CLIENT", "1", lambda s: s.http.max_streams_per_client, 1),
    ("KAMIYO_HTTP_ANONYMOUS_STREAM_S", "60", lambda s: s.http.anonymous_stream_s, 60),
    ("KAMIYO_EXPLORER_URLS", '{"base": "https://b/api"}', lambda s: s.explorers.urls, {"base": "https://b/api"}),
    ("KAMIYO_ETHERSCAN_API_KEY", "k1", lambda s: s.explorers.etherscan_api_key, "k1"),
    ("KAMIYO_SOLANA_RPC_URLS", '["https://r"]', lambda s: s.explorers.solana_rpc_urls, ["https://r"]),
    ("KAMIYO_EXPLORER_DEFAULTS", "false", lambda s: s.explorers.defaults, False),
    ("KAMIYO_EXPLORER_BUDGET_S", "8", lambda s: s.explorers.budget_s, 8),
    ("KAMIYO_EXPLORER_CACHE_TTL_S", "0", lambda s: s.explorers.cache_ttl_s, 0),
    ("KAMIYO_EXPLORER_TIMEOUT_S", "3", lambda s: s.explorers.timeout_s, 3),
    ("KAMIYO_EXPLORER_CALLS_PER_SECOND", "2", lambda s: s.explorers.calls_per_second, 2),
    ("KAMIYO_EXPLORER_MAX_PAGES", "4", lambda s: s.explorers.max_pages, 4),
    ("KAMIYO_EXPLORER_ALLOW_PRIVATE", "true", lambda s: s.explorers.allow_private, True),
    ("KAMIYO_ALERTS_WORKER", "false", lambda s: s.alerts.worker, False),
    ("KAMIYO_ALERTS_POLL_S", "0.2", lambda s: s.alerts.poll_s, 0.2),
    ("KAMIYO_ALERTS_LEASE_S", "5", lambda s: s.alerts.lease_s, 5),
    ("KAMIYO_WEBHOOKS_ALLOW_LOOPBACK", "true", lambda s: s.webhooks.allow_loopback, True),
    ("KAMIYO_OAUTH_ALLOW_LOOPBACK_CLIENTS", "1", lambda s: s.auth.oauth_allow_loopback_clients, 1),
    ("KAMIYO_OAUTH_REFRESH_TTL_S", "7200", lambda s: s.auth.oauth_refresh_ttl_s, 7200),
    ("KAMIYO_WEBHOOKS_TIMEOUT_S", "2.5", lambda s: s.webhooks.timeout_s, 2.5),
    ("KAMIYO_WEBHOOKS_MAX_RESPONSE_BYTES", "1024", lambda s: s.webhooks.max_response_bytes, 1024),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "value", "read", "expected"), VARIABLES, ids=[v[0] for v in VARIABLES]
)
def test_each_variable_reaches_its_section(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, read: object, expected: object
) -> None:
    monkeypatch.setenv(name, value)
    got = read(Settings(_env_file=None))  # type: ignore[operator]
    assert (got.get_secret_value() if isinstance(got, SecretStr) else got) == expected


def test_dotenv_is_read_by_every_section() -> None:
    (Path.cwd() / ".env").write_text(
        'KAMIYO_LOG_LEVEL=DEBUG\nKAMIYO_STRIPE_PRICES={"team": "price_t"}\n'
        "KAMIYO_MAIL_FROM=K <k@example.com>\n"
    )
    settings = Settings()
    assert settings.log.level == "DEBUG"
    assert settings.stripe.prices == {"team": "price_t"}
    assert settings.smtp.mail_from == "K <k@example.com>"
    # No .env means none in any section, also for a section given as a dict.
    bare = Settings(_env_file=None, stripe={"api_base": "http://127.0.0.1:1"})
    assert bare.log.level == "INFO"
    assert bare.stripe.prices == {}
    assert bare.stripe.api_base == "http://127.0.0.1:1"


def test_a_section_is_built_by_field_name_too() -> None:
    stripe = StripeSettings(checkout_success_url="https://a", past_due_grace_days=2, _env_file=None)
    assert (stripe.checkout_success_url, stripe.past_due_grace_days) == ("https://a", 2)


def test_with_changes_copies_sections() -> None:
    base = Settings(_env_file=None)
    changed = base.with_changes(auth={"tier_cache_s": 0}, site={"upgrade_url": "https://u"})
    assert (changed.auth.tier_cache_s, changed.site.upgrade_url) == (0, "https://u")
    assert (base.auth.tier_cache_s, base.site.upgrade_url) == (5, None)
    # The flat names of before would be set beside the sections and read by nobody.
    with pytest.raises(TypeError, match="tier_cache_s"):
        base.model_copy(update={"tier_cache_s": 0})


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://kamiyo@db/kamiyo", "postgresql+asyncpg://kamiyo@db/kamiyo"),
        ("postgres://kamiyo:pw@db:5433/kamiyo", "postgresql+asyncpg://kamiyo:pw@db:5433/kamiyo"),
        ("postgresql+asyncpg://kamiyo@db/kamiyo", "postgresql+asyncpg://kamiyo@db/kamiyo"),
        ("sqlite:////tmp/k.db", "sqlite+aiosqlite:////tmp/k.db"),
        ("sqlite+aiosqlite:///k.db", "sqlite+aiosqlite:///k.db"),
    ],
)
def test_a_database_url_gets_the_async_driver(given: str, used: str) -> None:
    assert async_database_url(given) == used
    assert DatabaseSettings(url=given, _env_file=None).resolved_url == used


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql+psycopg2://u:hunter2@db/k", "names the postgresql+psycopg2 driver"),
        ("mysql://u:hunter2@db/k", "names a mysql database"),
        ("hunter2", "is not a database URL"),
    ],
)
def test_an_unusable_database_url_names_the_variable_not_the_password(url: str, says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DatabaseSettings(url=url, _env_file=None)
    line = describe_settings_error(caught.value)
    assert line.startswith("KAMIYO_DATABASE_URL")
    assert says in line
    assert "postgresql://" in line  # says what to write instead
    assert "hunter2" not in line
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KAMIYO_X402_NETWORKS", "[{zzsecret"),
        ("KAMIYO_STRIPE_PRICES", "notjson-zzsecret"),
        ("KAMIYO_AUTHORIZATION_SERVERS", '["https://zzsecret",'),
    ],
)
def test_malformed_json_is_one_line_without_the_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)
    line = describe_settings_error(caught.value)
    assert line.startswith(f"{name} is not valid JSON: expected ")
    assert "\n" not in line
    assert "zzsecret" not in line
    assert "zzsecret" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("KAMIYO_WHEN_REDIS_DOWN", "maybe", ": Input should be 'open' or 'closed'"),
        ("KAMIYO_X402_NETWORKS", '[{"network": "eip155:8453"}]', "[0].pay_to: Field required"),
        ("KAMIYO_SMTP_PORT", "0", ": Input should be greater than or equal to 1"),
        ("KAMIYO_ENVIRONMENT", "prod", ": Input should be 'development', 'test' or 'production'"),
    ],
)  # fmt: skip
def test_other_mistakes_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, line: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)
    assert describe_settings_error(caught.value) == name + line


def test_production_accepts_secure_settings() -> None:
    settings = Settings(
        environment="production",
        auth=AuthSettings(secret_key=STRONG),
        database=DatabaseSettings(url=PG),
        stripe=StripeSettings(secret_key="sk_live_abc", webhook_secret="whsec_abc"),
        _env_file=None,
    )
    assert settings.migrate_on_start is False


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"auth": {"secret_key": DEVELOPMENT_SECRET}}, "public development default"),
        ({"auth": {"secret_key": "short"}}, "shorter than 32"),
        ({"database": {"url": None}}, "KAMIYO_DATABASE_URL is not set"),
        ({"stripe": {"secret_key": "sk_test_123"}}, "test-mode key"),
        ({"stripe": {"secret_key": "sk_live_123"}}, "KAMIYO_STRIPE_WEBHOOK_SECRET is not set"),
        ({"webhooks": {"allow_loopback": True}}, "KAMIYO_WEBHOOKS_ALLOW_LOOPBACK is true"),
        (
            {"auth": {"oauth_allow_loopback_clients": True}},
            "KAMIYO_OAUTH_ALLOW_LOOPBACK_CLIENTS is true",
        ),
    ],
)
def test_production_refuses_insecure_settings(
    changes: dict[str, dict[str, object]], reason: str
) -> None:
    fields: dict[str, dict[str, object]] = {
        "auth": {"secret_key": STRONG},
        "database": {"url": PG},
        **changes,
    }
    with pytest.raises(InsecureSettingsError, match=reason) as caught:
        Settings(environment="production", _env_file=None, **fields)
    assert STRONG not in str(caught.value)
    assert "sk_test_123" not in str(caught.value)


def test_secrets_do_not_show_in_repr() -> None:
    settings = Settings(
        auth=AuthSettings(secret_key=STRONG),
        stripe=StripeSettings(secret_key="sk_live_zzz"),
        _env_file=None,
    )
    assert STRONG not in repr(settings)
    assert "sk_live_zzz" not in repr(settings)


def test_every_section_hides_input_in_errors() -> None:
    sections: list[type[Section]] = [*Settings.SECTIONS.values(), Settings]
    for section in sections:
        assert section.model_config.get("hide_input_in_errors") is True, section.__name__
        assert section.model_config.get("env_file") == ".env", section.__name__
    assert set(Settings.SECTIONS) == {
        "database", "log", "site", "answers", "auth", "redis", "meter", "stripe", "smtp", "x402",
        "http", "sources", "explorers", "alerts", "webhooks", "metrics", "tracing",
        "shutdown", "usage",
    }  # fmt: skip
