"""One client for the Etherscan module/action API: Etherscan V2, Blockscout's and Routescan's
``/api`` endpoints.

A history is four lists read at once, newest first, in pages of 1,000 (Etherscan's free tier
returns at most 1,000 records a call since July 2026): ``account/txlist`` (normal
transactions), ``account/txlistinternal`` (value moved by contracts), ``account/tokentx``
(ERC-20 transfers) and ``logs/getLogs`` for the ERC-20 Approval events the address emitted as
owner. One transaction is ``eth_getTransactionByHash``, ``eth_getTransactionReceipt`` (its
Transfer logs) and ``txlistinternal&txhash=``; Etherscan serves the JSON-RPC calls as the
``proxy`` module, Blockscout has no proxy module and takes them as JSON-RPC at ``/api/eth-rpc``
(the client switches when the provider says the module is unknown).

The answers: ``status "1"`` with a list; ``status "0"`` with an empty list or "No transactions
found" / "No records found" is an empty list; "Max rate limit reached" is retried after a
backoff (the endpoint pool's, bounded by its attempts); NOTOK and other refusals fail that part
of the read with the provider's one-line reason, the API key cut out.
"""

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import httpx2

from kamiyo.chains import Chain
from kamiyo.explorers.evm_records import (
    APPROVAL_TOPIC,
    approvals_from_logs,
    internal_transfer,
    normal_transfer,
    receipt_transfers,
    to_int,
    token_transfer,
    utc,
)
from kamiyo.explorers.models import History, TransactionStatus, TransactionView, Transfer
from kamiyo.explorers.scan import ExplorerError, Scan
from kamiyo.outbound import (
    EndpointError,
    EndpointPool,
    PoolTimeoutError,
    PoolUnavailableError,
    http_failure,
)

PAGE_SIZE = 1000
PAGE_WINDOW = 3  # pages fetched at once once the first page shows there are more
_EMPTY = ("no transactions found", "no records found", "no token transfers found", "no logs")
_UNKNOWN_MODULE = ("unknown module", "unknown action", "not supported")
_INTERNAL_OF_TX = {"module": "account", "action": "txlistinternal"}
_RPC_PARAMS = {
    "eth_getTransactionByHash": ("txhash",),
    "eth_getTransactionReceipt": ("txhash",),
    "eth_getBlockByNumber": ("tag", "boolean"),
}

Row = dict[str, Any]
Redactor = Callable[[str], str]


def _no_redaction(text: str) -> str:
    return text


