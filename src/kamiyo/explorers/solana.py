"""A Solana address's history over JSON-RPC: ``getSignaturesForAddress`` then ``getTransaction``.

Signatures come newest first, 1,000 a page (the most a node gives), paged with ``before``; the
transactions are read in JSON-RPC batches as the pages arrive (``jsonParsed``,
``maxSupportedTransactionVersion: 0``) over the shared endpoint pool, which fails over between
the configured endpoints and keeps each under its rate limit.

What a transfer is, and how token accounts are resolved to owners: ``solana_records.py``.
"""

import asyncio
import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import httpx2

from kamiyo.explorers.evm_records import utc
from kamiyo.explorers.models import History, TransactionView
from kamiyo.explorers.scan import ExplorerError, Scan
from kamiyo.explorers.solana_records import account_keys, transfers_of
from kamiyo.outbound import (
    EndpointError,
    EndpointPool,
    PoolTimeoutError,
    PoolUnavailableError,
    http_failure,
)

PAGE_SIZE = 1000  # getSignaturesForAddress's largest limit
BATCH = 100  # getTransaction calls per JSON-RPC batch
_NODE_ERRORS = frozenset({-32005, -32016})  # unhealthy; behind minContextSlot
TX_CONFIG = {
    "encoding": "jsonParsed",
    "maxSupportedTransactionVersion": 0,
    "commitment": "confirmed",
}
TOKEN_PROGRAM_IDS = (
    "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
    "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",
)
MAX_TOKEN_ACCOUNTS = 20
_NO_DATA = {"offset": 0, "length": 0}  # only the accounts' addresses are needed

Json = dict[str, Any]


class SolanaClient:
    """Solana histories over ``pool`` (the chain's RPC endpoints)."""

    def __init__(self, pool: EndpointPool[httpx2.AsyncClient], *, chain: str) -> None:
        self.chain = chain
        self.provider = ", ".join(pool.endpoints)
        self._pool = pool
        self._ids = itertools.count(1)

    async def history(self, address: str, scan: Scan) -> History:
        """The transfers in and out of ``address`` (owner or token account), newest first.

        A wallet's token transfers are signed against its token accounts, which a node does
        not list under the owner's signatures: the owner's token accounts (both token
        programs, at most ``MAX_TOKEN_ACCOUNTS``) are read too. Token accounts the wallet has
        closed are not found this way.
        """
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
                for _ in range(scan.max_pages):
                    config: Json = {"limit": PAGE_SIZE, "commitment": "confirmed"}
                    if before is not None:
                        config["before"] = before
                    page = await self._call(scan, "getSignaturesForAddress", [account, config])
                    found = [s for s in page or [] if isinstance(s, dict) and "signature" in s]
                    scan.read(len(found))
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
                f"getSignaturesForAddress: stopped at the cap of {scan.max_pages} pages of "
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
            failed=scan.failed,
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

    async def transaction(self, signature: str, scan: Scan) -> TransactionView:
        """One transaction: its fee payer (sender), its transfers, whether it succeeded."""
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
        keys = account_keys(tx)
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
