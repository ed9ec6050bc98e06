"""How a process stops (the shutdown deadline) and how long usage records are kept."""

from pydantic import Field, SecretStr

from kamiyo.config.base import Section, section_config


class ShutdownSettings(Section):
    """What SIGTERM/SIGINT (or EOF on stdio) leaves calls in flight to finish."""

    model_config = section_config("KAMIYO_SHUTDOWN_")

    grace_s: float = Field(
        default=20,
        gt=0,
        le=600,
        description="Seconds calls in flight have to finish once stopping begins (streams are "
        "told to go at once); what still runs then is cancelled, counted in the log, and the "
        "process exits with status 1. Keep it below the container stop timeout (Docker: 10 s "
        "unless stop_grace_period is raised; Kubernetes: 30 s).",
    )
    close_s: float = Field(
        default=5,
        gt=0,
        le=120,
        description="Seconds each closing step after the calls (the meter's last write, "
        "closing the database pool) may take; a step still running then is cut and logged "
        "(events the meter could not write are counted in the log). The grace plus twice this "
        "should stay below the container stop timeout.",
    )


class RetentionSettings(Section):
    """How long usage records are kept raw and as daily totals (``kamiyo usage prune``)."""

    model_config = section_config("KAMIYO_USAGE_")

    raw_days: int = Field(
        default=30,
        ge=1,
        description="Days usage records are kept one per call; older ones are folded into daily "
        "totals per account, tool and status, and a signed checkpoint keeps each chain "
        "verifiable.",
    )
    daily_days: int = Field(
        default=365,
        ge=1,
        description="Days the daily totals of pruned usage are kept (12 months by default).",
    )
    prune_every_s: float = Field(
        default=24 * 3600,
        ge=0,
        description="How often `kamiyo worker` prunes usage; 0: only `kamiyo usage prune "
        "--apply` does.",
    )
    checkpoint_key: SecretStr | None = Field(
        default=None,
        description="Signs (HMAC-SHA256) the checkpoints that stand for pruned usage records; "
        "unset: a key derived from KAMIYO_SECRET_KEY. Changing it makes old checkpoints fail "
        "`kamiyo usage verify`.",
    )
