"""A Solana address's history over JSON-RPC: ``getSignaturesForAddress`` then ``getTransaction``.

Signatures come newest first, 1,000 a page (the most a node gives), paged with ``before``; the
transactions are read in JSON-RPC batches as the pages arrive (``jsonParsed``,
``maxSupportedTransactionVersion: 0``) over the shared endpoint pool, which fails over between
the configured endpoints and keeps each under its rate limit.

What is a transfer: System Program ``transfer`` (SOL, 9 decimals; "native" when the
transaction calls it, "internal" when a program does it through CPI) and SPL Token
``transfer`` / ``transferChecked`` (outer and inner instructions). Token accounts are resolved
to their owners and mints from ``pre/postTokenBalances``; an account not listed there stays as
it is (the owner is then unknown, the token account is reported instead).
"""

import asyncio
import dataclasses
import itertools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx2

from kamiyo.explorers.evm_records import utc
from kamiyo.explorers.models import History, TransactionView, Transfer
from kamiyo.explorers.scan import ExplorerError, Scan
from kamiyo.outbound import (
    EndpointError,
    EndpointPool,
    PoolTimeoutError,
    PoolUnavailableError,
    http_failure,
)

PAGE_SIZE = 1000  # getSignaturesForAddress's largest limit
BATCH = 100  # getTransaction calls per JSON-RPC batch
SOL_DECIMALS = 9
_NODE_ERRORS = frozenset({-32005, -32016})  # unhealthy; behind minContextSlot
TX_CONFIG = {
    "encoding": "jsonParsed",
    "maxSupportedTransactionVersion": 0,
    "commitment": "confirmed",
}
_TOKEN_PROGRAMS = ("spl-token", "spl-token-2022")
TOKEN_PROGRAM_IDS = (
    "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
    "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",
)
MAX_TOKEN_ACCOUNTS = 20
_NO_DATA = {"offset": 0, "length": 0}  # only the accounts' addresses are needed

Json = dict[str, Any]


