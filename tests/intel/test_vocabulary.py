import pytest

from kamiyo.intel.vocabulary import (
    ATTACK_CHECKS,
    AttackType,
    classify_attack,
    firm_for_url,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Business Logic Flaw", AttackType.BUSINESS_LOGIC),
        ("bussiness logic flaw", AttackType.BUSINESS_LOGIC),
        ("Price Manipulation", AttackType.PRICE_MANIPULATION),
        ("Flashloan & Price Oracle Manipulation", AttackType.ORACLE_MANIPULATION),
        ("flashloan attack", AttackType.FLASH_LOAN),
        ("Lack of Access Control", AttackType.ACCESS_CONTROL),
        ("lack-of-access-control", AttackType.ACCESS_CONTROL),
        ("Uninitialized Proxy", AttackType.ACCESS_CONTROL),
        ("Read-Only-Reentrancy", AttackType.REENTRANCY),
        ("precission loss", AttackType.PRECISION_LOSS),
        ("Integer Underflow", AttackType.INTEGER_OVERFLOW),
        ("Signature Replay", AttackType.SIGNATURE),
        ("Arbitrary External Call Vulnerability", AttackType.ARBITRARY_CALL),
        ("Private key compromised", AttackType.KEY_COMPROMISE),
        ("Rug Pull", AttackType.RUG_PULL),
        ("Sandwich attack", AttackType.SLIPPAGE_MEV),
        ("CompoundV2 Inflation Attack", AttackType.INFLATION_ATTACK),
        ("Governance takeover of abandoned governor", AttackType.GOVERNANCE),
        ("mispriced reward pool", AttackType.BUSINESS_LOGIC),
        ("", AttackType.UNKNOWN),
        (None, AttackType.UNKNOWN),
        ("something nobody has seen", AttackType.OTHER),
    ],
)
def test_classify_attack(raw: str | None, expected: AttackType) -> None:
    assert classify_attack(raw) is expected


@pytest.mark.parametrize("kind", list(AttackType))
def test_every_attack_type_has_checks(kind: AttackType) -> None:
    checks = ATTACK_CHECKS[kind]  # a KeyError here: a new attack type needs its checks
    assert 2 <= len(checks) <= 4
    for check in checks:
        assert check.strip() == check
        assert 20 <= len(check) <= 120
        assert check[0].isupper()
        assert check.endswith(".")


@pytest.mark.parametrize(
    ("url", "firm"),
    [
        ("https://twitter.com/peckshield/status/1", "PeckShield"),
        ("https://x.com/Phalcon_xyz/status/1", "BlockSec Phalcon"),
        ("https://mobile.twitter.com/CertiKAlert/status/1", "CertiK"),
        ("https://app.blocksec.com/explorer/tx/eth/0x1", "BlockSec Phalcon"),
        ("https://slowmist.medium.com/some-post", "SlowMist"),
        ("https://medium.com/neptune-mutual/post", "Neptune Mutual"),
        ("https://rekt.news/ronin-rekt/", "Rekt News"),
        ("https://www.certik.com/resources/blog/x", "CertiK"),
        ("https://twitter.com/someone_else/status/1", None),
        ("https://etherscan.io/tx/0x1", None),
        ("not a url", None),
    ],
)
def test_firm_for_url(url: str, firm: str | None) -> None:
    assert firm_for_url(url) == firm
