"""The price list: one place, banded by result count, described in dollars."""

import pytest

from kamiyo.payments.prices import (
    PAID_MAX_RESULTS,
    PRICES,
    describe,
    price_meta,
    price_of,
    tool_prices,
    usd,
)
from kamiyo.tiers import FREE_TOOLS


@pytest.mark.parametrize(
    ("limit", "amount"), [(None, 10_000), (1, 10_000), (10, 10_000), (11, 20_000), (1000, 20_000)]
)
def test_search_is_banded_by_the_limit_asked_for(limit: int | None, amount: int) -> None:
    arguments = {} if limit is None else {"limit": limit}
    assert price_of("search_exploits", arguments) == amount


def test_free_tools_have_no_price() -> None:
    for tool in ("health_check", "get_pricing", "get_usage"):
        assert price_of(tool, {}) is None
    assert FREE_TOOLS - set(PRICES) == {"health_check", "get_pricing", "get_usage"}


@pytest.mark.parametrize(
    ("amount", "text"), [(10_000, "$0.01"), (5_000, "$0.005"), (100_000, "$0.10"), (1, "$0.000001")]
)
def test_dollars(amount: int, text: str) -> None:
    assert usd(amount) == text


def test_descriptions_and_meta_agree_with_the_table() -> None:
    assert describe("assess_protocol_risk") == "$0.05"
    assert describe("search_exploits") == "$0.01 for up to 10 results, $0.02 for up to 50 results"
    meta = price_meta("search_exploits")
    assert meta is not None
    entry = meta["kamiyo/price"]
    assert entry["amount"] == "10000"
    assert [band["up_to_results"] for band in entry["bands"]] == [10, PAID_MAX_RESULTS]
    assert {p.tool for p in tool_prices()} == set(PRICES)
    assert price_meta("health_check") is None
