"""Alert rules in the database (SQLite and PostgreSQL): each owner reaches only its own."""

import datetime as dt
import json

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access import accounts
from kamiyo.alerts import manage, secrets
from kamiyo.alerts.events import TEST_EVENT
from kamiyo.alerts.manage import Owner, RuleError
from kamiyo.alerts.rules import AlertFilters
from kamiyo.db.alerts import AlertDelivery, AlertRule
from kamiyo.intel.scope import NotFoundError

pytestmark = pytest.mark.anyio

KEY = SecretStr("a test secret key of some length")
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
WEBHOOK = "https://hooks.example.com/x"
PAYER = "0xAbCdEf0123456789aBcDeF0123456789abCDef01"


async def account_owner(session: AsyncSession, email: str = "owner@example.com") -> Owner:
    account = await accounts.create_account(session, email)
    await session.flush()
    return Owner(account_pk=account.pk)


async def make(
    session: AsyncSession,
    owner: Owner,
    webhook: str | None = WEBHOOK,
    expires_at: dt.datetime | None = None,
) -> AlertRule:
    rule, _ = await manage.create_rule(
        session, owner, None, AlertFilters(), webhook, NOW, secret_key=KEY, expires_at=expires_at
    )
    return rule


async def test_create_list_test_delete(migrated_session: AsyncSession) -> None:
    session = migrated_session
    owner = await account_owner(session)
    filters = AlertFilters(chains=["Ethereum"], min_loss_usd=5e6)
    rule, secret = await manage.create_rule(
        session, owner, "  ", filters, WEBHOOK, NOW, secret_key=KEY
    )
    await session.commit()
    assert rule.id.startswith("alr_")
    assert rule.name == "chains ethereum; losses from $5,000,000"  # a blank name is none
    assert secret is not None
    assert rule.secret is not None
    assert secrets.unseal(KEY, rule.secret) == secret

    delivery_id = await manage.queue_test(session, owner, rule.id, NOW)
    await session.commit()
    row = await session.scalar(select(AlertDelivery).where(AlertDelivery.id == delivery_id))
    assert row is not None
    assert (row.event, row.status, row.outbox_pk, row.next_attempt_at) == (
        TEST_EVENT,
        "pending",
        None,
        NOW,
    )
    body = json.loads(row.body)
    assert body["type"] == TEST_EVENT
    assert body["data"]["alert_id"] == rule.id

    [listed] = await manage.list_rules(session, owner, NOW)
    assert (listed.alert_id, listed.status, listed.filters) == (rule.id, "active", filters)
    assert [d.id for d in listed.deliveries] == [delivery_id]

    assert await manage.delete_rule(session, owner, rule.id) == 1
    await session.commit()
    assert await manage.list_rules(session, owner, NOW) == []
    assert (await session.scalars(select(AlertDelivery))).all() == []
    with pytest.raises(NotFoundError):
        await manage.delete_rule(session, owner, rule.id)


async def test_owners_reach_only_their_own_rules(migrated_session: AsyncSession) -> None:
    session = migrated_session
    owner = await account_owner(session, "one@example.com")
    other = await account_owner(session, "two@example.com")
    payer = Owner.of_payer(PAYER)
    assert payer == Owner(payer=PAYER.lower())  # one wallet, however it was spelled
    mine = await make(session, owner)
    paid = await make(session, payer, expires_at=NOW + dt.timedelta(days=30))
    await session.commit()
    assert [r.alert_id for r in await manage.list_rules(session, owner, NOW)] == [mine.id]
    assert [r.alert_id for r in await manage.list_rules(session, payer, NOW)] == [paid.id]
    assert await manage.list_rules(session, other, NOW) == []
    for alert_id in (mine.id, paid.id):
        with pytest.raises(NotFoundError, match="list_alerts"):
            await manage.queue_test(session, other, alert_id, NOW)
        with pytest.raises(NotFoundError):
            await manage.delete_rule(session, other, alert_id)
    with pytest.raises(NotFoundError):
        await manage.delete_rule(session, payer, mine.id)
    assert await manage.count_rules(session, owner) == 1
    assert await manage.count_rules(session, other) == 0


async def test_the_delivery_log_lists_the_newest_twenty(migrated_session: AsyncSession) -> None:
    session = migrated_session
    owner = await account_owner(session)
    rules = [await make(session, owner), await make(session, owner)]
    sent = [await manage.queue_test(session, owner, rules[0].id, NOW) for _ in range(25)]
    other = await manage.queue_test(session, owner, rules[1].id, NOW)
    await session.commit()
    first, second = await manage.list_rules(session, owner, NOW)
    assert [d.id for d in first.deliveries] == sent[::-1][: manage.DELIVERY_LOG_SIZE]
    assert [d.id for d in second.deliveries] == [other]


async def test_expired_and_disabled_rules(migrated_session: AsyncSession) -> None:
    session = migrated_session
    owner = await account_owner(session)
    expired = await make(session, owner, expires_at=NOW - dt.timedelta(seconds=1))
    disabled = await make(session, owner)
    disabled.enabled, disabled.disabled_reason = False, "10 deliveries failed in a row"
    live = await make(session, owner, expires_at=NOW + dt.timedelta(days=1))
    await session.commit()
    statuses = {r.alert_id: r.status for r in await manage.list_rules(session, owner, NOW)}
    assert statuses == {expired.id: "expired", disabled.id: "disabled", live.id: "active"}
    active = await session.scalars(select(AlertRule.id).where(manage.active(NOW)))
    assert set(active) == {live.id}
    with pytest.raises(RuleError, match="expired"):
        await manage.queue_test(session, owner, expired.id, NOW)
    without_webhook = await make(session, owner, webhook=None)
    with pytest.raises(RuleError, match="no webhook"):
        await manage.queue_test(session, owner, without_webhook.id, NOW)
    assert without_webhook.secret is None


async def test_protocols_resolve_to_name_keys(session: AsyncSession) -> None:
    """On the bundled data: a known name, a likely typo, a name with no incident yet."""
    keys, notes = await manage.resolve_protocols(session, ["Euler Finance", "euler", "Curve"])
    assert (keys, notes) == (["euler", "curve"], [])
    with pytest.raises(RuleError, match="did you mean Euler Finance") as refused:
        await manage.resolve_protocols(session, ["Eulr"])
    assert refused.value.field == "filters.protocols"
    keys, notes = await manage.resolve_protocols(session, ["Qwzxv Protocol"])
    assert keys == ["qwzxv"]
    assert "watches for the first one" in notes[0]
    with pytest.raises(RuleError, match="longer than 256"):
        await manage.resolve_protocols(session, ["x" * 257])
    with pytest.raises(RuleError, match=r"'\\x00!' has no letters or digits"):
        await manage.resolve_protocols(session, ["\x00!"])
