"""find_exploit_by_tx: the incidents an attack transaction belongs to; EVM and Solana forms."""

import datetime as dt

import pytest
from pydantic import ValidationError
from solders.signature import Signature
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo import intel

pytestmark = pytest.mark.anyio

PARITY_TX = "0x9dbf0326a03a2a3719c27be4fa69aacc9857fd231a8d9dcaede4bb083def75ec"
# A Solana transaction signature: 64 bytes in base58.
SOLANA_SIGNATURE = str(Signature.from_bytes(bytes(range(64))))


async def test_an_attack_transaction_finds_its_incident(session: AsyncSession) -> None:
    found = await intel.find_by_transaction(session, intel.TransactionQuery(tx_hash=PARITY_TX))
    assert [i.id for i in found.incidents] == ["20170719_parity-multisig"]
    assert "20170719_parity-multisig" in found.summary


async def test_the_hash_is_read_in_either_case(session: AsyncSession) -> None:
    upper = "0x" + PARITY_TX[2:].upper()
    query = intel.TransactionQuery(tx_hash=upper)
    assert query.tx_hash == PARITY_TX
    assert (await intel.find_by_transaction(session, query)).count == 1


async def test_an_unknown_transaction_says_what_that_means(session: AsyncSession) -> None:
    query = intel.TransactionQuery(tx_hash=SOLANA_SIGNATURE)
    found = await intel.find_by_transaction(session, query)
    assert found.incidents == []
    assert "says nothing about the transaction itself" in found.summary


async def test_the_scope_withholds_newer_incidents(session: AsyncSession) -> None:
    query = intel.TransactionQuery(tx_hash=PARITY_TX)
    hidden = await intel.find_by_transaction(
        session, query, intel.Scope(hide_after=dt.date(2017, 7, 18))
    )
    assert hidden.incidents == []


@pytest.mark.parametrize(
    "value",
    ["0x12", "0x" + "g" * 64, "not a hash", "0" * 66, "5" * 30, "0x" + "a" * 63, "h" * 88],
)
def test_malformed_hashes_are_refused_with_the_forms_expected(value: str) -> None:
    with pytest.raises(ValidationError, match=r"EVM.*Solana"):
        intel.TransactionQuery(tx_hash=value)
