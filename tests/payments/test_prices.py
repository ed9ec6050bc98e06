"""Prices: banded by result count, described in dollars."""

import pytest

from kamiyo.payments.prices import PAID_MAX_RESULTS, Band, Price, tool_price, usd

SEARCH = Price(10_000, bands=(Band(10, 10_000), Band(PAID_MAX_RESULTS, 20_000)))


@pytest.mark.parametrize(
    ("limit", "amount"), [(None, 10_000), (1, 10_000), (10, 10_000), (11, 20_000), (1000, 20_000)]
)
def test_a_banded_price_follows_the_size_asked_for(limit: int | None, amount: int) -> None:
    assert SEARCH.for_size(limit) == amount


def test_a_fixed_price_ignores_the_size() -> None:
    assert Price(50_000).for_size(500) == 50_000


@pytest.mark.parametrize(
    ("amount", "text"), [(10_000, "$0.01"), (5_000, "$0.005"), (100_000, "$0.10"), (1, "$0.000001")]
)
def test_dollars(amount: int, text: str) -> None:
    assert usd(amount) == text


def test_descriptions_and_entries_agree() -> None:
    assert Price(50_000).describe() == "$0.05"
    assert SEARCH.describe() == "$0.01 for up to 10 results, $0.02 for up to 50 results"
    entry = tool_price("search_exploits", SEARCH)
    assert entry.amount == "10000"
    assert [band.up_to_results for band in entry.bands] == [10, PAID_MAX_RESULTS]
