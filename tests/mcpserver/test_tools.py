"""Every tool through the SDK's own client, as an agent calls it."""

import json
from collections.abc import Mapping
from typing import Any

import pytest
from mcp import Client
from mcp_types import CallToolResult, TextContent

from kamiyo.access.gate import Call, Completed, Grant, OpenGate, Outcome, Refusal
from kamiyo.mcpserver.server import build_server
from kamiyo.runtime import Runtime
from kamiyo.service.state import ServerState

pytestmark = pytest.mark.anyio

TOOLS = {
    "health_check",
    "search_exploits",
    "get_exploit",
    "find_exploit_by_tx",
    "get_exploit_stats",
    "assess_protocol_risk",
    "check_wallet_interactions",
    "screen_transaction",
    "get_usage",
    "get_pricing",
    "create_alert",
    "list_alerts",
    "delete_alert",
    "test_alert",
}
# The tools that change something (tests/mcpserver/test_alert_tools.py has their hints).
WRITING = {"create_alert", "delete_alert", "test_alert"}


def text_of(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def structured(result: CallToolResult) -> dict[str, Any]:
    assert result.is_error is not True, text_of(result)
    assert result.structured_content is not None
    # The text block carries the same JSON for clients that do not read structured content.
    assert json.loads(text_of(result)) == result.structured_content
    return dict(result.structured_content)


async def test_tools_are_listed_with_schemas(client: Client) -> None:
    listed = {t.name: t for t in (await client.list_tools()).tools}
    assert set(listed) == TOOLS
    for tool in listed.values():
        assert tool.description
        assert tool.output_schema is not None
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is (tool.name not in WRITING)
    search = listed["search_exploits"].input_schema
    assert {"query", "chain", "since", "until", "min_loss_usd", "attack_type", "limit"} <= set(
        search["properties"]
    )
    assert "reentrancy" in json.dumps(search)  # the attack-type vocabulary is in the schema
    assert listed["get_exploit"].input_schema["required"] == ["exploit_id"]


async def test_health_check(client: Client) -> None:
    health = structured(await client.call_tool("health_check", {}))
    assert health["status"] == "ok"
    stats = structured(await client.call_tool("get_exploit_stats", {}))
    # The bundle's two sources, merged: more than DeFiHackLabs' 860 alone, fewer than both.
    assert 860 < health["dataset"]["incidents"] == stats["incidents"] < 860 + 231
    assert health["database"].endswith(": ok")
    sources = health["dataset"]["sources"]
    assert sources["defihacklabs"]["reports"] == 860
    assert sources["notable"]["reports"] == 231
    assert sources["notable"]["newest_report"] >= "2026-01-01"


async def test_search_exploits(client: Client) -> None:
    result = structured(
        await client.call_tool(
            "search_exploits",
            {"query": "euler", "chain": "ethereum", "since": "2023-01-01", "min_loss_usd": 1e6},
        )
    )
    assert [i["id"] for i in result["incidents"]] == ["20230313_eulerfinance"]
    euler = result["incidents"][0]
    # The median of DeFiHackLabs' $200M and the notable table's $196M; each source's own kept.
    assert euler["loss_usd"] == 198_000_000
    assert euler["attack_type"] == "business_logic"
    assert {(s["source"], s["loss_usd"]) for s in euler["sources"]} == {
        ("defihacklabs", 200_000_000),
        ("notable", 196_000_000),
    }
    assert euler["firms"]


async def test_search_by_attack_type_and_loss_order(client: Client) -> None:
    result = structured(
        await client.call_tool(
            "search_exploits", {"attack_type": "bridge", "sort": "loss", "limit": 3}
        )
    )
    assert result["incidents"][0]["protocol"] == "Poly Network"
    assert result["count"] == 3
    assert result["truncated"] is True
    # Ronin was a key compromise on a bridge, not a bridge-logic flaw.
    keys = structured(
        await client.call_tool(
            "search_exploits", {"attack_type": "key_compromise", "sort": "loss", "limit": 5}
        )
    )
    assert "Ronin Network" in {i["protocol"] for i in keys["incidents"]}


async def test_get_exploit(client: Client) -> None:
    incident = structured(
        await client.call_tool("get_exploit", {"exploit_id": "20260819_allbridgecctp"})
    )
    assert incident["protocol"] == "AllbridgeCCTP"
    assert {"attacker", "victim"} <= {a["role"] for a in incident["addresses"]}
    assert incident["transactions"]
    assert [s["source"] for s in incident["sources"]] == ["defihacklabs"]
    assert incident["sources"][0]["url"].startswith("https://github.com/SunWeb3Sec/DeFiHackLabs/")


async def test_get_unknown_exploit_is_a_tool_error(client: Client) -> None:
    result = await client.call_tool("get_exploit", {"exploit_id": "19990101_nothing"})
    assert result.is_error is True
    assert "No incident with id '19990101_nothing'" in text_of(result)
    assert result.structured_content is not None
    assert result.structured_content["error"] == "not_found"
    assert "search_exploits" in text_of(result)


async def test_get_exploit_stats(client: Client) -> None:
    stats = structured(await client.call_tool("get_exploit_stats", {"group_by": "chain"}))
    assert stats["incidents"] > 860
    assert stats["rows"][0]["key"] in {"ethereum", "bsc"}
    by_year = structured(
        await client.call_tool("get_exploit_stats", {"since": "2025-01-01", "chain": "bsc"})
    )
    assert {r["key"] for r in by_year["rows"]} <= {"2025", "2026"}


async def test_assess_protocol_risk_reports_history_and_score(client: Client) -> None:
    report = structured(await client.call_tool("assess_protocol_risk", {"protocol_name": "Euler"}))
    assert report["incident_count"] >= 1
    assert "20230313_eulerfinance" in {i["id"] for i in report["incidents"]}
    assert report["total_loss_usd"] >= 198_000_000
    assert 0 <= report["score"] <= 100
    assert report["level"] in {"low", "medium", "high", "critical"}
    assert {f["name"] for f in report["factors"]} >= {"recency", "loss", "root_cause"}
    assert "not a probability" in report["summary"]


async def test_assess_unknown_protocol_does_not_claim_safety(client: Client) -> None:
    report = structured(
        await client.call_tool("assess_protocol_risk", {"protocol_name": "Zzqqxx Finance"})
    )
    assert report["incident_count"] == 0
    assert report["score"] is None
    assert "not evidence of safety" in report["summary"]


async def test_check_wallet_blocks_a_known_attacker(client: Client) -> None:
    screen = structured(
        await client.call_tool(
            "check_wallet_interactions",
            {"wallet_address": "0x2419432344B0B892E592B2601B98EAE702BA360E"},
        )
    )
    assert screen["verdict"] == "block"
    first = screen["direct_matches"][0]
    assert (first["kind"], first["incident_id"]) == ("incident", "20260819_allbridgecctp")
    assert "attacker" in screen["summary"]


async def test_check_wallet_victim_and_unknown(client: Client) -> None:
    victim = structured(
        await client.call_tool(
            "check_wallet_interactions",
            {"wallet_address": "0xaa119f7442ecc28b9a8f236707ada8362cff24ff"},
        )
    )
    # A victim is no threat, and with no history read nothing clears it either.
    assert victim["verdict"] == "unknown"
    assert victim["direct_matches"][0]["role"] == "victim"
    nobody = structured(
        await client.call_tool("check_wallet_interactions", {"wallet_address": "0x" + "5a" * 20})
    )
    assert (nobody["verdict"], nobody["level"]) == ("unknown", None)
    assert nobody["direct_matches"] == []
    assert nobody["coverage"]["history_read"] is False
    assert "not read" in nobody["summary"]


@pytest.mark.parametrize(
    ("tool", "arguments", "hint"),
    [
        ("search_exploits", {"since": "2023-13-45"}, "since"),
        ("search_exploits", {"limit": "many"}, "limit"),
        ("search_exploits", {"limit": 0}, "limit"),
        ("search_exploits", {"query": "x" * 10_000}, "query"),
        ("search_exploits", {"query": "🚀"}, "no letters or digits"),
        ("search_exploits", {"chain": "eth'; DROP TABLE incidents; --"}, "not a chain name"),
        ("search_exploits", {"attack_type": "space lasers"}, "attack_type"),
        ("search_exploits", {"since": "2024-02-01", "until": "2024-01-01"}, "since must not"),
        ("search_exploits", {"chains": "bsc"}, "Unknown argument(s) for search_exploits: chains"),
        ("get_exploit", {}, "exploit_id"),
        ("get_exploit_stats", {"group_by": "planet"}, "group_by"),
        ("check_wallet_interactions", {"wallet_address": "0x123"}, "not an address"),
        (
            "check_wallet_interactions",
            {"wallet_address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"},
            "EIP-55 checksum",
        ),
        ("assess_protocol_risk", {"protocol_name": "!!!"}, "protocol_name"),
    ],
)
async def test_bad_arguments_are_tool_errors_that_say_what_to_fix(
    client: Client, tool: str, arguments: dict[str, Any], hint: str
) -> None:
    result = await client.call_tool(tool, arguments)
    assert result.is_error is True
    message = text_of(result)
    assert hint in message
    assert message.startswith(("Invalid arguments for", "Unknown argument(s) for"))
    assert "\n" not in message  # one line, not a validation dump
    assert "errors.pydantic.dev" not in message


async def test_unknown_tool_is_a_tool_error(client: Client) -> None:
    result = await client.call_tool("no_such_tool", {})
    assert result.is_error is True
    assert "no_such_tool" in text_of(result)


async def test_identical_calls_share_a_cached_answer_and_are_still_completed(
    loaded_runtime: Runtime,
) -> None:
    completed: list[str] = []

    class RecordingGate(OpenGate):
        async def complete(
            self,
            call: Call,
            grant: Grant,
            outcome: Outcome,
            results: int | None = None,
            answer: Mapping[str, Any] | None = None,
        ) -> Completed | Refusal:
            completed.append(f"{call.target.name}:{outcome}:{results}")
            return Completed()

    settings = loaded_runtime.settings.with_changes(answers={"cache_ttl_s": 60})
    state = ServerState(
        settings=settings, gate=RecordingGate(max_results=100), runtime=loaded_runtime
    )
    assert state.cache is not None
    async with Client(build_server(state)) as client:
        first = await client.call_tool("search_exploits", {"query": "ronin"})
        second = await client.call_tool("search_exploits", {"query": "ronin"})
        other = await client.call_tool("search_exploits", {"query": "euler"})
    assert first.structured_content == second.structured_content
    assert other.structured_content != first.structured_content
    # Every call is metered with its result count, cached or not.
    counts = [len(r.structured_content["incidents"]) for r in (first, second, other)]
    assert completed == [f"search_exploits:ok:{count}" for count in counts]
    assert len(state.cache) == 2


def test_the_cache_can_be_turned_off(loaded_runtime: Runtime) -> None:
    settings = loaded_runtime.settings.with_changes(answers={"cache_ttl_s": 0})
    assert ServerState(settings=settings, gate=OpenGate(max_results=10)).cache is None


async def test_assess_protocol_risk_recommends_checks_only_with_detailed_risk(
    client: Client, loaded_runtime: Runtime
) -> None:
    schema = {t.name: t for t in (await client.list_tools()).tools}["assess_protocol_risk"]
    assert schema.output_schema is not None
    answer = schema.output_schema["anyOf"][0]
    assert "recommendations" in answer["properties"]
    assert "recommendations" not in answer.get("required", [])
    plain = structured(
        await client.call_tool("assess_protocol_risk", {"protocol_name": "Balancer"})
    )
    assert plain["recommendations"] is None
    assert plain["factor_checks"] is None

    class EnterpriseGate(OpenGate):
        async def admit(self, call: Call) -> Grant:
            return Grant(tier="enterprise", max_results=self.max_results, detailed_risk=True)

    state = ServerState(
        settings=loaded_runtime.settings, gate=EnterpriseGate(max_results=2), runtime=loaded_runtime
    )
    async with Client(build_server(state)) as enterprise:
        report = structured(
            await enterprise.call_tool("assess_protocol_risk", {"protocol_name": "Balancer"})
        )
        nothing = structured(
            await enterprise.call_tool("assess_protocol_risk", {"protocol_name": "Zzqqxx Finance"})
        )
    assert len(report["incidents"]) == 2  # the listing is capped, the recommendations are not
    assert report["incident_count"] == 3
    recommendations = report["recommendations"]
    assert {r["attack_type"]: r["incidents"] for r in recommendations} == report["attack_types"]
    assert sum(r["incidents"] for r in recommendations) == 3
    assert max(r["latest"] for r in recommendations) == report["last_incident"]
    assert all(2 <= len(r["checks"]) <= 4 for r in recommendations)
    assert report["factor_checks"]
    assert nothing["recommendations"] == []


async def test_a_wallet_screen_reads_the_chain_and_reports_progress(
    loaded_runtime: Runtime,
) -> None:
    from pydantic import SecretStr

    from tests.explorers.explorer_server import RONIN_ATTACKER, TEST_KEY, ExplorerServer

    wallet = "0x7a11e70000000000000000000000000000000001"
    with ExplorerServer("etherscan", api_key=TEST_KEY) as explorer:
        explorer.send(1, RONIN_ATTACKER, wallet, 10**18, block=5_000_000)
        settings = loaded_runtime.settings.with_changes(
            explorers={
                "urls": {"ethereum": explorer.api_url},
                "etherscan_api_key": SecretStr(TEST_KEY),
                "allow_private": True,
                "defaults": False,
            }
        )
        state = ServerState(
            settings=settings, gate=OpenGate(settings.answers.max_results), runtime=loaded_runtime
        )
        heard: list[tuple[float, float | None, str | None]] = []

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            heard.append((progress, total, message))

        try:
            async with Client(build_server(state)) as client:
                result = await client.call_tool(
                    "check_wallet_interactions",
                    {"wallet_address": wallet},
                    progress_callback=progress,
                )
        finally:
            await state.aclose()
    screen = structured(result)
    assert screen["verdict"] == "warn"
    assert [c["address"] for c in screen["counterparties"]] == [RONIN_ATTACKER]
    assert heard == [
        (0, 1, "reading the history on ethereum"),
        (1, 1, "read ethereum: 1 transactions"),
    ]