class EtherscanClient:
    """One chain on one provider. ``pool`` is the provider's (one per base URL, shared by the
    chains it serves, so its rate limit counts every chain's calls); ``chain_id`` is sent as
    ``chainid`` when set (Etherscan V2)."""

    def __init__(
        self,
        pool: EndpointPool[httpx2.AsyncClient],
        *,
        chain: Chain,
        provider: str,
        native_symbol: str,
        chain_id: int | None,
        redact: Redactor = _no_redaction,
    ) -> None:
        self.chain = chain
        self.provider = provider
        self._pool = pool
        self._native = native_symbol
        self._chain_id = chain_id
        self._redact = redact
        self._json_rpc = False  # learnt: the provider takes JSON-RPC at eth-rpc, not proxy

    async def history(self, address: str, scan: Scan) -> History:
        """Everything the provider has on ``address`` (normalised, lower case) until the
        scan's page cap or deadline, whichever comes first."""
        normal: list[Row] = []
        internal: list[Row] = []
        token: list[Row] = []
        logs: list[Row] = []
        account = {"module": "account", "address": address, "startblock": 0, "sort": "desc"}
        approvals = {
            "module": "logs",
            "action": "getLogs",
            "fromBlock": 0,
            "toBlock": "latest",
            "topic0": APPROVAL_TOPIC,
            "topic1": "0x" + address.removeprefix("0x").rjust(64, "0"),
            "topic0_1_opr": "and",
        }
        await scan.run_all(
            [
                self._list(scan, {**account, "action": "txlist"}, normal),
                self._list(scan, {**account, "action": "txlistinternal"}, internal),
                self._list(scan, {**account, "action": "tokentx"}, token),
                self._list(scan, approvals, logs),
            ]
        )
        slug = self.chain.slug
        transfers: dict[tuple[object, ...], Transfer] = {}
        read: list[tuple[Row, Transfer | None]] = [
            *((r, normal_transfer(slug, r, self._native)) for r in normal),
            *((r, internal_transfer(slug, r, self._native)) for r in internal),
            *((r, token_transfer(slug, r)) for r in token),
        ]
        # Pages read newest first can overlap when transactions land meanwhile: the same
        # record twice is one transfer. (Two identical token transfers in one transaction,
        # which tokentx tells apart by nothing, are then one too.)
        for row, transfer in read:
            if transfer is not None:
                key = (row.get("logIndex"), row.get("traceId"), transfer)
                transfers.setdefault(key, transfer)
        ordered = sorted(transfers.values(), key=lambda t: t.block, reverse=True)
        return History(
            address=address,
            chain=slug,
            provider=self.provider,
            transfers=tuple(ordered),
            approvals=approvals_from_logs(slug, address, logs),
            transactions_scanned=len({t.tx_hash for t in ordered}),
            truncated=scan.truncated,
            failures=tuple(scan.failures),
            failed=scan.failed,
            calls=scan.calls,
            elapsed_s=scan.elapsed(),
        )

    async def transaction(self, tx_hash: str, scan: Scan) -> TransactionView:
        """One transaction and the value it moved; ``status`` "not_found" if the provider
        does not know it, "unknown" if it could not be read (see ``failures``)."""
        found: dict[str, Any] = {}

        async def read() -> None:
            found["tx"] = await self._rpc(scan, "eth_getTransactionByHash", {"txhash": tx_hash})
            tx = found["tx"]
            if not isinstance(tx, dict):
                return
            block = tx.get("blockNumber")
            parts = [
                self._rpc(scan, "eth_getTransactionReceipt", {"txhash": tx_hash}),
                self._get(
                    scan, {"module": "account", "action": "txlistinternal", "txhash": tx_hash}
                ),
            ]
            if block:
                parts.append(
                    self._rpc(scan, "eth_getBlockByNumber", {"tag": block, "boolean": False})
                )
            found["receipt"], found["internal"], *rest = await asyncio.gather(*parts)
            found["block"] = rest[0] if rest else None

        try:
            await scan.run_all([read()])
        except (ExplorerError, PoolUnavailableError, PoolTimeoutError) as exc:
            scan.fail(f"{self.provider}: {self._redact(str(exc))}")
        return self._view(tx_hash, scan, found)

    def _view(self, tx_hash: str, scan: Scan, found: dict[str, Any]) -> TransactionView:
        unread = TransactionView(
            tx_hash=tx_hash,
            chain=self.chain.slug,
            provider=self.provider,
            status="unknown",
            failures=tuple(scan.failures),
            calls=scan.calls,
        )
        tx = found.get("tx")
        if "tx" in found and tx is None and not scan.failures:
            return dataclasses.replace(unread, status="not_found")
        if not isinstance(tx, dict) or "receipt" not in found:
            return unread
        block_info = found.get("block")
        time = utc(block_info.get("timestamp")) if isinstance(block_info, dict) else None
        block = to_int(tx["blockNumber"]) if tx.get("blockNumber") else None
        sender = str(tx.get("from", "")).lower()
        recipient = str(tx["to"]).lower() if tx.get("to") else None
        receipt = found["receipt"] if isinstance(found["receipt"], dict) else {}
        status: TransactionStatus = "pending"
        if receipt.get("status") in ("0x1", "0x0"):
            status = "success" if receipt["status"] == "0x1" else "failed"
        transfers: list[Transfer] = []
        if block is not None:
            first = normal_transfer(
                self.chain.slug,
                {
                    "hash": tx_hash,
                    "blockNumber": block,
                    "from": sender,
                    "to": recipient or "",
                    "contractAddress": receipt.get("contractAddress") or "",
                    "value": to_int(tx.get("value") or 0),
                    "isError": "0" if status == "success" else "1",
                },
                self._native,
                time=time,
            )
            if first is not None:
                transfers.append(first)
            for row in found.get("internal") or []:
                moved = internal_transfer(self.chain.slug, row, self._native)
                if moved is not None:
                    transfers.append(moved)
            transfers.extend(receipt_transfers(self.chain.slug, tx_hash, block, time, receipt))
        return dataclasses.replace(
            unread,
            status=status,
            sender=sender,
            recipient=recipient,
            block=block,
            time=time,
            transfers=tuple(transfers),
        )

    async def _list(self, scan: Scan, params: Row, sink: list[Row]) -> None:
        """Pages of ``params`` into ``sink`` until a short page, the cap or a failure."""
        what, cap = str(params["action"]), scan.max_pages
        page = 1
        try:
            first = await self._page(scan, params, 1)
            sink.extend(first)
            if len(first) < PAGE_SIZE:
                return
            while page < cap:
                window = range(page + 1, min(page + PAGE_WINDOW, cap) + 1)
                pages = await asyncio.gather(*(self._page(scan, params, n) for n in window))
                for rows in pages:
                    if rows and rows[0] == first[0]:  # the provider ignores ``page``
                        scan.cut(f"{what}: {self.provider} does not page it; {PAGE_SIZE} read")
                        return
                    sink.extend(rows)
                    if len(rows) < PAGE_SIZE:
                        return
                page = window[-1]
        except ExplorerError as exc:
            scan.fail(f"{what} on {self.provider}: {self._redact(str(exc))}")
            return
        except (PoolUnavailableError, PoolTimeoutError) as exc:  # they name the request
            scan.fail(self._redact(str(exc)))
            return
        scan.cut(
            f"{what}: stopped at the cap of {cap} pages of {PAGE_SIZE} "
            "(the newest records were read)"
        )

    async def _page(self, scan: Scan, params: Row, page: int) -> list[Row]:
        rows = await self._get(scan, {**params, "page": page, "offset": PAGE_SIZE})
        if not isinstance(rows, list):
            raise ExplorerError(f"{params['action']} answered with no list")
        records = [row for row in rows if isinstance(row, dict)]
        scan.read(len(records))
        return records

    async def _get(self, scan: Scan, params: Row) -> Any:
        """One module/action request; its ``result``, an empty list for "no records"."""
        if self._chain_id is not None:
            params = {"chainid": self._chain_id, **params}
        what = str(params.get("action"))
        return await self._pool.run(lambda client: self._send(client, scan, params), what=what)

    async def _send(self, client: httpx2.AsyncClient, scan: Scan, params: Row) -> Any:
        scan.calls += 1
        try:
            response = await client.get("", params=params)
        except httpx2.HTTPError as exc:
            raise EndpointError(http_failure(exc)) from None
        body = _json(response)
        if "jsonrpc" in body:  # the proxy module answers as JSON-RPC
            return _rpc_result(body)
        status, message, result = (
            str(body.get("status")),
            str(body.get("message", "")),
            body.get("result"),
        )
        if status == "1":
            return result
        said = f"{message}: {result}" if isinstance(result, str) and result else message
        lowered = said.lower()
        if "rate limit" in lowered:
            raise EndpointError(f"rate limited ({self._redact(said)})")
        if result == [] or any(phrase in lowered for phrase in _EMPTY):
            return []
        raise ExplorerError(self._redact(said) or "the provider refused the request")

    async def _rpc(self, scan: Scan, method: str, named: Row) -> Any:
        """A JSON-RPC read: Etherscan's proxy module, or the provider's eth-rpc endpoint."""
        if not self._json_rpc:
            params = {"module": "proxy", "action": method, **named}
            try:
                return await self._get(scan, params)
            except ExplorerError as exc:
                if not any(phrase in str(exc).lower() for phrase in _UNKNOWN_MODULE):
                    raise
                self._json_rpc = True
        positional = [named[name] for name in _RPC_PARAMS[method]]
        return await self._pool.run(
            lambda client: self._post_rpc(client, scan, method, positional), what=method
        )

    async def _post_rpc(
        self, client: httpx2.AsyncClient, scan: Scan, method: str, params: Sequence[Any]
    ) -> Any:
        scan.calls += 1
        body = {"jsonrpc": "2.0", "id": scan.calls, "method": method, "params": list(params)}
        try:
            response = await client.post("eth-rpc", json=body)
        except httpx2.HTTPError as exc:
            raise EndpointError(http_failure(exc)) from None
        return _rpc_result(_json(response))


def _json(response: httpx2.Response) -> dict[str, Any]:
    if response.status_code == 429:
        raise EndpointError("rate limited (HTTP 429)")
    if response.status_code >= 500:
        raise EndpointError(f"HTTP {response.status_code}")
    if response.status_code != 200:
        raise ExplorerError(f"HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        raise EndpointError("the answer is not JSON") from None
    if not isinstance(body, dict):
        raise EndpointError("the answer is not a JSON object")
    return body


def _rpc_result(body: dict[str, Any]) -> Any:
    error = body.get("error")
    if error is None:
        return body.get("result")
    message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
    if "rate limit" in message.lower():
        raise EndpointError(f"rate limited ({message})")
    raise ExplorerError(f"JSON-RPC error: {message}")
