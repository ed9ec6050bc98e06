"""The alert rules in deploy/ read metrics that exist, under the names they are exported as."""

import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY, generate_latest

from kamiyo.payments import metrics

RULES = Path(__file__).parents[2] / "deploy" / "prometheus" / "kamiyo-x402-rules.yml"
METRIC_NAME = re.compile(r"\bkamiyo_[a-z0-9_]+")


def test_every_metric_in_the_rules_is_exported() -> None:
    # Touch every labelled series once so it appears in the exposition.
    metrics.VERIFICATIONS.labels("eip155:1", "valid").inc(0)
    metrics.SETTLEMENTS.labels("eip155:1", "settled").inc(0)
    metrics.VERIFICATION_SECONDS.labels("eip155:1").observe(0)
    metrics.RPC_ERRORS.labels("rpc.example").inc(0)
    metrics.UNRESOLVED_SETTLEMENTS.labels("landed").inc(0)
    exported = set(METRIC_NAME.findall(generate_latest(REGISTRY).decode()))
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    assert {rule["alert"] for rule in rules} == {
        "KamiyoPaymentFailureRateHigh",
        "KamiyoRpcErrors",
        "KamiyoVerificationSlow",
        "KamiyoSettlementsUnanswered",
    }
    for rule in rules:
        used = set(METRIC_NAME.findall(rule["expr"]))
        assert used, rule["alert"]
        assert used <= exported, (rule["alert"], used - exported)
