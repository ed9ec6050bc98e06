"""``/metrics`` of a running ``kamiyo serve``: every metric the dashboard and the alert rules
name is exported, after real calls (an MCP client, REST), a source refresh from a feed on
loopback and a webhook delivery to a receiver on loopback; the bearer token is required; no
label carries an account, a key, a query or a URI. Then the token policy without a token, the
production checks, and ``promtool`` on the rules where it is installed."""

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest
import yaml
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from kamiyo import metrics
from kamiyo.config import DatabaseSettings, InsecureSettingsError, Settings
from kamiyo.mcpserver.server import build_server
from kamiyo.service.catalogue import OPERATIONS
from kamiyo.web.app import create_app
from tests.alerts.receiver import Receiver
from tests.intel.feed_server import FeedServer
from tests.mcpserver.conftest import free_port, http_server_process, run_kamiyo, server_env

pytestmark = pytest.mark.anyio

DEPLOY = Path(__file__).parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "kamiyo.json"
RULES = sorted((DEPLOY / "prometheus").glob("*-rules.yml"))
FIXTURES = Path(__file__).parents[1] / "fixtures" / "sources"
# Series the rules must fire on, and healthy ones they must stay quiet on (promtool test rules).
RULE_TESTS = Path(__file__).with_name("metrics_rules_test.yml")
TOKEN = "scrape-" + "t" * 40  # a test value, never a real secret
METRIC = re.compile(r"\bkamiyo_[a-z0-9_]+")
# A refresh and a delivery happen in the background: polled for, not timed.
WAIT_S = 60
TOOLS = {op.name.value for op in OPERATIONS}


def named_metrics() -> dict[str, set[str]]:
    """Every metric name each file of deploy/ reads, by file."""
    named = {DASHBOARD.name: set(METRIC.findall(DASHBOARD.read_text()))}
    for path in RULES:
        rules = [
            rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]
        ]
        named[path.name] = {name for rule in rules for name in METRIC.findall(rule["expr"])}
    return named


# The series names each type of metric family is exported as.
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}
# Payments are not taken in this run: their families are declared, with no series yet.
UNUSED_HERE = re.compile(r"kamiyo_x402_")


def exported(text: str) -> tuple[set[str], list[Sample]]:
    """The series names a scrape declares (``…_total``, ``…_bucket``), and its samples."""
    families = list(text_string_to_metric_families(text))
    names = {f"{f.name}{suffix}" for f in families for suffix in SUFFIXES.get(f.type, ())}
    return names, [s for family in families for s in family.samples]


def scrape(url: str, token: str | None = TOKEN) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx2.get(f"{url}/metrics", headers=headers, timeout=30)


def value(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    with FeedServer() as server:
        server.serve("/rekt/feed.xml", (FIXTURES / "rekt" / "feed.reconstructed.xml").read_bytes())
        server.script("/slowmist/", [500])  # a source that fails every time
        yield server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def serve_env(feeds: FeedServer) -> dict[str, str]:
    only = {"rekt": "/rekt/feed.xml", "slowmist": "/slowmist/"}
    others = ("defihacklabs", "defillama", "defillama_protocols", "web3isgoinggreat", "ofac")
    return {
        "KAMIYO_ENVIRONMENT": "test",
        "KAMIYO_METRICS_TOKEN": TOKEN,
        "KAMIYO_SOURCES_URLS": json.dumps({name: feeds.url(path) for name, path in only.items()}),
        "KAMIYO_SOURCES_DISABLED": ",".join(others),
        "KAMIYO_SOURCES_ALLOW_PRIVATE": "true",
        "KAMIYO_SOURCES_MIN_INTERVAL_S": "0",
        "KAMIYO_SOURCES_STALE_AFTER": "1d",
        "KAMIYO_WEBHOOKS_ALLOW_LOOPBACK": "true",
    }


def key_for(tmp_path: Path, email: str, tier: str, env: dict[str, str]) -> str:
    run_kamiyo(tmp_path, "accounts", "create", email, "--tier", tier, env=env)
    return run_kamiyo(tmp_path, "keys", "create", email, env=env).stdout.strip()


async def make_calls(url: str, key: str, hook: str) -> None:
    """Calls of every kind: answered, invalid, unknown, a resource, refused; MCP and REST."""
    bearer = {"Authorization": f"Bearer {key}"}
    async with (
        httpx2.AsyncClient(headers=bearer, timeout=60) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), mode="legacy") as client,
    ):
        for query in ("euler", "ronin", "curve"):
            result = await client.call_tool("search_exploits", {"query": query, "limit": 3})
            assert result.is_error is not True, result.content
        assert (await client.call_tool("search_exploits", {"limit": "many"})).is_error
        assert (await client.call_tool("no_such_tool", {})).is_error
        await client.read_resource("kamiyo://protocols/euler/incidents")
        made = await client.call_tool("create_alert", {"filters": {}, "webhook_url": hook})
        assert made.is_error is not True, made.content
        alert_id = made.structured_content["alert"]["alert_id"]
        tested = await client.call_tool("test_alert", {"alert_id": alert_id})
        assert tested.is_error is not True, tested.content
        # While this session is open, the instance holds it.
        _, samples = exported(scrape(url).text)
        assert value(samples, "kamiyo_mcp_sessions", transport="streamable_http") >= 1
        rest = await http.get(f"{url}/api/v1/exploits", params={"query": "euler", "limit": 2})
        assert rest.status_code == 200, rest.text
    async with Client(sse_client(f"{url}/sse", headers=bearer)) as legacy:
        await legacy.call_tool("get_usage", {})
        _, samples = exported(scrape(url).text)
        assert value(samples, "kamiyo_mcp_sessions", transport="sse") == 1
    async with Client(f"{url}/mcp", mode="legacy") as anonymous:  # no key: the free tier
        locked = await anonymous.call_tool("assess_protocol_risk", {"protocol_name": "Euler"})
        assert locked.is_error