class SolanaClient:
    """Solana histories over ``pool``; ``max_pages`` caps the signature pages read."""

    def __init__(
        self, pool: EndpointPool[httpx2.AsyncClient], *, chain: str, max_pages: int
    ) -> None:
        self.chain = chain
        self.provider = ", ".join(pool.endpoints)
        self._pool = pool
        self._max_pages = max_pages
        self._ids = itertools.count(1)

    async def history(self, address: str, *, deadline: float) -> History:
        """The transfers in and out of ``address`` (owner or token account), newest first.

        A wallet's token transfers are signed against its token accounts, which a node does
        not list under the owner's signatures: the owner's token accounts (both token
        programs, at most ``MAX_TOKEN_ACCOUNTS``) are read too. Token accounts the wallet has
        closed are not found this way.
        """
        scan = Scan(deadline)
        slots: dict[str, int] = {}  # signature -> slot, over every account read
        transactions: dict[str, Json] = {}
        batches: list[asyncio.Task[None]] = []

        async def fetch(batch: list[str]) -> None:
            calls = [("getTransaction", [sig, dict(TX_CONFIG)]) for sig in batch]
            try:
                answers = await self._batch(scan, calls)
            except (ExplorerError, PoolUnavailableError, PoolTimeoutError) as exc:
                scan.fail(f"Solana RPC ({self.provider}): {exc}")
                return
            for sig, tx in zip(batch, answers, strict=True):
                if isinstance(tx, dict):
                    transactions[sig] = tx

        async def pages_of(account: str) -> None:
            before: str | None = None
            try:
                for _ in range(self._max_pages):
                    config: Json = {"limit": PAGE_SIZE, "commitment": "confirmed"}
                    if before is not None:
                        config["before"] = before
                    page = await self._call(scan, "getSignaturesForAddress", [account, config])
                    found = [s for s in page or [] if isinstance(s, dict) and "signature" in s]
                    new = [str(s["signature"]) for s in found if s["signature"] not in slots]
                    slots.update({str(s["signature"]): int(s.get("slot") or 0) for s in found})
                    for start in range(0, len(new), BATCH):
                        batches.append(asyncio.ensure_future(fetch(new[start : start + BATCH])))
                    if len(found) < PAGE_SIZE:
                        return
                    before = str(found[-1]["signature"])
            except (ExplorerError, PoolUnavailableError, PoolTimeoutError) as exc:
                scan.fail(f"Solana RPC ({self.provider}): {exc}")
                return
            scan.cut(
                f"getSignaturesForAddress: stopped at the cap of {self._max_pages} pages of "
                f"{PAGE_SIZE} for {account} (the newest were read)"
            )

        async def read() -> None:
            try:
                accounts = await self._token_accounts(scan, address)
                await asyncio.gather(*(pages_of(a) for a in [address, *accounts]))
                await asyncio.gather(*batches)
            finally:
                for task in batches:
                    task.cancel()
                await asyncio.gather(*batches, return_exceptions=True)

        await scan.run_all([read()])
        newest_first = sorted(slots, key=lambda sig: slots[sig], reverse=True)
        transfers = [
            transfer
            for sig in newest_first
            if sig in transactions
            for transfer in transfers_of(self.chain, sig, transactions[sig], address)
        ]
        return History(
            address=address,
            chain=self.chain,
            provider=self.provider,
            transfers=tuple(transfers),
            transactions_scanned=len(transactions),
            truncated=scan.truncated or len(transactions) < len(slots),
            failures=tuple(scan.failures),
            calls=scan.calls,
            elapsed_s=scan.elapsed(),
        )

    async def _token_accounts(self, scan: Scan, owner: str) -> list[str]:
        """The token accounts ``owner`` holds (none for an address that owns none)."""
        config = {"encoding": "base64", "commitment": "confirmed", "dataSlice": _NO_DATA}
        calls = [
            ("getTokenAccountsByOwner", [owner, {"programId": program}, config])
            for program in TOKEN_PROGRAM_IDS
        ]
        try:
            answers = await self._batch(scan, calls)
        except (ExplorerError, PoolUnavailableError, PoolTimeoutError) as exc:
            scan.fail(f"the token accounts of {owner} could not be listed: {exc}")
            return []
        accounts = [
            str(item["pubkey"])
            for answer in answers
            if isinstance(answer, dict)
            for item in answer.get("value") or []
            if isinstance(item, dict) and "pubkey" in item
        ]
        if len(accounts) > MAX_TOKEN_ACCOUNTS:
            scan.cut(
                f"{owner} holds {len(accounts)} token accounts; the histories of "
                f"{MAX_TOKEN_ACCOUNTS} were read"
            )
        return accounts[:MAX_TOKEN_ACCOUNTS]

    async def transaction(self, signature: str, *, deadline: float) -> TransactionView:
        """One transaction: its fee payer (sender), its transfers, whether it succeeded."""
        scan = Scan(deadline)
        found: Json = {}

        async def read() -> None:
            found["tx"] = await self._call(scan, "getTransaction", [signature, dict(TX_CONFIG)])

        try:
            await scan.run_all([read()])
        except (ExplorerError, PoolUnavailableError, PoolTimeoutError) as exc:
            scan.fail(f"Solana RPC ({self.provider}): {exc}")
        unread = TransactionView(
            tx_hash=signature,
            chain=self.chain,
            provider=self.provider,
            status="unknown",
            failures=tuple(scan.failures),
            calls=scan.calls,
        )
        tx = found.get("tx")
        if not isinstance(tx, dict):
            return dataclasses.replace(unread, status="not_found") if "tx" in found else unread
        transfers = transfers_of(self.chain, signature, tx, None)
        keys = _account_keys(tx)
        meta = tx.get("meta") or {}
        return dataclasses.replace(
            unread,
            status="success" if meta.get("err") is None else "failed",
            sender=keys[0] if keys else None,
            recipient=transfers[0].recipient if transfers else None,
            block=int(tx.get("slot") or 0),
            time=utc(tx.get("blockTime")),
            transfers=tuple(transfers),
        )

    async def _call(self, scan: Scan, method: str, params: list[Any]) -> Any:
        answers = await self._batch(scan, [(method, params)], single=True)
        return answers[0]

    async def _batch(
        self, scan: Scan, calls: Sequence[tuple[str, list[Any]]], *, single: bool = False
    ) -> list[Any]:
        bodies = [
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
            for method, params in calls
        ]
        what = calls[0][0] if single else f"{len(calls)} x {calls[0][0]}"

        async def send(client: httpx2.AsyncClient) -> list[Any]:
            scan.calls += 1
            try:
                response = await client.post("", json=bodies[0] if single else bodies)
            except httpx2.HTTPError as exc:
                raise EndpointError(http_failure(exc)) from None
            if response.status_code != 200:
                raise EndpointError(f"HTTP {response.status_code}")
            try:
                answer = response.json()
            except ValueError:
                raise EndpointError("the answer is not JSON") from None
            answers = [answer] if single else answer
            if not isinstance(answers, list) or len(answers) != len(bodies):
                raise EndpointError("the answer is not a JSON-RPC response to the request")
            by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
            return [_result(by_id.get(body["id"])) for body in bodies]

        return await self._pool.run(send, what=what)


def _result(answer: Json | None) -> Any:
    if answer is None or ("result" not in answer and "error" not in answer):
        raise EndpointError("the answer is not a JSON-RPC response")
    error = answer.get("error")
    if error is None:
        return answer.get("result")
    code = error.get("code") if isinstance(error, dict) else None
    message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
    if not isinstance(code, int) or code in _NODE_ERRORS or code == 429:
        raise EndpointError(f"JSON-RPC error {code}: {message}")
    raise ExplorerError(f"JSON-RPC error {code}: {message}")


def _account_keys(tx: Json) -> list[str]:
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
    keys = _account_keys(tx)
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
