"""The change bus across instances: what one instance publishes, every instance hears."""

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo import intel
from kamiyo.alerts.bus import Event, MemoryBus, change_bus
from kamiyo.alerts.events import AlertMatch, ChangeKind, IncidentChange
from kamiyo.alerts.redis_bus import RedisBus
from kamiyo.config import RedisSettings, Settings
from kamiyo.intel.models import Incident
from tests.test_config_errors import closed_port

pytestmark = pytest.mark.anyio


@pytest.fixture
async def ronin(session: AsyncSession) -> Incident:
    incident = await intel.get_incident(session, "20220329_ronin-network")
    assert incident is not None
    return incident


def change(incident: Incident, incident_id: str) -> IncidentChange:
    renamed = incident.model_copy(update={"id": incident_id})
    return IncidentChange(change=ChangeKind.CREATED, incident=renamed)


def incident_id(event: Event) -> str:
    assert isinstance(event, IncidentChange)
    return event.incident.id


def settings(redis: dict[str, str]) -> Settings:
    return Settings(environment="test", redis=RedisSettings.model_validate(redis), _env_file=None)


async def test_every_instance_hears_each_change_once(
    redis_settings: dict[str, str], ronin: Incident
) -> None:
    async with change_bus(settings(redis_settings)) as a, change_bus(settings(redis_settings)) as b:
        assert isinstance(a, RedisBus)
        assert isinstance(b, RedisBus)
        heard_a: list[str] = []
        heard_b: list[str] = []
        a.subscribe(lambda c: heard_a.append(incident_id(c)))
        b.subscribe(lambda c: heard_b.append(incident_id(c)))
        await asyncio.wait_for(asyncio.gather(a.connected.wait(), b.connected.wait()), 5)
        await a.publish(change(ronin, "one"))
        await b.publish(change(ronin, "two"))
        async with asyncio.timeout(5):
            while len(heard_a) < 2 or len(heard_b) < 2:  # noqa: ASYNC110 - two lists to fill
                await asyncio.sleep(0.01)
        assert sorted(heard_a) == sorted(heard_b) == ["one", "two"]


async def test_a_rule_match_crosses_as_itself(redis_settings: dict[str, str]) -> None:
    async with change_bus(settings(redis_settings)) as a, change_bus(settings(redis_settings)) as b:
        assert isinstance(a, RedisBus)
        assert isinstance(b, RedisBus)
        heard: list[Event] = []
        b.subscribe(heard.append)
        await asyncio.wait_for(asyncio.gather(a.connected.wait(), b.connected.wait()), 5)
        match = AlertMatch(alert_id="alr_x", account_pk=7, incident_id="20250101_x")
        await a.publish(match)
        async with asyncio.timeout(5):
            while not heard:  # noqa: ASYNC110 - a list to fill
                await asyncio.sleep(0.01)
        assert heard == [match]


async def test_other_prefixes_are_other_deployments(
    redis_settings: dict[str, str], ronin: Incident
) -> None:
    other = {**redis_settings, "prefix": redis_settings["prefix"] + "_other"}
    async with change_bus(settings(redis_settings)) as a, change_bus(settings(other)) as b:
        assert isinstance(a, RedisBus)
        assert isinstance(b, RedisBus)
        heard: list[str] = []
        b.subscribe(lambda c: heard.append(incident_id(c)))
        await asyncio.wait_for(asyncio.gather(a.connected.wait(), b.connected.wait()), 5)
        await a.publish(change(ronin, "x"))
        await asyncio.sleep(0.3)
        assert heard == []


async def test_without_redis_this_instance_still_hears(ronin: Incident) -> None:
    bus = RedisBus(f"redis://127.0.0.1:{closed_port()}/0", "kamiyo_test_down")
    heard: list[str] = []
    bus.subscribe(lambda c: heard.append(incident_id(c)))
    await bus.publish(change(ronin, "x"))
    await bus.aclose()
    assert heard == ["x"]


async def test_no_redis_configured_is_the_memory_bus() -> None:
    async with change_bus(Settings(environment="test", _env_file=None)) as bus:
        assert isinstance(bus, MemoryBus)
