import datetime as dt
import re
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.tables import ProtocolRow
from kamiyo.intel import resolver
from kamiyo.intel.names import name_key
from kamiyo.intel.reports import ProtocolRecord, SourceReport
from kamiyo.intel.risk import ProtocolRisk, ProtocolRiskQuery, assess_protocol
from kamiyo.intel.risk_model import level_of
from kamiyo.intel.risk_weights import SEVERITY, WEIGHTS, FactorName
from kamiyo.intel.scope import Scope
from kamiyo.intel.store import Store
from kamiyo.intel.vocabulary import ATTACK_CHECKS, AttackType

pytestmark = pytest.mark.anyio

TODAY = dt.date(2026, 12, 1)
INCIDENT_FACTORS = {
    FactorName.RECENCY,
    FactorName.LOSS,
    FactorName.ROOT_CAUSE,
    FactorName.REPEATS,
    FactorName.INCIDENTS,
    FactorName.FUNDS_RETURNED,
}


async def _risk(
    session: AsyncSession,
    protocol: str,
    *,
    chain: str | None = None,
    detailed: bool = True,
    max_results: int | None = None,
    hide_after: dt.date | None = None,
    today: dt.date = TODAY,
) -> ProtocolRisk:
    return await assess_protocol(
        session,
        ProtocolRiskQuery(protocol_name=protocol, chain=chain, limit=1000),
        Scope(max_results, hide_after, detailed),
        today=today,
    )


def _explained(risk: ProtocolRisk) -> dict[FactorName, float]:
    """The score is the sum of its factors, each value x weight; its level is the score's."""
    assert risk.score is not None
    assert risk.level is level_of(risk.score)
    for factor in risk.factors:
        assert 0 <= factor.value <= 1
        assert factor.contribution == pytest.approx(factor.value * factor.weight, abs=0.01)
        assert factor.reason
    assert risk.score == pytest.approx(sum(f.contribution for f in risk.factors), abs=0.1)
    contributions = [f.contribution for f in risk.factors]
    assert contributions == sorted(contributions, reverse=True)
    return {f.name: f.value for f in risk.factors}


def _ids(risk: ProtocolRisk) -> set[str]:
    return {i.id for i in risk.incidents}


async def test_euler_one_large_incident_mostly_returned(session: AsyncSession) -> None:
    euler = await _risk(session, "Euler")
    assert "20230313_eulerfinance" in _ids(euler)
    assert euler.incident_count == len(euler.incidents) == 1
    values = _explained(euler)
    assert set(values) == INCIDENT_FACTORS  # no registry offline
    assert values[FactorName.REPEATS] == 0
    assert values[FactorName.ROOT_CAUSE] == SEVERITY[AttackType.BUSINESS_LOGIC]
    # $198M lost, most of it returned: the loss weighs, the return takes a little off.
    assert values[FactorName.LOSS] > 0.8
    returned = next(f for f in euler.factors if f.name is FactorName.FUNDS_RETURNED)
    assert returned.contribution < 0
    assert "returned" in returned.reason
    assert euler.confidence is not None
    assert (euler.confidence.level, euler.confidence.registry) == ("low", False)
    assert euler.related == []
    assert euler.candidates == []
    assert "not a probability" in euler.summary
    assert euler.methodology_version.startswith("risk-")


async def test_ronin_repeat_key_compromise_outranks_a_single_incident(
    session: AsyncSession,
) -> None:
    ronin = await _risk(session, "Ronin")
    assert {"20220329_ronin-network", "20240806_ronin-2024"} <= _ids(ronin)
    assert ronin.incident_count == 2
    values = _explained(ronin)
    assert values[FactorName.ROOT_CAUSE] == SEVERITY[AttackType.KEY_COMPROMISE] == 1.0
    assert values[FactorName.REPEATS] > 0
    root = next(f for f in ronin.factors if f.name is FactorName.ROOT_CAUSE)
    assert "key_compromise" in root.reason
    assert ronin.level in {"high", "critical"}
    euler = await _risk(session, "Euler")
    assert ronin.score is not None
    assert euler.score is not None
    assert ronin.score > euler.score
    # An alias names only the incidents its reports use; a delayed feed hides the later one.
    axie = await _risk(session, "Axie Infinity")
    assert _ids(axie) == {"20220329_ronin-network"}
    delayed = await _risk(session, "Ronin", hide_after=dt.date(2023, 1, 1))
    assert _ids(delayed) == {"20220329_ronin-network"}


async def test_nomad_and_beanstalk(session: AsyncSession) -> None:
    nomad = await _risk(session, "Nomad")
    assert _ids(nomad) == {"20220802_nomad-bridge"}
    assert _explained(nomad)[FactorName.ROOT_CAUSE] == SEVERITY[AttackType.BRIDGE]
    for name in ("Beanstalk", "Beanstalk Farms"):
        beanstalk = await _risk(session, name)
        assert _ids(beanstalk) == {"20220416_beanstalkfarms"}
        assert beanstalk.incident_count == 1
        _explained(beanstalk)


