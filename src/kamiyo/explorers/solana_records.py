"""Solana ``jsonParsed`` transactions read into transfers.

System Program ``transfer`` / ``transferWithSeed`` moves SOL (9 decimals): "native" when the
transaction calls it, "internal" when a program does through CPI. SPL Token (and Token-2022)
``transfer`` / ``transferChecked`` move tokens between token accounts, resolved to their owners
and mints from ``pre/postTokenBalances``; an account not listed there is reported as itself
(the owner is then unknown).
"""

import dataclasses
from datetime import datetime
from typing import Any

from kamiyo.explorers.evm_records import utc
from kamiyo.explorers.models import Transfer

SOL_DECIMALS = 9
_TOKEN_PROGRAMS = ("spl-token", "spl-token-2022")

Json = dict[str, Any]


def account_keys(tx: Json) -> list[str]:
    message = (tx.get("transaction") or {}).get("message") or {}
    keys = message.get("accountKeys") or []
    return [str(k.get("pubkey")) if isinstance(k, dict) else str(k) for k in keys]


def _token_accounts(tx: Json, keys: list[str]) -> dict[str, tuple[str | None, str, int | None]]:
    """token account -> (owner, mint, decimals), from the balances before and after."""
    meta = tx.get("meta") or {}
    accounts: dict[str, tuple[str | None, str, int | None]] = {}
    for balance in [*(meta.get("preTokenBalances") or []), *(meta.get("postTokenBalances") or [])]:
        index = balance.get("accountIndex")
        if not isinstance(index, int) or index >= len(keys):
            continue
        decimals = (balance.get("uiTokenAmount") or {}).get("decimals")
        accounts[keys[index]] = (
            balance.get("owner"),
            str(balance.get("mint", "")),
            decimals if isinstance(decimals, int) else None,
        )
    return accounts


def _instructions(tx: Json) -> list[tuple[Json, bool]]:
    """(instruction, inner?) for every parsed instruction, outer ones first in order."""
    message = (tx.get("transaction") or {}).get("message") or {}
    outer = [(ix, False) for ix in message.get("instructions") or []]
    inner = [
        (ix, True)
        for group in (tx.get("meta") or {}).get("innerInstructions") or []
        for ix in group.get("instructions") or []
    ]
    return [(ix, nested) for ix, nested in [*outer, *inner] if isinstance(ix.get("parsed"), dict)]


def transfers_of(chain: str, signature: str, tx: Json, address: str | None) -> list[Transfer]:
    """The SOL and SPL transfers of one ``jsonParsed`` transaction; with ``address``, only those
    it sends or receives (as owner or as the token account itself)."""
    keys = account_keys(tx)
    accounts = _token_accounts(tx, keys)
    meta = tx.get("meta") or {}
    block, time = int(tx.get("slot") or 0), utc(tx.get("blockTime"))
    succeeded = meta.get("err") is None
    found: list[Transfer] = []
    for ix, inner in _instructions(tx):
        parsed, program = ix["parsed"], ix.get("program")
        kind, info = parsed.get("type"), parsed.get("info") or {}
        moved: Transfer | None = None
        if program == "system" and kind in ("transfer", "transferWithSeed"):
            moved = _sol(chain, signature, block, time, info, inner=inner)
        elif program in _TOKEN_PROGRAMS and kind in ("transfer", "transferChecked"):
            moved = _spl(chain, signature, block, time, info, accounts)
        if moved is None:
            continue
        moved = _with_status(moved, succeeded)
        ends = {moved.sender, moved.recipient, info.get("source"), info.get("destination")}
        if address is None or address in ends:
            found.append(moved)
    return found


def _with_status(transfer: Transfer, succeeded: bool) -> Transfer:
    return transfer if succeeded else dataclasses.replace(transfer, succeeded=False)


def _sol(
    chain: str, signature: str, block: int, time: datetime | None, info: Json, *, inner: bool
) -> Transfer | None:
    source, destination, lamports = (
        info.get("source"),
        info.get("destination"),
        info.get("lamports"),
    )
    if not isinstance(source, str) or not isinstance(lamports, int):
        return None
    return Transfer(
        chain=chain,
        tx_hash=signature,
        block=block,
        time=time,
        sender=source,
        recipient=destination if isinstance(destination, str) else None,
        kind="internal" if inner else "native",
        token=None,
        symbol="SOL",
        decimals=SOL_DECIMALS,
        raw_amount=lamports,
    )


def _spl(
    chain: str,
    signature: str,
    block: int,
    time: datetime | None,
    info: Json,
    accounts: dict[str, tuple[str | None, str, int | None]],
) -> Transfer | None:
    source, destination = info.get("source"), info.get("destination")
    if not isinstance(source, str) or not isinstance(destination, str):
        return None
    amount_info = info.get("tokenAmount") or {}
    raw = info.get("amount", amount_info.get("amount"))
    try:
        amount = int(str(raw))
    except ValueError:
        return None
    source_owner, source_mint, source_decimals = accounts.get(source, (None, "", None))
    dest_owner, dest_mint, dest_decimals = accounts.get(destination, (None, "", None))
    decimals = amount_info.get("decimals")
    authority = info.get("authority") or info.get("multisigAuthority")
    return Transfer(
        chain=chain,
        tx_hash=signature,
        block=block,
        time=time,
        sender=source_owner or (authority if isinstance(authority, str) else source),
        recipient=dest_owner or destination,
        kind="token",
        token=str(info.get("mint") or source_mint or dest_mint) or None,
        symbol=None,
        decimals=decimals if isinstance(decimals, int) else _first(source_decimals, dest_decimals),
        raw_amount=amount,
    )


def _first(*values: int | None) -> int | None:
    return next((value for value in values if value is not None), None)
