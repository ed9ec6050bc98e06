from kamiyo.tiers import (
    PAID_CALLS,
    PAYMENT_ATTEMPTS,
    TIERS,
    Tier,
    next_tier_above,
    next_tier_for_alert_rules,
)


def test_the_table_matches_the_published_tiers() -> None:
    assert [t.value for t in TIERS] == ["free", "personal", "team", "enterprise"]
    per_minute = [p.requests_per_minute for p in TIERS.values()]
    assert per_minute == [10, 30, 100, 500]
    assert [p.max_results for p in TIERS.values()] == [10, 50, 200, 1000]
    assert [p.seats for p in TIERS.values()] == [1, 2, 5, None]
    assert [p.alert_rules for p in TIERS.values()] == [0, 0, 3, 100]
    assert TIERS[Tier.FREE].data_delay_hours == 24


def test_tiers_are_ordered_and_each_includes_the_ones_below() -> None:
    assert [t.rank for t in Tier] == [0, 1, 2, 3]
    assert Tier.TEAM.includes(Tier.PERSONAL)
    assert Tier.TEAM.includes(Tier.TEAM)
    assert not Tier.PERSONAL.includes(Tier.TEAM)


def test_upgrade_hints_name_the_next_tier_with_a_higher_cap() -> None:
    assert next_tier_above(Tier.FREE, 10) is Tier.PERSONAL
    assert next_tier_above(Tier.PERSONAL, 50) is Tier.TEAM
    assert next_tier_above(Tier.ENTERPRISE, 1000) is None


def test_alert_rule_hints_name_the_next_tier_that_keeps_more() -> None:
    assert next_tier_for_alert_rules(Tier.FREE, 0) is Tier.TEAM
    assert next_tier_for_alert_rules(Tier.TEAM, 3) is Tier.ENTERPRISE
    assert next_tier_for_alert_rules(Tier.ENTERPRISE, 100) is None


def test_paid_calls_have_their_own_limits_and_payment_attempts_stop_before_them() -> None:
    assert (PAID_CALLS.requests_per_minute, PAID_CALLS.requests_per_day) == (100, 10_000)
    # A payer retrying a failed payment meets the payer's own limit before the address's.
    assert PAYMENT_ATTEMPTS.requests_per_minute > PAID_CALLS.requests_per_minute
    assert PAYMENT_ATTEMPTS.requests_per_day > PAID_CALLS.requests_per_day
