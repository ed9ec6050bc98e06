"""What a call adds to /metrics, by the gate that saw it: the open gate counts (without usage
records), a gate refusal and a mid-call database outage are two refusal reasons, and only
admitted calls are timed. Read from the process's registry, before and after each call."""

from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from kamiyo import metrics
from kamiyo.access.account_gate import UNKNOWN_TIER, AccountGate
from kamiyo.access.gate import OPEN_TIER, Call, Grant, OpenGate
from kamiyo.config import DatabaseSettings, Settings
from kamiyo.service.catalogue import target

pytestmark = pytest.mark.anyio

TOOL = "search_exploits"


@pytest.fixture(autouse=True)
def _catalogue_declared() -> None:
    """As a server does at start: the tool label takes catalogue names only."""
    metrics.declare_series([TOOL], [])


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def snapshot(tier: str, status: str) -> dict[str, float]:
    return {
        "calls": sample("kamiyo_tool_calls_total", tool=TOOL, tier=tier, status=status),
        "timed": sample("kamiyo_tool_call_seconds_count", tool=TOOL),
        "gate unavailable": sample("kamiyo_refusals_total", reason="unavailable"),
        "mid-call outage": sample("kamiyo_refusals_total", reason="database_outage"),
    }


def added(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in before if after[name] != before[name]}


async def test_the_open_gate_counts_its_calls_and_times_the_admitted_ones() -> None:
    gate = OpenGate(max_results=10)
    before = snapshot(OPEN_TIER, "ok")
    call = Call(target(TOOL))
    grant = await gate.admit(call)
    assert isinstance(grant, Grant)
    await gate.complete(call, grant, "ok")
    assert added(before, snapshot(OPEN_TIER, "ok")) == {"calls": 1, "timed": 1}
    before = snapshot(OPEN_TIER, "invalid")
    assert await gate.count_invalid(Call(target(TOOL))) is None  # answered with the error
    # Refused before it ran (its arguments): counted, not timed.
    assert added(before, snapshot(OPEN_TIER, "invalid")) == {"calls": 1}


async def test_a_gate_refusal_and_a_mid_call_outage_are_two_reasons(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
    settings = Settings(database=DatabaseSettings(url=url), environment="test", _env_file=None)
    gate = AccountGate(settings)  # metering only: nothing here reaches the database

    before = snapshot(UNKNOWN_TIER, "unavailable")
    gate.record_unavailable(Call(target(TOOL)))  # the gate could not identify the caller
    assert added(before, snapshot(UNKNOWN_TIER, "unavailable")) == {
        "calls": 1,
        "gate unavailable": 1,  # refused before anything ran: not timed
    }

    before = snapshot("team", "unavailable")
    grant = Grant(tier="team", max_results=10)
    await gate.complete(Call(target(TOOL)), grant, "unavailable")  # the database went mid-call
    assert added(before, snapshot("team", "unavailable")) == {
        "calls": 1,
        "timed": 1,
        "mid-call outage": 1,
    }
