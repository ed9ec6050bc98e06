"""The command line, in-process through Typer's runner and as a real process."""

import asyncio
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kamiyo.access import accounts
from kamiyo.access.meter import Meter, UsageEvent
from kamiyo.cli import app
from kamiyo.clients import claude_desktop_config_path
from kamiyo.config import Settings
from kamiyo.intel.bundled import BUNDLE_PATH
from kamiyo.intel.sanctions import SNAPSHOT_PATH
from kamiyo.runtime import open_runtime

runner = CliRunner()


def kamiyo(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_search_prints_a_table() -> None:
    code, out, _ = kamiyo("search", "ronin")
    assert code == 0
    assert "Ronin Network" in out
    assert "$624.5M" in out  # the median of DeFiHackLabs' $624M and the notable table's $625M
    assert "20220329_ronin-network" in out
    assert "key_compromise" in out


def test_search_with_every_filter_as_json() -> None:
    code, out, _ = kamiyo(
        "search",
        "euler",
        "--chain",
        "ethereum",
        "--since",
        "2023-01-01",
        "--min-loss",
        "1000000",
        "--json",
    )
    assert code == 0
    result = json.loads(out)
    assert [i["id"] for i in result["incidents"]] == ["20230313_eulerfinance"]
    assert result["incidents"][0]["loss_usd"] == 198_000_000
    assert {s["source"] for s in result["incidents"][0]["sources"]} == {"defihacklabs", "notable"}


def test_flash_loan_on_bsc() -> None:
    code, out, _ = kamiyo("search", "flash loan", "--chain", "bsc", "--json", "--limit", "5")
    assert code == 0
    result = json.loads(out)
    assert result["count"] == 5
    assert result["truncated"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "x" * 10_000], "at most 256 characters"),
        (["search", "🚀"], "no letters or digits"),
        (["search", "--chain", "eth'; --"], "not a chain name"),
        (["search", "--since", "yesterday"], "since"),
        (["search", "--limit", "0"], "limit"),
        (["search", "--address", "0x12"], "not an address"),
        (["stats", "--by", "planet"], "--group-by"),
        (["wallet", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"], "fails its EIP-55 checksum"),
        (["wallet", "0x" + "5a" * 20, "--chain", "solana"], "this is an EVM address"),
    ],
)
def test_bad_arguments_give_a_clear_error_and_exit_2(args: list[str], message: str) -> None:
    code, out, err = kamiyo(*args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out
    assert out == ""


def test_hostile_query_strings_do_not_crash() -> None:
    for text in ('"', "NEAR(", "euler OR", "*", "\\", "' OR 1=1 --"):
        code, _, err = kamiyo("search", text)
        assert code in (0, 2), (text, err)
        assert "Traceback" not in err


def test_show_prints_addresses_transactions_and_references() -> None:
    code, out, _ = kamiyo("show", "20260819_allbridgecctp")
    assert code == 0
    for expected in (
        "AllbridgeCCTP",
        "0x2419432344b0b892e592b2601b98eae702ba360e",
        "0x9f906fcd8fceaa6745e8d1c004861dcfa9b5e6a893fe1e8c5d0013a4e982e6a8",
        "AllbridgeCCTP_exp.sol",
        "defihacklabs",
    ):
        assert expected in out


def test_wallet_prints_the_verdict_and_each_match() -> None:
    # The Ronin attacker, listed on Ethereum, asked about on BNB Chain.
    code, out, _ = kamiyo("wallet", "0x098b716b8aaf21512996dc57eb0615e2383e2f96", "--chain", "bsc")
    assert code == 0
    assert out.startswith("BLOCK  score 100/100, critical")
    for expected in (
        "OFAC SDN digital-currency address list as of 2024-09-27 (ETH)",
        "attacker on ethereum: Ronin Network (20220329_ronin-network)",
        "delisted on 2025-03-21",
        "History: not read.",
    ):
        assert expected in " ".join(out.split()), expected
    code, out, _ = kamiyo("wallet", "0x" + "5a" * 20, "--json")
    assert code == 0
    answer = json.loads(out)
    assert (answer["verdict"], answer["level"], answer["coverage"]["history_read"]) == (
        "unknown",
        None,
        False,
    )


def test_show_unknown_id_fails_clearly() -> None:
    """Not found is the caller's to change, like bad input: exit 2 (README, "exit status")."""
    code, out, err = kamiyo("show", "nope")
    assert code == 2
    assert "No incident with id 'nope'" in err
    assert out == ""


@pytest.mark.parametrize("by", ["chain", "year", "month", "attack-type"])
def test_stats(by: str) -> None:
    code, out, _ = kamiyo("stats", "--by", by)
    assert code == 0
    _, listed, _ = kamiyo("stats", "--json")
    assert f"{json.loads(listed)['incidents']:,}" in out  # the total row


def test_stats_json_totals() -> None:
    code, out, _ = kamiyo("stats", "--by", "attack-type", "--json")
    assert code == 0
    stats = json.loads(out)
    assert stats["incidents"] > 860  # DeFiHackLabs and the notable table, merged
    assert sum(r["incidents"] for r in stats["rows"]) == stats["incidents"]


def test_risk_prints_the_score_its_factors_and_the_incidents() -> None:
    code, out, _ = kamiyo("risk", "Ronin")
    assert code == 0
    assert "Risk " in out
    assert "Factors (risk-" in out
    for factor in ("recency", "loss", "root_cause", "repeats"):
        assert factor in out
    assert "20220329_ronin-network" in out
    code, out, _ = kamiyo("risk", "Aave", "--json")
    answer = json.loads(out)
    assert (code, answer["incident_count"]) == (0, 1)
    assert "20250612_aaveboost" in {r["incident"]["id"] for r in answer["related"]}
    code, out, _ = kamiyo("risk", "eulr")
    assert (code, "Did you mean: Euler Finance?" in out) == (0, True)


def test_db_upgrade_on_postgres_then_search(
    postgres_url_for_cli: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAMIYO_DATABASE_URL", postgres_url_for_cli)
    monkeypatch.setenv("KAMIYO_ENVIRONMENT", "production")
    monkeypatch.setenv("KAMIYO_SECRET_KEY", "p" * 40)
    code, out, _ = kamiyo("search", "ronin")
    assert code == 1  # production does not migrate on start
    code, _, err = kamiyo("db", "upgrade")
    assert code == 0, err
    assert "up to date" in err
    assert "p" * 40 not in err
    code, out, _ = kamiyo("search", "ronin", "--json")
    assert code == 0
    assert "20220329_ronin-network" in {i["id"] for i in json.loads(out)["incidents"]}


def test_production_refuses_to_start_with_insecure_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAMIYO_ENVIRONMENT", "production")
    code, _, err = kamiyo("search", "ronin")
    assert code == 2
    assert "refusing to start in production" in err


def test_unreachable_database_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "KAMIYO_DATABASE_URL", "postgresql+asyncpg://nobody:hunter2@127.0.0.1:1/none"
    )
    code, _, err = kamiyo("search", "ronin")
    assert code == 1
    assert "cannot use the database at postgresql+asyncpg://nobody:***@127.0.0.1:1/none" in err
    assert "hunter2" not in err


def test_data_build_reproduces_the_bundle(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "bundle.json.gz"
    code, _, err = kamiyo("data", "build", "--data", str(repo / "data"), "--out", str(out))
    assert code == 0, err
    assert "1091 reports (defihacklabs 860, notable 231)" in err
    assert out.read_bytes() == BUNDLE_PATH.read_bytes()
    assert "611 sanctioned addresses" in err
    assert (tmp_path / SNAPSHOT_PATH.name).read_bytes() == SNAPSHOT_PATH.read_bytes()
    code, _, err = kamiyo("data", "build", "--data", str(tmp_path / "missing"))
    assert code == 2


def test_real_process_keeps_stdout_for_results_and_logs_on_stderr(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAMIYO_")}
    env |= {"KAMIYO_DATA_DIR": str(tmp_path / "data"), "KAMIYO_LOG_FORMAT": "json"}
    proc = subprocess.run(
        [sys.executable, "-m", "kamiyo", "search", "ronin", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Ronin Network" in {i["protocol"] for i in json.loads(proc.stdout)["incidents"]}
    log_lines = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert any("loaded the bundled reports" in line["message"] for line in log_lines)
    assert all(line["level"] in {"INFO", "WARNING"} for line in log_lines)


def test_install_claude_desktop_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAMIYO_API_KEY", "kmy_from_env")
    code, out, err = kamiyo("install", "claude-desktop", "--print", "--api-key")
    assert code == 0
    entry = json.loads(out)["mcpServers"]["kamiyo"]
    assert entry["args"] == ["-m", "kamiyo", "serve"]
    assert entry["env"]["KAMIYO_API_KEY"] == "kmy_from_env"
    assert "Cursor" in err


def test_install_claude_desktop_writes_the_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for variable in ("HOME", "APPDATA", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(variable, str(tmp_path / "home"))
    path = claude_desktop_config_path()
    assert path.is_relative_to(tmp_path)
    code, _, err = kamiyo("install", "claude-desktop")
    assert code == 0, err
    assert "kamiyo" in json.loads(path.read_text())["mcpServers"]
    path.write_text("{broken")
    code, _, err = kamiyo("install", "claude-desktop")
    assert code == 1
    assert "left untouched" in err
    assert path.read_text() == "{broken"


def test_install_remote_print() -> None:
    code, out, _ = kamiyo(
        "install", "claude-desktop", "--print", "--remote", "https://kamiyo.example/mcp"
    )
    assert code == 0
    assert json.loads(out)["mcpServers"]["kamiyo"]["args"][-1] == "https://kamiyo.example/mcp"


def test_accounts_and_keys_commands() -> None:
    code, _, err = kamiyo("accounts", "create", "ops@example.com", "--tier", "team")
    assert code == 0, err
    code, _, err = kamiyo("accounts", "create", "ops@example.com")
    assert code == 2
    assert "exists already" in err
    code, key, err = kamiyo("keys", "create", "ops@example.com", "--name", "laptop")
    assert code == 0, err
    key = key.strip()
    assert key.startswith("kmy_live_")
    assert "shown this once" in err
    assert key not in err
    code, listing, _ = kamiyo("keys", "list", "ops@example.com")
    assert code == 0
    assert key[:17] in listing
    assert key not in listing
    assert "active" in listing
    code, _, _ = kamiyo("keys", "revoke", key[:17])
    assert code == 0
    code, listing, _ = kamiyo("keys", "list", "ops@example.com")
    assert "revoked" in listing
    code, _, err = kamiyo("keys", "create", "nobody@example.com")
    assert code == 2
    assert "no account for nobody@example.com" in err


def test_token_issue_and_revoke(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAMIYO_SECRET_KEY", "s" * 48)
    assert kamiyo("accounts", "create", "tok@example.com")[0] == 0
    code, token, err = kamiyo("token", "issue", "tok@example.com", "--ttl", "600")
    assert code == 0, err
    token = token.strip()
    assert token.count(".") == 2
    result = runner.invoke(app, ["token", "revoke"], input=token + "\n")
    assert result.exit_code == 0, result.stderr
    assert "Revoked token" in result.stderr
    result = runner.invoke(app, ["token", "revoke"], input="garbage\n")
    assert result.exit_code == 2
    assert "token is malformed" in result.stderr


def test_usage_verify_and_show() -> None:
    assert kamiyo("accounts", "create", "use@example.com", "--tier", "personal")[0] == 0

    async def record_calls() -> None:
        async with open_runtime(Settings()) as runtime:
            async with runtime.sessions() as session:
                account = await accounts.find_account(session, "use@example.com")
                assert account is not None
            meter = Meter(flush_interval_s=3600)
            async with meter.running(runtime.sessions):
                for tool, status in [("search_exploits", "ok"), ("get_exploit", "ok"),
                                     ("check_wallet_interactions", "forbidden")]:  # fmt: skip
                    meter.record(
                        UsageEvent(
                            at=dt.datetime.now(dt.UTC),
                            account_pk=account.pk,
                            key_pk=None,
                            tool=tool,
                            tier="personal",
                            status=status,
                            duration_us=1500,
                            result_count=None,
                            cost_units=int(status == "ok"),
                        )
                    )

    asyncio.run(record_calls())
    code, _, err = kamiyo("usage", "verify")
    assert code == 0, err
    assert "1 usage chain(s), 3 records: all verify" in err
    code, table, _ = kamiyo("usage", "show", "use@example.com", "--by", "tool")
    assert code == 0
    assert "check_wallet_interactions" in table
    assert "1.50" in table
    with sqlite3.connect(Settings().database.data_dir / "kamiyo.db") as db:
        db.execute("UPDATE usage_records SET cost_units = 0 WHERE tool = 'search_exploits'")
    code, _, err = kamiyo("usage", "verify", "use@example.com")
    assert code == 1
    assert "record 1 was altered" in err
    assert kamiyo("usage", "show", "nobody@example.com")[0] == 2


def test_accounts_list_show_set_tier_disable_enable() -> None:
    assert kamiyo("accounts", "create", "a@example.com")[0] == 0
    assert kamiyo("accounts", "create", "b@example.com", "--tier", "team")[0] == 0
    assert kamiyo("keys", "create", "b@example.com", "--name", "ci")[0] == 0
    code, table, err = kamiyo("accounts", "list")
    assert code == 0, err
    assert "a@example.com" in table
    assert "default" in table
    assert "operator" in table  # created on team: set by hand
    code, out, _ = kamiyo("accounts", "list", "--json")
    listed = {row["email"]: row for row in json.loads(out)}
    assert listed["a@example.com"]["tier"] == "free"
    assert listed["a@example.com"]["tier_source"] == "default"
    assert (listed["b@example.com"]["tier"], listed["b@example.com"]["active_keys"]) == ("team", 1)

    code, _, err = kamiyo("accounts", "set-tier", "A@example.com", "enterprise")
    assert code == 0, err
    assert "enterprise tier now (was free), set by hand" in err
    code, _, err = kamiyo("accounts", "disable", "b@example.com")
    assert code == 0, err
    assert "b@example.com is disabled." in err
    assert "already" in kamiyo("accounts", "disable", "b@example.com")[2]
    code, out, _ = kamiyo("accounts", "list", "--json", "--tier", "enterprise")
    assert [(r["email"], r["tier_source"]) for r in json.loads(out)] == [
        ("a@example.com", "operator")
    ]
    code, out, _ = kamiyo("accounts", "list", "--json", "--status", "disabled")
    assert [r["email"] for r in json.loads(out)] == ["b@example.com"]

    code, out, err = kamiyo("accounts", "show", "b@example.com", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["status"], shown["tier"], shown["tier_source"]) == (
        "disabled",
        "team",
        "operator",
    )
    assert shown["subscription"]["status"] == "active"
    assert [(k["name"], k["status"], k["last_used_at"]) for k in shown["keys"]] == [
        ("ci", "active", None)
    ]
    assert shown["month"]["calls"] == 0
    code, text, _ = kamiyo("accounts", "show", "b@example.com")
    for part in ("disabled", "set by operator", "ci"):
        assert part in text
    assert kamiyo("accounts", "enable", "b@example.com")[0] == 0
    code, out, _ = kamiyo("accounts", "list", "--json", "--status", "disabled")
    assert json.loads(out) == []


@pytest.mark.parametrize(
    "args",
    [
        ["accounts", "show", "nobody@example.com"],
        ["accounts", "set-tier", "nobody@example.com", "team"],
        ["accounts", "disable", "nobody@example.com"],
        ["accounts", "enable", "nobody@example.com"],
        ["keys", "list", "--account", "nobody@example.com"],
        ["keys", "list", "nobody@example.com"],
    ],
)
def test_account_commands_on_an_unknown_account_fail_with_one_line(args: list[str]) -> None:
    code, _, err = kamiyo(*args)
    assert code == 2
    assert err.strip().splitlines()[-1] == "error: no account for nobody@example.com"


def test_account_commands_refuse_bad_input() -> None:
    assert kamiyo("accounts", "create", "c@example.com")[0] == 0
    assert kamiyo("accounts", "set-tier", "c@example.com", "gold")[0] == 2
    assert kamiyo("accounts", "list", "--status", "sleeping")[0] == 2
    code, _, err = kamiyo("accounts", "show", "not-an-email")
    assert (code, "is not an email address" in err) == (2, True)
    code, _, err = kamiyo("keys", "list")
    assert (code, "kamiyo keys list --account EMAIL" in err) == (2, True)
    code, _, err = kamiyo("keys", "revoke", "kmy_live_nothere")
    assert (code, "no key with prefix" in err) == (2, True)


def test_keys_list_by_account_option() -> None:
    assert kamiyo("accounts", "create", "k@example.com", "--tier", "personal")[0] == 0
    _, key, _ = kamiyo("keys", "create", "k@example.com", "--name", "laptop")
    code, listing, _ = kamiyo("keys", "list", "--account", "k@example.com")
    assert code == 0
    for part in (key.strip()[:17], "laptop", "never"):
        assert part in listing
    assert kamiyo("keys", "list", "k@example.com", "--account", "other@example.com")[0] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "--min-loss", "inf"], "--min-loss-usd: Input should be a finite number"),
        (["search", "--min-loss-usd", "NaN"], "--min-loss-usd: Input should be a finite number"),
        (["search", "--since", "86400"], "--since: must be a date as YYYY-MM-DD"),
        # Undecodable bytes in argv reach Python as lone surrogates.
        (["show", "a\udcffb"], "exploit_id: must not contain a lone surrogate (U+DCFF)"),
        (["search", "eu\udcffler"], "query: must not contain a lone surrogate (U+DCFF)"),
        (["risk", "\udcff"], "protocol_name: must not contain a lone surrogate"),
    ],
)
def test_lenient_values_and_unstorable_text_exit_2(args: list[str], message: str) -> None:
    code, out, err = kamiyo(*args)
    assert (code, out) == (2, "")
    assert message in err
    assert "Traceback" not in err


def test_account_commands_refuse_text_the_database_cannot_hold() -> None:
    code, _, err = kamiyo("accounts", "create", "a\udcffb@example.com")
    assert (code, "is not an email address" in err) == (2, True), err
    assert kamiyo("accounts", "create", "named@example.com")[0] == 0
    code, _, err = kamiyo("keys", "create", "named@example.com", "--name", "lap\udcfftop")
    assert (code, "a key name must not contain a lone surrogate" in err) == (2, True), err
    code, _, err = kamiyo("keys", "revoke", "kmy_live_\udcff")
    assert (code, "no key with prefix" in err) == (2, True), err
    code, _, err = kamiyo("usage", "show", "\udcff@example.com")
    assert (code, "is not an email address" in err) == (2, True), err
    assert "Traceback" not in err
