import datetime as dt

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.tables import ProtocolRow
from kamiyo.intel import resolver
from kamiyo.intel.names import name_key
from kamiyo.intel.reports import SourceReport
from kamiyo.intel.store import Store
from kamiyo.intel.vocabulary import AttackType

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("private key", AttackType.KEY_COMPROMISE),
        ("Private Keys", AttackType.KEY_COMPROMISE),
        ("hot-wallet hack", AttackType.KEY_COMPROMISE),
        ("multisig", AttackType.KEY_COMPROMISE),
        ("key compromise", AttackType.KEY_COMPROMISE),
        ("reentrancy attack", AttackType.REENTRANCY),
        ("flashloan", AttackType.FLASH_LOAN),
        ("flash loans", AttackType.FLASH_LOAN),
        ("access_control", AttackType.ACCESS_CONTROL),
        ("the oracle", AttackType.ORACLE_MANIPULATION),
        ("rug pull", AttackType.RUG_PULL),
    ],
)
def test_a_whole_query_naming_an_attack_type(text: str, kind: AttackType) -> None:
    assert resolver.query_attack_type(text) is kind


@pytest.mark.parametrize(
    "text", ["euler flash loan", "bridge", "other", "unknown", "curve", "attack", "key"]
)
def test_queries_that_do_not_name_an_attack_type(text: str) -> None:
    assert resolver.query_attack_type(text) is None


def _report(n: int, protocol: str, *aliases: str) -> SourceReport:
    return SourceReport(
        source="test",
        source_id=f"2024010{n}_t{n}",
        date=dt.date(2024, 1, n),
        protocol=protocol,
        aliases=list(aliases),
        chains=["ethereum"],
        attack_type_raw="Reentrancy",
    )


async def _ingest(session: AsyncSession, *reports: SourceReport) -> None:
    store = await Store.load(session)
    await store.ingest(session, reports, origin="import")
    await session.commit()


async def test_near_misses_best_first(migrated_session: AsyncSession) -> None:
    session = migrated_session
    resolver.invalidate()
    await _ingest(
        session,
        _report(1, "Euler Finance", "Euler V1"),
        _report(2, "UniSwapV1"),
        _report(3, "Eular"),
        _report(4, "Eulr Labs"),
    )
    advice = await resolver.did_you_mean(session, "eulr", filtered=False)
    # "eulr" itself is a name here ("Eulr Labs"): only the others are suggested, one edit each.
    assert advice.suggestions == ["Eular", "Euler Finance"]
    assert advice.note == (
        "No incident matches 'eulr'. Did you mean: Eular, Euler Finance? "
        "Search again with one of these names."
    )
    # Two edits from the beginning of a longer name.
    assert (await resolver.did_you_mean(session, "uniwsap", filtered=False)).suggestions == [
        "UniSwapV1"
    ]
    # Too far, or too short to guess at.
    for text in ("zzqqxx", "eu", "uniswapperoo"):
        assert (await resolver.did_you_mean(session, text, filtered=False)).suggestions == []


async def test_a_name_filtered_out_is_named_with_the_filters(
    migrated_session: AsyncSession,
) -> None:
    resolver.invalidate()
    await _ingest(migrated_session, _report(1, "Euler Finance"))
    advice = await resolver.did_you_mean(migrated_session, "euler", filtered=True)
    assert advice.suggestions == []
    assert advice.note is not None
    assert advice.note.startswith(
        "No incident matches 'euler' with these filters; Euler Finance has 1 incident(s)"
    )


async def test_new_names_are_seen_without_invalidating(
    migrated_session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = migrated_session
    monkeypatch.setattr(resolver, "RECHECK_AFTER_S", 0.0)  # read the fingerprint every time
    resolver.invalidate()
    await _ingest(session, _report(1, "Euler Finance"))
    assert (await resolver.did_you_mean(session, "mango marketz", filtered=False)).suggestions == []
    await _ingest(session, _report(2, "Mango Markets"))
    advice = await resolver.did_you_mean(session, "mango marketz", filtered=False)
    assert advice.suggestions == ["Mango Markets"]
    # A registry name (DeFiLlama protocols) is a candidate too, ranked by its edits.
    session.add(
        ProtocolRow(
            source="defillama",
            slug="mango-marketz",
            name="Mango Marketz",
            key=name_key("Mango Marketz"),
            record={},
            updated_at=dt.datetime.now(dt.UTC),
        )
    )
    await session.commit()
    advice = await resolver.did_you_mean(session, "mango markez", filtered=False)
    assert advice.suggestions == ["Mango Marketz", "Mango Markets"]


async def test_between_fingerprint_reads_the_cache_serves_and_invalidate_refreshes(
    migrated_session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = migrated_session
    monkeypatch.setattr(resolver, "RECHECK_AFTER_S", 3600.0)
    resolver.invalidate()
    await _ingest(session, _report(1, "Euler Finance"))
    assert (await resolver.did_you_mean(session, "wormhol", filtered=False)).suggestions == []
    await _ingest(session, _report(2, "Wormhole"))
    assert (await resolver.did_you_mean(session, "wormhol", filtered=False)).suggestions == []
    resolver.invalidate()
    advice = await resolver.did_you_mean(session, "wormhol", filtered=False)
    assert advice.suggestions == ["Wormhole"]
