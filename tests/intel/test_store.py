import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo import intel
from kamiyo.db.tables import Incident, IncidentAddress, SourceReportRow
from kamiyo.intel import corrections
from kamiyo.intel.matching import Registry, decide, entry_for
from kamiyo.intel.models import AddressFact, TransactionFact
from kamiyo.intel.reports import SourceReport
from kamiyo.intel.store import Counts, Store
from kamiyo.intel.vocabulary import AddressRole, AttackType

pytestmark = pytest.mark.anyio

ATTACKER = "0x" + "ab" * 20
TX = "0x" + "cd" * 32


@pytest.fixture
def session(migrated_session: AsyncSession) -> AsyncSession:
    return migrated_session


def report(**changes: object) -> SourceReport:
    base = SourceReport(
        source="alpha",
        source_id="20250101_testprotocol",
        url="https://example.org/alpha/1",
        date=dt.date(2025, 1, 1),
        protocol="TestProtocol",
        chains=["ethereum"],
        loss_usd=1_000_000,
        loss_usd_basis="usd",
        loss_text="$1M",
        attack_type_raw="Reentrancy in withdraw",
        description="The vault paid out before it updated balances.",
        addresses=[AddressFact(role=AddressRole.ATTACKER, chain="ethereum", address=ATTACKER)],
        transactions=[TransactionFact(chain="ethereum", hash=TX)],
        references=["https://twitter.com/peckshield/status/1"],
    )
    return base.model_copy(update=changes)


async def ingest(
    session: AsyncSession, reports: list[SourceReport], origin: str = "live"
) -> Counts:
    store = await Store.load(session, distinct_sources=frozenset({"curated"}))
    counts = await store.ingest(session, reports, origin=origin)  # type: ignore[arg-type]
    await session.commit()
    return counts


async def count(session: AsyncSession, table: type[Incident] | type[SourceReportRow]) -> int:
    return await session.scalar(select(func.count(table.pk))) or 0


async def test_a_report_starts_an_incident_and_a_second_run_changes_nothing(
    session: AsyncSession,
) -> None:
    assert await ingest(session, [report()]) == Counts(new=1)
    assert await ingest(session, [report()]) == Counts(unchanged=1)
    incident = await intel.get_incident(session, "20250101_testprotocol")
    assert incident is not None
    assert incident.attack_type is AttackType.REENTRANCY
    assert incident.firms == ["PeckShield"]
    assert [(s.source, s.source_id) for s in incident.sources] == [
        ("alpha", "20250101_testprotocol")
    ]
    # Another source's prose is kept in its report, not shown as ours: one sentence is composed.
    assert incident.description == (
        "TestProtocol on Ethereum lost about $1M on 2025-01-01 (Reentrancy in withdraw)."
    )
    ours = report(source="notable", source_id="x", date=dt.date(2025, 1, 2), transactions=[])
    await ingest(session, [ours])
    found = await intel.search_incidents(session, intel.SearchQuery(query="vault balances"))
    assert [i.id for i in found.incidents] == ["20250101_testprotocol"]


async def test_a_changed_report_updates_its_incident_and_reindexes_it(
    session: AsyncSession,
) -> None:
    await ingest(session, [report()])
    changed = report(protocol="RenamedProtocol", attack_type_raw="Oracle manipulation")
    assert await ingest(session, [changed]) == Counts(updated=1)
    assert await count(session, Incident) == 1
    assert await session.scalar(select(func.count(IncidentAddress.pk))) == 1
    old = await intel.search_incidents(session, intel.SearchQuery(query="testprotocol"))
    assert old.incidents == []
    new = await intel.search_incidents(session, intel.SearchQuery(query="renamed"))
    assert [i.attack_type for i in new.incidents] == [AttackType.ORACLE_MANIPULATION]


async def test_reports_of_one_incident_from_two_sources_merge_with_their_evidence(
    session: AsyncSession,
) -> None:
    await ingest(session, [report()])
    other = report(
        source="beta",
        source_id="testprotocol-rekt",
        url="https://example.org/beta/testprotocol",
        date=dt.date(2025, 1, 3),
        protocol="Test Protocol Finance",
        loss_usd=1_400_000,
        loss_text="$1.4M",
        transactions=[],
        addresses=[],
        references=[],
        description=None,
    )
    assert await ingest(session, [other]) == Counts(merged=1)
    assert await count(session, Incident) == 1
    incident = await intel.get_incident(session, "20250101_testprotocol")
    assert incident is not None
    # The earliest date, the median of the dollar figures, both reports kept.
    assert incident.date == dt.date(2025, 1, 1)
    assert incident.loss_usd == 1_200_000
    assert {s.source: s.loss_usd for s in incident.sources} == {
        "alpha": 1_000_000,
        "beta": 1_400_000,
    }
    explained = await corrections.explain(session, "20250101_testprotocol")
    assert [(e.source, e.rule) for e in explained] == [("alpha", "new"), ("beta", "name_date")]
    assert explained[1].evidence["days_apart"] == 2


