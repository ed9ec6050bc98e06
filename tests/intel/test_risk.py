import datetime as dt

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.intel.risk import ProtocolHistory, ProtocolHistoryQuery, protocol_history
from kamiyo.intel.scope import Scope
from kamiyo.intel.vocabulary import ATTACK_CHECKS, AttackType

pytestmark = pytest.mark.anyio


async def _history(
    session: AsyncSession,
    protocol: str,
    *,
    detailed: bool = True,
    max_results: int | None = None,
    hide_after: dt.date | None = None,
) -> ProtocolHistory:
    return await protocol_history(
        session,
        ProtocolHistoryQuery(protocol_name=protocol, limit=1000),
        Scope(max_results, hide_after, detailed),
    )


def _assert_consistent(history: ProtocolHistory) -> None:
    """The recommendations restate the history's own per-attack-type breakdown, in order."""
    assert history.recommendations is not None
    assert {r.attack_type.value: r.incidents for r in history.recommendations} == (
        history.attack_types
    )
    assert sum(r.total_loss_usd for r in history.recommendations) == pytest.approx(
        history.total_loss_usd
    )
    assert max(r.latest for r in history.recommendations) == history.last_incident
    order = [(-r.incidents, -r.total_loss_usd) for r in history.recommendations]
    assert order == sorted(order)
    for recommendation in history.recommendations:
        assert recommendation.checks == list(ATTACK_CHECKS[recommendation.attack_type])


async def test_recommendations_follow_the_protocols_own_attack_types(
    session: AsyncSession,
) -> None:
    sushi = await _history(session, "Sushi")
    assert sushi.incident_count == 3
    assert sushi.attack_types == {"input_validation": 2, "slippage_mev": 1}
    _assert_consistent(sushi)
    assert sushi.recommendations is not None
    first, second = sushi.recommendations
    assert first.attack_type is AttackType.INPUT_VALIDATION
    assert (first.incidents, first.total_loss_usd) == (2, 3_300_000)
    assert first.latest == dt.date(2023, 4, 9)
    assert second.attack_type is AttackType.SLIPPAGE_MEV
    assert (second.incidents, second.total_loss_usd) == (1, 0)
    assert second.latest == dt.date(2021, 1, 25)


async def test_equal_counts_are_ordered_by_loss(session: AsyncSession) -> None:
    cream = await _history(session, "Cream")
    # Cream Finance: one incident each of several attack types, the $130M one first.
    assert len(cream.attack_types) >= 2
    assert set(cream.attack_types.values()) == {1}
    _assert_consistent(cream)
    assert cream.recommendations is not None
    losses = [r.total_loss_usd for r in cream.recommendations]
    assert losses == sorted(losses, reverse=True)
    assert losses[0] >= 130_000_000


async def test_recommendations_only_when_detailed(session: AsyncSession) -> None:
    plain = await _history(session, "Sushi", detailed=False)
    assert plain.recommendations is None
    detailed = await _history(session, "Sushi")
    assert detailed.model_dump(exclude={"recommendations"}) == plain.model_dump(
        exclude={"recommendations"}
    )


async def test_no_history_gives_no_recommendations(session: AsyncSession) -> None:
    nothing = await _history(session, "Zzqqxx Finance")
    assert nothing.incident_count == 0
    assert nothing.recommendations == []
    assert "not evidence of safety" in nothing.summary


async def test_recommendations_cover_every_visible_incident_not_only_the_listed(
    session: AsyncSession,
) -> None:
    finance = await _history(session, "finance", max_results=3)
    assert len(finance.incidents) == 3
    assert finance.incident_count > 3
    assert len(finance.attack_types) > 3
    _assert_consistent(finance)
    assert finance.recommendations is not None
    assert sum(r.incidents for r in finance.recommendations) == finance.incident_count


async def test_recommendations_respect_the_delay(session: AsyncSession) -> None:
    cutoff = dt.date(2022, 1, 1)
    sushi = await _history(session, "Sushi", hide_after=cutoff)
    assert sushi.incident_count == 2
    assert all(i.date <= cutoff for i in sushi.incidents)
    _assert_consistent(sushi)
    assert sushi.recommendations is not None
    assert [(r.attack_type, r.incidents, r.latest) for r in sushi.recommendations] == [
        (AttackType.INPUT_VALIDATION, 1, dt.date(2021, 9, 16)),
        (AttackType.SLIPPAGE_MEV, 1, dt.date(2021, 1, 25)),
    ]
