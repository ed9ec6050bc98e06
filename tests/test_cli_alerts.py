"""``kamiyo alerts …`` for operators, in process through Typer's runner, on the default SQLite
database of each test's own data folder."""

import json

import pytest

from kamiyo.alerts.events import TEST_EVENT
from tests.test_cli import kamiyo

TEAM = "alerts-team@example.com"
WEBHOOK = "https://hooks.example.com/ops"


@pytest.fixture
def team_account() -> str:
    code, _, err = kamiyo("accounts", "create", TEAM, "--tier", "team")
    assert code == 0, err
    return TEAM


def test_create_list_test_delete(team_account: str) -> None:
    code, out, err = kamiyo(
        "alerts", "create", "--account", team_account, "--protocol", "Euler Finance",
        "--chain", "ethereum", "--min-loss-usd", "1000000", "--webhook", WEBHOOK,
    )  # fmt: skip
    assert code == 0, err
    secret = out.strip()
    assert secret.startswith("whsec_")  # stdout holds the secret alone, once
    assert "store it now; it is not shown again" in err
    assert secret not in err

    code, out, err = kamiyo("alerts", "list", "--account", team_account, "--json")
    assert code == 0, err
    [rule] = json.loads(out)["alerts"]
    assert rule["filters"]["protocols"] == ["euler"]
    assert rule["filters"]["min_loss_usd"] == 1_000_000
    assert secret not in out
    alert_id = rule["alert_id"]

    code, out, err = kamiyo("alerts", "test", alert_id, "--account", team_account)
    assert code == 0, err
    delivery_id = out.strip()
    assert delivery_id.startswith("msg_")
    code, table, _ = kamiyo("alerts", "list", "--account", team_account)
    assert code == 0
    assert alert_id in table
    assert "hooks.example.com" in table
    assert "/ops" not in table  # the host only
    assert f"{TEST_EVENT} pending" in table

    code, _, err = kamiyo("alerts", "delete", alert_id, "--account", team_account)
    assert code == 0, err
    assert "1 pending deliveries will not be sent" in err
    code, _, err = kamiyo("alerts", "delete", alert_id, "--account", team_account)
    assert code == 2
    assert "No alert rule" in err


@pytest.mark.parametrize(
    "args",
    [
        ["alerts", "list", "--account", "nobody@example.com"],
        ["alerts", "create", "--account", "nobody@example.com"],
        ["alerts", "delete", "alr_x", "--account", "nobody@example.com"],
        ["alerts", "test", "alr_x", "--account", "nobody@example.com"],
    ],
)
def test_an_unknown_account_is_one_line_and_exit_2(args: list[str]) -> None:
    code, _, err = kamiyo(*args)
    assert code == 2
    assert err.strip().splitlines()[-1] == "error: no account for nobody@example.com"
    assert "Traceback" not in err


def test_requests_to_change_are_one_line_and_exit_2(team_account: str) -> None:
    code, _, err = kamiyo(
        "alerts", "create", "--account", team_account, "--webhook", "ftp://example.com/x"
    )
    assert code == 2
    assert "webhook_url: the webhook URL must start with" in err
    code, _, err = kamiyo("alerts", "create", "--account", team_account, "--chain", "narnia")
    assert code == 2
    assert "filters: chains.0" in err
    code, _, err = kamiyo("alerts", "create", "--account", team_account, "--min-loss-usd", "x")
    assert code == 2
    assert "filters: min_loss_usd" in err
    assert "Traceback" not in err


def test_the_accounts_tier_cap_applies(team_account: str) -> None:
    for _ in range(3):
        assert kamiyo("alerts", "create", "--account", team_account, "--webhook", WEBHOOK)[0] == 0
    code, _, err = kamiyo("alerts", "create", "--account", team_account, "--webhook", WEBHOOK)
    assert code == 2
    assert "the team tier keeps 3 alert rules" in err
    assert kamiyo("accounts", "create", "free@example.com")[0] == 0
    code, _, err = kamiyo("alerts", "create", "--account", "free@example.com", "--webhook", WEBHOOK)
    assert code == 2
    assert "the free tier keeps no alert rules; upgrade to team (3 rules)" in err