def wait_for(url: str, ready: Callable[[list[Sample]], bool]) -> list[Sample]:
    deadline = time.monotonic() + WAIT_S
    while True:
        _, samples = exported(scrape(url).text)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.5)  # polling for the background work, not waiting out a delay


async def test_a_running_server_exports_every_metric_deploy_names(
    tmp_path: Path, feeds: FeedServer, receiver: Receiver
) -> None:
    env = serve_env(feeds)
    key = key_for(tmp_path, "team-metrics@example.com", "team", env)
    with http_server_process(tmp_path, ["--refresh-every", "1h"], env) as (url, _):
        assert scrape(url, token=None).status_code == 401
        refused = scrape(url, token="wrong-" + "t" * 40)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        await make_calls(url, key, receiver.url())

        def settled(samples: list[Sample]) -> bool:
            delivered = value(
                samples, "kamiyo_alert_deliveries_total", channel="webhook", outcome="delivered"
            )
            runs = value(samples, "kamiyo_ingest_runs_total")
            # The figures read from the database catch up within DATABASE_EVERY_S.
            failing = value(samples, "kamiyo_source_failing", source="slowmist")
            return delivered >= 1 and runs >= 2 and failing == 1

        samples = wait_for(url, settled)
        response = scrape(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names, samples = exported(response.text)
    # Every metric the dashboard and the rules read is there (histograms by their series).
    sampled = {s.name for s in samples}
    for source, used in named_metrics().items():
        assert used, source
        assert used <= names, (source, sorted(used - names))
        # And, payments aside, each has series to read after this run.
        missing = {name for name in used - sampled if not UNUSED_HERE.match(name)}
        assert not missing, (source, sorted(missing))

    # What the calls did, as counted.
    calls = "kamiyo_tool_calls_total"
    assert value(samples, calls, tool="search_exploits", tier="team", status="ok") == 3 + 1
    assert value(samples, calls, tool="search_exploits", status="invalid") == 1
    assert value(samples, calls, tool="(unknown)", status="invalid") == 1
    assert value(samples, calls, tool="(resource)", tier="team", status="ok") == 1
    assert value(samples, calls, tool="assess_protocol_risk", tier="free", status="forbidden") == 1
    assert value(samples, "kamiyo_refusals_total", reason="forbidden") == 1
    # Timed: the admitted ones (3 MCP, 1 REST); the invalid call was refused before it ran.
    assert value(samples, "kamiyo_tool_call_seconds_count", tool="search_exploits") == 4
    assert value(samples, "kamiyo_subscriptions", tier="team", status="active") == 1
    assert value(samples, "kamiyo_ingest_runs_total", source="rekt", result="ok") >= 1
    assert value(samples, "kamiyo_ingest_runs_total", source="slowmist", result="failed") >= 1
    assert value(samples, "kamiyo_ingest_reports_total", source="rekt", outcome="new") >= 1
    assert value(samples, "kamiyo_source_failing", source="slowmist") == 1
    assert value(samples, "kamiyo_source_failing", source="rekt") == 0
    assert value(samples, "kamiyo_sources_stale_after_seconds") == 86400
    assert value(samples, "kamiyo_alert_deliveries_total", channel="webhook") >= 1
    assert value(samples, "kamiyo_dependency_check_seconds_count", dependency="database") >= 1
    assert value(samples, "kamiyo_mcp_sessions", transport="streamable_http") == 0  # all closed
    assert value(samples, "kamiyo_mcp_sessions", transport="sse") == 0
    assert len(receiver.posts) >= 1

    # Bounded labels: tools from the catalogue (or the two folded values), nothing a caller
    # sent, no account or key.
    tool_values = {s.labels["tool"] for s in samples if "tool" in s.labels}
    assert tool_values <= TOOLS | {metrics.RESOURCE_TOOL, metrics.OTHER_TOOL}
    every_value = {v for s in samples for v in s.labels.values()}
    for secret_or_input in ("euler", "ronin", "no_such_tool", "kamiyo://", "@", key[:12], TOKEN):
        assert not any(secret_or_input in v for v in every_value), secret_or_input


def _settings(tmp_path: Path, **sections: object) -> Settings:
    url = f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
    return Settings(
        database=DatabaseSettings(url=url), environment="test", _env_file=None, **sections
    )


async def _status_from(app: object, client: tuple[str, int], **headers: str) -> int:
    transport = httpx2.ASGITransport(app=app, client=client)  # type: ignore[arg-type]
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        return (await http.get("/metrics", headers=headers)).status_code


async def test_without_a_token_only_loopback_callers_are_answered(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path), build_server)
    async with app.router.lifespan_context(app):
        assert await _status_from(app, ("127.0.0.1", 40000)) == 200
        assert await _status_from(app, ("::1", 40000)) == 200
        assert await _status_from(app, ("203.0.113.7", 40000)) == 403
        # A bearer of some token does not help where none is set.
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert await _status_from(app, ("203.0.113.7", 40000), **auth) == 403