async def test_recency_decays(session: AsyncSession) -> None:
    soon = await _risk(session, "Nomad", today=dt.date(2022, 8, 10))
    later = await _risk(session, "Nomad", today=dt.date(2025, 8, 10))
    assert soon.score is not None
    assert later.score is not None
    assert soon.score > later.score
    recency = {r.as_of: _explained(r)[FactorName.RECENCY] for r in (soon, later)}
    assert recency[soon.as_of] > 0.9 > 0.2 > recency[later.as_of]


@pytest.mark.parametrize(
    ("text", "incident"),
    [
        ("aave v3", "20240828_aave"),
        ("Uniswap", "20200418_uniswapv1"),
        ("euler finance", "20230313_eulerfinance"),
    ],
)
async def test_names_resolve(session: AsyncSession, text: str, incident: str) -> None:
    risk = await _risk(session, text)
    assert incident in _ids(risk)
    assert risk.score is not None
    assert risk.candidates == []


async def test_integrations_are_related_not_counted(session: AsyncSession) -> None:
    aave = await _risk(session, "Aave")
    assert _ids(aave) == {"20240828_aave"}
    related = {r.incident.id: r for r in aave.related}
    assert related["20250612_aaveboost"].relation == "name_contains"
    assert related["20250612_aaveboost"].via == "AAVEBoost"
    assert aave.related_count == len(aave.related)
    assert "not counted" in aave.summary
    compound = await _risk(session, "Compound")
    protocols = {r.incident.protocol for r in compound.related}
    assert {"CompoundFork", "GoodCompound"} <= protocols
    assert not any(p.startswith("Compounder") for p in protocols)  # another name, not "Compound"
    assert not _ids(compound) & {r.incident.id for r in compound.related}


async def test_a_typo_gets_candidates_and_no_score(session: AsyncSession) -> None:
    typo = await _risk(session, "eulr")
    assert "Euler Finance" in typo.candidates
    assert (typo.score, typo.level, typo.factors, typo.confidence) == (None, None, [], None)
    assert typo.incident_count == 0
    assert "Did you mean" in typo.summary


async def test_a_partial_name_lists_the_names_holding_it(session: AsyncSession) -> None:
    sushi = await _risk(session, "Sushi")
    assert {"SushiSwap", "SushiSwap Miso"} <= set(sushi.candidates)
    assert sushi.score is None


async def test_an_unknown_name_has_no_score(session: AsyncSession) -> None:
    nothing = await _risk(session, "Zzqqxx Finance")
    assert (nothing.incident_count, nothing.score, nothing.candidates) == (0, None, [])
    assert nothing.recommendations == []
    assert nothing.factor_checks == []
    assert "no incidents on record" in nothing.summary.lower()
    assert "not evidence of safety" in nothing.summary


async def test_a_chain_narrows_the_history(session: AsyncSession) -> None:
    on_bsc = await _risk(session, "Ronin", chain="bsc")
    assert (on_bsc.incident_count, on_bsc.score, on_bsc.candidates) == (0, None, [])
    assert on_bsc.summary.startswith("Ronin Network has 2 incident(s) on record, on ")
    assert "none on bsc" in on_bsc.summary
    on_ethereum = await _risk(session, "Ronin", chain="ethereum")
    assert on_ethereum.incident_count >= 1
    assert "on ethereum" in on_ethereum.summary


# --- recommendations (enterprise) -------------------------------------------------------


def _assert_consistent(risk: ProtocolRisk) -> None:
    """The recommendations restate the history's own per-attack-type breakdown, in order."""
    assert risk.recommendations is not None
    assert {r.attack_type.value: r.incidents for r in risk.recommendations} == risk.attack_types
    assert sum(r.total_loss_usd for r in risk.recommendations) == pytest.approx(risk.total_loss_usd)
    assert max(r.latest for r in risk.recommendations) == risk.last_incident
    order = [(-r.incidents, -r.total_loss_usd) for r in risk.recommendations]
    assert order == sorted(order)
    for recommendation in risk.recommendations:
        assert recommendation.checks == list(ATTACK_CHECKS[recommendation.attack_type])


async def test_recommendations_cover_every_visible_incident_not_only_the_listed(
    session: AsyncSession,
) -> None:
    balancer = await _risk(session, "Balancer", max_results=1)
    assert len(balancer.incidents) == 1
    assert balancer.incident_count == 3
    _assert_consistent(balancer)
    assert balancer.recommendations is not None
    assert sum(r.incidents for r in balancer.recommendations) == 3
    losses = [r.total_loss_usd for r in balancer.recommendations]
    assert losses == sorted(losses, reverse=True)  # one incident each: most lost first