async def test_a_shared_transaction_merges_whatever_the_dates(session: AsyncSession) -> None:
    late = report(source="beta", source_id="x1", date=dt.date(2025, 2, 20), protocol="TestProto")
    assert await ingest(session, [report(), late]) == Counts(new=1, merged=1)
    explained = await corrections.explain(session, "20250101_testprotocol")
    assert explained[1].rule == "shared_transaction"


async def test_different_incidents_of_one_protocol_stay_apart(session: AsyncSession) -> None:
    reports = [
        report(
            source_id=f"2023{month:02}01_platypus",
            date=dt.date(2023, month, 1),
            protocol="Platypus Finance",
            transactions=[],
            addresses=[],
        )
        for month in (2, 7, 10)
    ]
    assert await ingest(session, reports) == Counts(new=3)


async def test_a_curated_source_never_merges_two_of_its_own_rows(session: AsyncSession) -> None:
    first = report(source="curated", source_id="a", transactions=[], addresses=[])
    second = report(
        source="curated", source_id="b", date=dt.date(2025, 1, 5), transactions=[], addresses=[]
    )
    assert await ingest(session, [first, second]) == Counts(new=2)


async def test_an_item_listed_twice_in_one_feed_is_one_report(session: AsyncSession) -> None:
    assert await ingest(session, [report(), report()]) == Counts(new=1, unchanged=1)
    assert await count(session, SourceReportRow) == 1


async def test_the_bundle_never_overwrites_what_a_live_run_wrote(session: AsyncSession) -> None:
    await ingest(session, [report(loss_text="$1M (live)")], origin="live")
    assert await ingest(session, [report(loss_text="$1M")], origin="bundle") == Counts(unchanged=1)
    incident = await intel.get_incident(session, "20250101_testprotocol")
    assert incident is not None
    assert incident.loss_text == "$1M (live)"


async def test_a_split_and_a_merge_survive_later_ingests(session: AsyncSession) -> None:
    other = report(
        source="beta",
        source_id="b1",
        date=dt.date(2025, 1, 2),
        protocol="TestProtocol",
        transactions=[],
    )
    await ingest(session, [report(), other])
    assert await count(session, Incident) == 1
    new_id = await corrections.split(session, "20250101_testprotocol", "beta", "b1")
    assert await count(session, Incident) == 2
    # A changed beta report stays in its own incident; so does a re-listed one.
    await ingest(session, [other.model_copy(update={"loss_text": "about $1M"})])
    assert await count(session, Incident) == 2
    explained = await corrections.explain(session, new_id)
    assert [(e.source, e.rule, e.decided_by) for e in explained] == [
        ("beta", "operator_split", "operator")
    ]
    # A third report like both joins the original, never the split-off one.
    third = report(source="gamma", source_id="g1", date=dt.date(2025, 1, 2), transactions=[])
    await ingest(session, [third])
    kept = await corrections.explain(session, "20250101_testprotocol")
    assert {e.source for e in kept} == {"alpha", "gamma"}

    assert await corrections.merge(session, "20250101_testprotocol", new_id) == 1
    assert await count(session, Incident) == 1
    with pytest.raises(intel.NotFoundError):
        await corrections.explain(session, new_id)
    with pytest.raises(corrections.CorrectionError):
        await corrections.split(session, "20250101_testprotocol", "nope", "x")


async def test_a_run_that_fails_midway_leaves_nothing_behind(
    session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kamiyo.intel.store.BATCH_SIZE", 1)  # the first batch is written
    store = await Store.load(session)
    broken: object = {"not": "a report"}
    with pytest.raises(AttributeError):
        await store.ingest(session, [report(), broken], origin="live")  # type: ignore[list-item]
    await session.rollback()
    assert await count(session, Incident) == 0


def test_registry_families_join_names_the_rules_alone_would_not() -> None:
    aave_arc = report(
        source="alpha",
        protocol="Aave Arc",
        transactions=[],
        addresses=[],
        references=[],
        date=dt.date(2025, 3, 1),
    )
    aave = report(
        source="beta",
        protocol="Aave",
        transactions=[],
        addresses=[],
        references=[],
        date=dt.date(2025, 3, 3),
    )
    assert decide(entry_for(aave_arc, 1), entry_for(aave, 2)) is None  # names too far apart
    registry = Registry.of([("Aave Arc", "aave-arc", "Aave", "1838")])
    decision = decide(entry_for(aave_arc, 1, registry), entry_for(aave, 2, registry))
    assert decision is not None
    assert decision.rule == "name_date"
    # A DeFiLlama id names its protocol too.
    by_id = report(
        source="gamma",
        protocol="AAVE ARC Market",
        defillama_id="1838",
        transactions=[],
        addresses=[],
        references=[],
        date=dt.date(2025, 3, 2),
    )
    assert decide(entry_for(by_id, 3, registry), entry_for(aave, 2, registry)) is not None
