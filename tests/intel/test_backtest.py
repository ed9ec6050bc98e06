"""The risk back-test on the bundled data: no look-ahead, and the model beats both baselines."""

import datetime as dt

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.intel import backtest
from kamiyo.intel.backtest import mean, precision_at, roc_auc
from kamiyo.intel.risk_model import Level, PastIncident
from kamiyo.intel.vocabulary import AttackType

pytestmark = pytest.mark.anyio


def test_auc_counts_ties_half_and_needs_both_classes() -> None:
    assert roc_auc([3, 2, 1], [True, False, False]) == 1.0
    assert roc_auc([1, 2, 3], [True, False, False]) == 0.0
    assert roc_auc([1, 1, 1, 1], [True, False, True, False]) == 0.5
    assert roc_auc([2, 1, 1], [False, True, False]) == 0.25
    assert roc_auc([1, 2], [False, False]) is None


def test_precision_shares_the_places_of_tied_scores() -> None:
    assert precision_at([3, 2, 1, 0], [True, False, True, False], 2) == 0.5
    # Four tied for the last of two places, one of them positive: a quarter of a hit expected.
    assert precision_at([9, 1, 1, 1, 1], [True, True, False, False, False], 2) == 0.625


def test_the_original_formula_as_documented() -> None:
    def incident(day: dt.date, loss: float | None) -> PastIncident:
        return PastIncident(day, AttackType.REENTRANCY, loss, None)

    cutoff = dt.date(2024, 1, 1)
    one = [incident(dt.date(2023, 12, 28), 60e6)]
    assert backtest.original_score(one, cutoff) == 10 + 30 + 20 + 0
    two = [incident(dt.date(2023, 1, 1), 2e6), incident(dt.date(2023, 6, 1), None)]
    assert backtest.original_score(two, cutoff) == 20 + 20 + 2 + 7


async def test_no_score_reads_an_incident_at_or_after_its_cutoff(
    session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[dt.date, dt.date]] = []

    def spy(incidents: list[PastIncident], as_of: dt.date) -> float:
        seen.extend((i.date, as_of) for i in incidents)
        return float(len(incidents))

    monkeypatch.setitem(backtest.SCORERS, "model", spy)
    await backtest.backtest(session)
    assert seen
    assert all(day < cutoff for day, cutoff in seen)


async def test_the_model_beats_both_baselines_on_the_bundled_data(session: AsyncSession) -> None:
    results = await backtest.backtest(session)
    assert [r.cutoff for r in results] == [
        dt.date(year, month, 1) for year in range(2021, 2026) for month in (1, 7)
    ][:9]
    assert all(r.universe > 0 and r.positives > 0 for r in results)

    def means(name: str) -> tuple[float, float]:
        rows = [r.by_scorer[name] for r in results]
        return mean([r.auc for r in rows]), mean([r.precision_top_share for r in rows])

    model_auc, model_precision = means("model")
    for baseline in ("original formula", "past incidents"):
        auc, precision = means(baseline)
        assert model_auc > auc, baseline
        assert model_precision > precision, baseline
    # Calibration: the top two levels see incidents more often than the bottom two.
    counts = {level: sum(r.by_level[level][0] for r in results) for level in results[0].by_level}
    hits = {level: sum(r.by_level[level][1] for r in results) for level in results[0].by_level}
    low = (hits[Level.LOW] + hits[Level.MEDIUM]) / (counts[Level.LOW] + counts[Level.MEDIUM])
    high = (hits[Level.HIGH] + hits[Level.CRITICAL]) / (counts[Level.HIGH] + counts[Level.CRITICAL])
    assert high > low
