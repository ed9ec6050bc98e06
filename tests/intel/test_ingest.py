import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo import intel
from kamiyo.db.tables import Incident, IncidentAddress
from kamiyo.intel.ingest import replace_incidents
from kamiyo.intel.models import AddressFact, IncidentRecord, SourceFact
from kamiyo.intel.vocabulary import AddressRole, AttackType

pytestmark = pytest.mark.anyio


@pytest.fixture
def session(migrated_session: AsyncSession) -> AsyncSession:
    return migrated_session


ATTACKER = "0x" + "ab" * 20


def _record(**changes: object) -> IncidentRecord:
    base = IncidentRecord(
        id="20250101_testprotocol",
        date=dt.date(2025, 1, 1),
        protocol="TestProtocol",
        chains=["ethereum"],
        loss_usd=1_000_000,
        loss_usd_basis="usd",
        loss_text="$1M",
        attack_type_raw="Reentrancy in withdraw",
        description="The vault paid out before it updated balances.",
        addresses=[AddressFact(role=AddressRole.ATTACKER, chain="ethereum", address=ATTACKER)],
        references=["https://twitter.com/peckshield/status/1"],
        source=SourceFact(name="test"),
    )
    return base.model_copy(update=changes)


async def test_replace_keeps_one_row_per_id_and_reindexes(session: AsyncSession) -> None:
    await replace_incidents(session, [_record()])
    await session.commit()
    await replace_incidents(
        session,
        [_record(protocol="RenamedProtocol", attack_type_raw="Oracle manipulation")],
    )
    await session.commit()

    assert await session.scalar(select(func.count(Incident.pk))) == 1
    assert await session.scalar(select(func.count(IncidentAddress.pk))) == 1
    old = await intel.search_incidents(session, intel.SearchQuery(query="testprotocol"))
    assert old.incidents == []
    new = await intel.search_incidents(session, intel.SearchQuery(query="renamed"))
    assert [i.attack_type for i in new.incidents] == [AttackType.ORACLE_MANIPULATION]
    # Descriptions are searchable too.
    body = await intel.search_incidents(session, intel.SearchQuery(query="vault balances"))
    assert [i.id for i in body.incidents] == ["20250101_testprotocol"]
    by_address = await intel.search_incidents(
        session, intel.SearchQuery(address=ATTACKER.upper().replace("X", "x"))
    )
    assert by_address.count == 1
    incident = await intel.get_incident(session, "20250101_testprotocol")
    assert incident is not None
    assert incident.sources == ["PeckShield"]


async def test_a_failed_batch_leaves_nothing_behind(session: AsyncSession) -> None:
    duplicate = [_record(), _record(id="20250102_other"), _record()]
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        await replace_incidents(session, duplicate)
    await session.rollback()
    assert await session.scalar(select(func.count(Incident.pk))) == 0