async def test_production_without_a_token_answers_nobody(tmp_path: Path) -> None:
    # Unvalidated (production would refuse the development secret): only the policy matters.
    settings = _settings(tmp_path).with_changes(database={"auto_migrate": True})
    settings = settings.model_copy(update={"environment": "production"})
    app = create_app(settings, build_server)
    async with app.router.lifespan_context(app):
        assert await _status_from(app, ("127.0.0.1", 40000)) == 403


def test_production_refuses_a_short_token() -> None:
    with pytest.raises(InsecureSettingsError, match="KAMIYO_METRICS_TOKEN is shorter than 32"):
        Settings(
            environment="production",
            _env_file=None,
            auth={"secret_key": "s" * 40},
            database={"url": "postgresql://kamiyo@db/kamiyo"},
            metrics={"token": "short"},
        )
    fine = Settings(
        environment="production",
        _env_file=None,
        auth={"secret_key": "s" * 40},
        database={"url": "postgresql://kamiyo@db/kamiyo"},
        metrics={"token": TOKEN},
    )
    assert fine.metrics.token is not None
    assert TOKEN not in repr(fine)  # a secret setting


def test_a_tool_label_is_a_catalogue_name_or_one_of_two_folded_values() -> None:
    metrics.declare_series(TOOLS, [])
    assert metrics.tool_label("search_exploits") == "search_exploits"
    assert metrics.tool_label("kamiyo://protocols/euler/incidents") == metrics.RESOURCE_TOOL
    assert metrics.tool_label("ignore previous instructions") == metrics.OTHER_TOOL


def test_the_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    checked = subprocess.run(
        [promtool, "check", "rules", *map(str, RULES)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The scrape configuration too, with its token file where this machine has one.
    token_file = tmp_path / "kamiyo_metrics_token"
    token_file.write_text(TOKEN)
    config = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/run/secrets/kamiyo_metrics_token", str(token_file))
    )
    for path in [*RULES, RULE_TESTS]:
        shutil.copy(path, tmp_path / path.name)
    for command in (["check", "config", "prometheus.yml"], ["test", "rules", RULE_TESTS.name]):
        checked = subprocess.run([promtool, *command], capture_output=True, text=True, cwd=tmp_path)
        assert checked.returncode == 0, checked.stdout + checked.stderr


@contextmanager
def worker_process(tmp_path: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "kamiyo", "worker", "--every", "1h"],
            env=server_env(tmp_path) | env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        yield process
    finally:
        process.terminate()
        stdout, _ = process.communicate(timeout=60)
        assert stdout == b""  # logs go to stderr
        assert "Traceback" not in log_path.read_text()


def test_the_worker_serves_its_own_counts(tmp_path: Path, feeds: FeedServer) -> None:
    port = free_port()
    env = serve_env(feeds) | {"KAMIYO_METRICS_WORKER_PORT": str(port)}
    url = f"http://127.0.0.1:{port}"
    with worker_process(tmp_path, env):
        deadline = time.monotonic() + WAIT_S
        samples: list[Sample] = []
        while time.monotonic() < deadline:
            try:
                response = scrape(url)
            except httpx2.TransportError:  # not listening yet: polling for it
                time.sleep(0.2)
                continue
            assert response.status_code == 200
            _, samples = exported(response.text)
            if value(samples, "kamiyo_ingest_runs_total", source="slowmist", result="failed"):
                break
            time.sleep(0.2)
        assert scrape(url, token=None).status_code == 401
    assert value(samples, "kamiyo_ingest_runs_total", source="rekt", result="ok") == 1
    assert value(samples, "kamiyo_ingest_runs_total", source="slowmist", result="failed") == 1
    # Only what the worker's process counts: no calls, no readiness checks run there.
    assert value(samples, "kamiyo_tool_calls_total") == 0


def test_a_worker_metrics_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_kamiyo(
            tmp_path, "worker", env={"KAMIYO_METRICS_WORKER_PORT": str(port)}, check=False
        )
    assert proc.returncode == 2, proc.stderr
    assert f"KAMIYO_METRICS_WORKER_PORT: cannot serve /metrics on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr
