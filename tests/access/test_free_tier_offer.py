"""The free tier never blocks (issue 16): the gate's decision for anonymous calls with x402 on.

An anonymous call from a client address to a priced tool the free tier unlocks is admitted on
the free tier, its grant carrying the quote the answer's offer is made from; over stdio, with
anonymous access off, for a tool the free tier lacks, or with a payment, it goes the paid way.
No chain is needed: nothing here verifies a payment (the RPC endpoint is one nothing serves).
"""

import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access.account_gate import AccountGate
from kamiyo.access.gate import Call, Grant, Refusal, RefusalReason
from kamiyo.chains import AcceptedNetwork
from kamiyo.config import AuthSettings, Settings
from kamiyo.payments.outcomes import RawPayment
from kamiyo.service.catalogue import OPERATIONS, target
from kamiyo.service.offers import OFFER_FIELD, answer_model, paid_offer
from kamiyo.tiers import TIERS, Tier
from tests.conftest import MigratedTemplates
from tests.payments.serving import cashier_for

pytestmark = pytest.mark.anyio

NETWORK = "eip155:84532"
PEER = "198.51.100.40"
SETTINGS = Settings(
    auth=AuthSettings(secret_key="o" * 48, tier_cache_s=0),
    x402={
        "networks": [
            AcceptedNetwork(
                network=NETWORK, pay_to="0x" + "22" * 20, rpc_urls=["http://127.0.0.1:9"]
            )
        ],
        "evm_relayer_key": SecretStr("0x" + "cd" * 32),
    },
    site={"upgrade_url": "https://kamiyo.example/pricing"},
    _env_file=None,
)

GateFactory = Callable[..., Awaitable[AccountGate]]


@pytest.fixture
async def migrated_database_url(tmp_path: Path, migrated_templates: MigratedTemplates) -> str:
    """SQLite only: the decision is the gate's, the same on either backend (the paid path runs
    on PostgreSQL in tests/payments/test_paid_limits.py)."""
    return await migrated_templates.new_url("sqlite", tmp_path)


@pytest.fixture
async def make_gate(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[GateFactory]:
    async with AsyncExitStack() as stack:

        async def make(**sections: dict[str, object]) -> AccountGate:
            settings = SETTINGS.with_changes(**sections)
            gate = AccountGate(settings, cashier_for(settings))
            await stack.enter_async_context(gate.serving(migrated_sessions))
            return gate

        yield make


def anonymous(tool: str, peer: str = PEER, **fields: object) -> Call:
    return Call(target(tool), peer=peer, resource=f"mcp://tool/{tool}", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("peer", [PEER, "local"])  # over HTTP, and over stdio
async def test_an_anonymous_call_is_admitted_on_the_free_tier_with_the_quote(
    make_gate: GateFactory, peer: str
) -> None:
    gate = await make_gate()
    grant = await gate.admit(anonymous("search_exploits", peer, size=10))
    assert isinstance(grant, Grant)
    free = TIERS[Tier.FREE]
    assert (grant.tier, grant.max_results, grant.payment) == ("free", free.max_results, None)
    assert grant.hide_after is not None
    assert grant.hide_after < dt.datetime.now(dt.UTC).date()
    assert grant.subject == f"peer:{peer}"
    assert grant.offer is not None
    assert grant.offer.amount == 10_000
    assert [r.network for r in grant.offer.required.accepts] == [NETWORK]


async def test_the_free_tiers_limits_still_apply(make_gate: GateFactory) -> None:
    gate = await make_gate()
    per_minute = TIERS[Tier.FREE].requests_per_minute
    for _ in range(per_minute):
        assert isinstance(await gate.admit(anonymous("get_exploit_stats")), Grant)
    over = await gate.admit(anonymous("get_exploit_stats"))
    assert isinstance(over, Refusal)
    assert over.reason is RefusalReason.RATE_LIMITED
    # Over the free tier's limit the call may still be paid for: when to retry, or the offer.
    assert over.retry_after_s is not None
    assert f"Retry in {over.retry_after_s} s; or pay: get_exploit_stats costs $0.005" in (
        over.message
    )
    assert over.payment_required is not None
    assert over.payment_required.accepts[0].amount == "5000"
    # Another address has its own window.
    assert isinstance(await gate.admit(anonymous("get_exploit_stats", "198.51.100.41")), Grant)


@pytest.mark.parametrize(
    ("tool", "peer", "auth"),
    [
        ("assess_protocol_risk", PEER, {}),  # the free tier lacks it
        ("search_exploits", PEER, {"allow_anonymous": False}),  # no free tier without a key
    ],
)
async def test_other_anonymous_calls_still_ask_for_payment(
    make_gate: GateFactory, tool: str, peer: str, auth: dict[str, object]
) -> None:
    gate = await make_gate(auth=auth)
    asked = await gate.admit(anonymous(tool, peer))
    assert isinstance(asked, Refusal)
    assert asked.reason is RefusalReason.PAYMENT_REQUIRED
    assert asked.payment_required is not None


async def test_a_call_carrying_a_payment_goes_the_paid_way(make_gate: GateFactory) -> None:
    gate = await make_gate()
    refused = await gate.admit(anonymous("search_exploits", payment=RawPayment("%% not one %%")))
    assert isinstance(refused, Refusal)  # read as a payment (and refused), not served free
    assert refused.payment_required is not None
    assert refused.payment_required.error == "invalid_payload"


async def test_the_offer_is_short_says_what_paying_adds_and_fits_the_declared_schema(
    make_gate: GateFactory,
) -> None:
    gate = await make_gate()
    grant = await gate.admit(anonymous("search_exploits"))
    assert isinstance(grant, Grant)
    assert grant.offer is not None
    offer = paid_offer(grant.offer, SETTINGS.site.upgrade_url).model_dump(mode="json")
    assert offer["price_usd"] == "$0.01"
    assert offer["networks"] == [NETWORK]
    assert offer["upgrade_url"] == "https://kamiyo.example/pricing"
    assert "older than 24 h" in offer["message"]
    assert "$0.01" in offer["message"]
    assert offer["payment_required"]["accepts"][0]["payTo"] == "0x" + "22" * 20
    brief = {k: v for k, v in offer.items() if k != "payment_required"}
    assert len(json.dumps(brief)) < 900  # short: the x402 object aside, a few hundred bytes
    # Every free-tier priced tool declares the field; the others do not.
    search = next(op for op in OPERATIONS if op.name == "search_exploits")
    schema = answer_model(search, payments=True).model_json_schema()
    answer = {"incidents": [], "count": 0, "truncated": False, "limit": 10, OFFER_FIELD: offer}
    assert not list(Draft202012Validator(schema).iter_errors(answer))
    for op in OPERATIONS:
        declared = OFFER_FIELD in answer_model(op, True).model_json_schema().get("properties", {})
        assert declared == (op.price is not None and op.tier is Tier.FREE), op.name
        assert OFFER_FIELD not in answer_model(op, False).model_json_schema().get("properties", {})


async def test_what_a_wallet_needs_before_paying_takes_no_account(make_gate: GateFactory) -> None:
    gate = await make_gate(auth={"allow_anonymous": False})
    for tool in ("get_pricing", "health_check", "get_usage"):
        assert isinstance(await gate.admit(anonymous(tool)), Grant), tool