async def test_factor_checks_follow_the_factors_that_raised_the_score(
    session: AsyncSession,
) -> None:
    ronin = await _risk(session, "Ronin")
    assert ronin.factor_checks
    raised = {f.name: f.contribution for f in ronin.factors if f.contribution >= 3}
    assert {c.factor for c in ronin.factor_checks} == set(raised) - {FactorName.ROOT_CAUSE}
    assert FactorName.REPEATS in {c.factor for c in ronin.factor_checks}
    plain = await _risk(session, "Ronin", detailed=False)
    assert (plain.recommendations, plain.factor_checks) == (None, None)
    assert plain.model_dump(exclude={"recommendations", "factor_checks"}) == ronin.model_dump(
        exclude={"recommendations", "factor_checks"}
    )


# --- registry metadata (DeFiLlama protocols; empty offline, so written here) -------------


def _report(n: int, protocol: str, day: dt.date, loss: float, cause: str) -> SourceReport:
    return SourceReport(
        source="test",
        source_id=f"t{n}",
        date=day,
        protocol=protocol,
        chains=["ethereum"],
        loss_usd=loss,
        loss_usd_basis="usd",
        attack_type_raw=cause,
    )


def _protocol(slug: str, name: str, **fields: object) -> ProtocolRow:
    record = ProtocolRecord(source="defillama_protocols", slug=slug, name=name, **fields)
    return ProtocolRow(
        source=record.source,
        slug=slug,
        name=name,
        key=name_key(name),
        parent=record.parent,
        record=record.model_dump(mode="json"),
        updated_at=dt.datetime.now(dt.UTC),
    )


async def test_registry_metadata_scores_and_relates(migrated_session: AsyncSession) -> None:
    session = migrated_session
    resolver.invalidate()
    store = await Store.load(session)
    await store.ingest(
        session,
        [
            _report(1, "Compound", dt.date(2021, 9, 29), 80e6, "Business Logic Flaw"),
            _report(2, "Lendo", dt.date(2026, 6, 1), 2e6, "Reentrancy"),
        ],
        origin="import",
    )
    listed = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    session.add_all(
        [
            _protocol("compound-v2", "Compound V2", parent="compound", category="Lending"),
            _protocol(
                "forkly",
                "Forkly",
                category="Lending",
                audits=0,
                listed_at=listed,
                tvl_usd=5e8,
                oracles=["Chainlink"],
                forked_from=["Compound V2"],
            ),
            _protocol("lendo", "Lendo", category="Lending", forked_from=["Compound V2"]),
        ]
    )
    await session.commit()
    forkly = await _risk(session, "Forkly")
    assert forkly.incident_count == 0
    values = _explained(forkly)
    assert values[FactorName.FORK_LINEAGE] == 1.0
    assert values[FactorName.AUDITS] == 1.0
    assert values[FactorName.ORACLES] == 1.0  # one feed prices the collateral
    assert 0 < values[FactorName.AGE] < 1
    assert FactorName.RECENCY not in values
    lineage = next(f for f in forkly.factors if f.name is FactorName.FORK_LINEAGE)
    assert "Compound V2" in lineage.reason
    assert forkly.confidence is not None
    assert forkly.confidence.registry
    assert "not evidence of safety" in forkly.summary
    compound = await _risk(session, "Compound")
    assert compound.incident_count == 1
    assert [(r.incident.protocol, r.relation) for r in compound.related] == [("Lendo", "fork")]
    assert FactorName.CATEGORY in _explained(compound)


async def test_a_key_two_registry_families_share_is_not_given_their_metadata(
    migrated_session: AsyncSession,
) -> None:
    session = migrated_session
    resolver.invalidate()
    store = await Store.load(session)
    await store.ingest(
        session, [_report(1, "Alpha", dt.date(2024, 1, 1), 1e6, "Reentrancy")], origin="import"
    )
    session.add_all(
        [
            _protocol("alpha-dex", "Alpha", category="Dexes", tvl_usd=1e9),
            _protocol("alpha-lend", "Alpha Finance", category="Lending", tvl_usd=1e8),
        ]
    )
    await session.commit()
    alpha = await _risk(session, "alpha")
    assert set(alpha.candidates) == {"Alpha", "Alpha Finance"}
    assert alpha.score is not None
    assert set(_explained(alpha)) == INCIDENT_FACTORS
    assert "shared by registry protocols" in alpha.summary


# --- the model's tables -----------------------------------------------------------------


def test_every_factor_has_a_weight_and_every_attack_type_a_severity() -> None:
    assert set(WEIGHTS) == set(FactorName)
    assert set(SEVERITY) == set(AttackType)
    assert all(0 <= severity <= 1 for severity in SEVERITY.values())
    assert sum(WEIGHTS[name].points for name in INCIDENT_FACTORS if WEIGHTS[name].points > 0) == 100


def test_the_documented_weights_are_the_models() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "risk.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| (-?[\d.]+) \| (.+) \|$", doc, flags=re.MULTILINE)
    documented = {FactorName(name): (float(points), why) for name, points, why in rows}
    assert documented == {name: (w.points, w.why) for name, w in WEIGHTS.items()}
