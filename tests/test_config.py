import pytest

from kamiyo.config import DEVELOPMENT_SECRET, InsecureSettingsError, Settings

STRONG = "s" * 48
PG = "postgresql+asyncpg://kamiyo@db/kamiyo"


def test_development_defaults_to_sqlite_under_the_data_dir(tmp_path_factory: object) -> None:
    settings = Settings(_env_file=None)
    assert settings.resolved_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.resolved_database_url.endswith("kamiyo.db")
    assert settings.migrate_on_start is True


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAMIYO_DATABASE_URL", PG)
    monkeypatch.setenv("KAMIYO_LOG_FORMAT", "json")
    settings = Settings(_env_file=None)
    assert settings.resolved_database_url == PG
    assert settings.log_format == "json"


def test_dotenv_is_read(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    env = Path.cwd() / ".env"
    env.write_text("KAMIYO_LOG_LEVEL=DEBUG\n")
    assert Settings().log_level == "DEBUG"


def test_production_accepts_secure_settings() -> None:
    settings = Settings(
        environment="production",
        secret_key=STRONG,
        database_url=PG,
        stripe_secret_key="sk_live_abc",
        stripe_webhook_secret="whsec_abc",
        _env_file=None,
    )
    assert settings.migrate_on_start is False


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"secret_key": DEVELOPMENT_SECRET}, "public development default"),
        ({"secret_key": "short"}, "shorter than 32"),
        ({"database_url": None}, "KAMIYO_DATABASE_URL is not set"),
        ({"stripe_secret_key": "sk_test_123"}, "test-mode key"),
        ({"stripe_secret_key": "sk_live_123"}, "KAMIYO_STRIPE_WEBHOOK_SECRET is not set"),
    ],
)
def test_production_refuses_insecure_settings(changes: dict[str, object], reason: str) -> None:
    fields: dict[str, object] = {"secret_key": STRONG, "database_url": PG, **changes}
    with pytest.raises(InsecureSettingsError, match=reason) as caught:
        Settings(environment="production", _env_file=None, **fields)  # type: ignore[arg-type]
    assert STRONG not in str(caught.value)
    assert "sk_test_123" not in str(caught.value)


def test_secrets_do_not_show_in_repr() -> None:
    settings = Settings(secret_key=STRONG, stripe_secret_key="sk_live_zzz", _env_file=None)
    assert STRONG not in repr(settings)
    assert "sk_live_zzz" not in repr(settings)
