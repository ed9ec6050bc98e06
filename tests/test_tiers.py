import itertools

from kamiyo.tiers import TIERS, Tier, lowest_tier_with


def test_the_table_matches_the_published_tiers() -> None:
    assert [t.value for t in TIERS] == ["free", "personal", "team", "enterprise"]
    per_minute = [p.requests_per_minute for p in TIERS.values()]
    assert per_minute == [10, 30, 100, 500]
    assert [p.max_results for p in TIERS.values()] == [10, 50, 200, 1000]
    assert [p.seats for p in TIERS.values()] == [1, 2, 5, None]
    assert TIERS[Tier.FREE].data_delay_hours == 24


def test_each_tier_unlocks_everything_the_one_below_does() -> None:
    policies = list(TIERS.values())
    for lower, higher in itertools.pairwise(policies):
        assert lower.tools <= higher.tools
        assert lower.requests_per_day < higher.requests_per_day


def test_upgrade_hints() -> None:
    assert lowest_tier_with("search_exploits") is Tier.FREE
    assert lowest_tier_with("assess_protocol_risk") is Tier.PERSONAL
    assert lowest_tier_with("check_wallet_interactions") is Tier.TEAM
    assert lowest_tier_with("no_such_tool") is None
