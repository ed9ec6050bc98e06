"""A block explorer on 127.0.0.1 speaking the Etherscan module/action API, for the histories a
test writes into it: Etherscan V2 (``/v2/api``, ``chainid`` required, ``apikey`` checked when
one is set) or Blockscout (``/api``, no proxy module, JSON-RPC at ``/api/eth-rpc``).

Every record is a recorded record of ``tests/fixtures/explorers/`` (same keys, same order) with
the test's values put in. Pages of at most 1,000 (``offset`` above that is cut, as Etherscan's
free tier does since July 2026), newest or oldest first, and the 10,000-record window. Faults on
demand: "Max rate limit reached" for the next N requests, NOTOK for an action, a delay on every
answer (a provider that times out).

    async def test_x(explorer: ExplorerServer) -> None:
        tx = explorer.send(1, RONIN_ATTACKER, wallet, 10**18, block=100)
        explorer.rate_limit_next(2)
        async with open_explorers(options_for({"ethereum": explorer})) as explorers:
            ...

The ``explorer`` and ``blockscout`` fixtures are here (``tests/explorers/conftest.py`` imports
them; other test packages can too), with ``options_for`` (the settings ``open_explorers``
reads, pointing at given servers) and real attacker addresses of the bundled dataset.
"""

import hashlib
import itertools
import json
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import SecretStr

from tests.served import ServedInThread

FIXTURES = Path(__file__).parent.parent / "fixtures" / "explorers"
# Real attacker addresses of the bundled dataset (src/kamiyo/intel/data/bundle.json.gz).
RONIN_ATTACKER = "0x098b716b8aaf21512996dc57eb0615e2383e2f96"  # Ronin Network, 2022-03-29
EULER_ATTACKER = "0x5f259d0b76665c337c6104145894f4d1d2758b8c"  # Euler Finance, 2023-03-13
EULER_ATTACK_TX = "0xc310a0affe2169d1f6feec1c63dbc7f7c62a887fa48795d327d4d2da2d6b111d"
# The Parity multisig library of the 2017-07-19 incident (role vulnerable_contract).
PARITY_WALLET = "0xbec591de75b8699a3ba52f073428822d0bfc0d7e"
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
TEST_KEY = "test-etherscan-key-0123456789"
APPROVAL_TOPIC = "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925"
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
MAX_OFFSET = 1000
WINDOW = 10_000
GENESIS_TIME = 1_600_000_000  # block n is mined at GENESIS_TIME + 12 n

Flavour = Literal["etherscan", "blockscout"]
Row = dict[str, Any]


def _template(name: str) -> Row:
    row: Row = json.loads((FIXTURES / name).read_text())["result"][0]
    return row


def _topic(address: str) -> str:
    return "0x" + address.removeprefix("0x").rjust(64, "0")


def _word(value: int) -> str:
    return "0x" + format(value, "064x")


@dataclass
class Ledger:
    """One chain's records, in the order they were written (block order)."""

    normal: list[Row] = field(default_factory=list)
    internal: list[Row] = field(default_factory=list)
    token: list[Row] = field(default_factory=list)
    logs: list[Row] = field(default_factory=list)
    receipts: dict[str, Row] = field(default_factory=dict)


class ExplorerServer(ServedInThread):
    """The explorer; thread-safe to write into while it serves."""

    def __init__(self, flavour: Flavour = "etherscan", *, api_key: str | None = None) -> None:
        self.flavour = flavour
        self.api_key = api_key
        self.delay_s = 0.0
        self._lock = threading.Lock()
        self._ledgers: dict[int, Ledger] = {}
        self._hashes = itertools.count(1)
        self._rate_limited = 0
        self._refused: dict[str, str] = {}
        self._unpaged: set[str] = set()
        self.requests: list[dict[str, str]] = []
        prefix = "etherscan_v2" if flavour == "etherscan" else "blockscout"
        self._tx_shape = _template(f"{prefix}_txlist.json")
        self._token_shape = _template(f"{prefix}_tokentx.json")
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="explorer", daemon=True
        )

    # --- where it is ---------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        path = "/v2/api" if self.flavour == "etherscan" else "/api"
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    # --- writing histories ---------------------------------------------------------------
    def ledger(self, chain_id: int) -> Ledger:
        """The chain's records (a Blockscout instance serves one chain: the id is ignored)."""
        key = chain_id if self.flavour == "etherscan" else 0
        with self._lock:
            return self._ledgers.setdefault(key, Ledger())

    def new_hash(self) -> str:
        return "0x" + hashlib.sha256(f"tx-{next(self._hashes)}".encode()).hexdigest()

    def send(
        self,
        chain_id: int,
        sender: str,
        recipient: str,
        value: int,
        *,
        block: int,
        failed: bool = False,
        tx_hash: str | None = None,
    ) -> str:
        """A normal transaction moving ``value`` wei (0: a contract call); returns its hash."""
        tx_hash = tx_hash or self.new_hash()
        row = dict(self._tx_shape)
        row.update(
            blockNumber=str(block),
            timeStamp=str(GENESIS_TIME + 12 * block),
            hash=tx_hash,
            nonce="0",
            blockHash=_word(block),
            transactionIndex="0",
            to=recipient.lower(),
            value=str(value),
            isError="1" if failed else "0",
            txreceipt_status="0" if failed else "1",
            contractAddress="",
            input="0x",
            methodId="0x",
            confirmations="1",
        )
        row["from"] = sender.lower()
        if "functionName" in row:
            row["functionName"] = ""
        ledger = self.ledger(chain_id)
        with self._lock:
            ledger.normal.append(row)
            ledger.receipts[tx_hash] = {
                "status": "0x0" if failed else "0x1",
                "contractAddress": None,
                "logs": [],
                "from": sender.lower(),
                "to": recipient.lower(),
            }
        return tx_hash

    def internal(
        self, chain_id: int, tx_hash: str, sender: str, recipient: str, value: int
    ) -> None:
        """Value a contract moved inside ``tx_hash`` (a trace)."""
        ledger = self.ledger(chain_id)
        with self._lock:
            parent = next(r for r in ledger.normal if r["hash"] == tx_hash)
            ledger.internal.append(
                {
                    "blockNumber": parent["blockNumber"],
                    "timeStamp": parent["timeStamp"],
                    "hash": tx_hash,
                    "from": sender.lower(),
                    "to": recipient.lower(),
                    "value": str(value),
                    "contractAddress": "",
                    "input": "",
                    "type": "call",
                    "gas": "2300",
                    "gasUsed": "0",
                    "traceId": f"0_{len(ledger.internal)}",
                    "isError": "0",
                    "errCode": "",
                }
            )

    def token_transfer(
        self,
        chain_id: int,
        token: str,
        sender: str,
        recipient: str,
        value: int,
        *,
        block: int,
        symbol: str = "USDC",
        decimals: int = 6,
    ) -> str:
        """An ERC-20 transfer (its tokentx record and its receipt's Transfer log)."""
        tx_hash = self.send(chain_id, sender, token, 0, block=block)
        row = dict(self._token_shape)
        row.update(
            blockNumber=str(block),
            timeStamp=str(GENESIS_TIME + 12 * block),
            hash=tx_hash,
            blockHash=_word(block),
            contractAddress=token.lower(),
            to=recipient.lower(),
            value=str(value),
            tokenName=symbol,
            tokenSymbol=symbol,
            tokenDecimal=str(decimals),
        )
        row["from"] = sender.lower()
        log = self._log(token, [TRANSFER_TOPIC, _topic(sender), _topic(recipient)], value, block)
        log["transactionHash"] = tx_hash
        ledger = self.ledger(chain_id)
        with self._lock:
            ledger.token.append(row)
            ledger.receipts[tx_hash]["logs"].append(log)
        return tx_hash

    def approve(
        self, chain_id: int, owner: str, token: str, spender: str, value: int, *, block: int
    ) -> str:
        """``owner`` calls ``token.approve(spender, value)``: a transaction and its log."""
        tx_hash = self.send(chain_id, owner, token, 0, block=block)
        log = self._log(token, [APPROVAL_TOPIC, _topic(owner), _topic(spender)], value, block)
        log["transactionHash"] = tx_hash
        ledger = self.ledger(chain_id)
        with self._lock:
            ledger.logs.append(log)
            ledger.receipts[tx_hash]["logs"].append(log)
        return tx_hash

    def _log(self, address: str, topics: list[str], value: int, block: int) -> Row:
        return {
            "address": address.lower(),
            "topics": topics,
            "data": _word(value),
            "blockNumber": hex(block),
            "timeStamp": hex(GENESIS_TIME + 12 * block),
            "gasPrice": "0x3b9aca00",
            "gasUsed": "0xb411",
            "logIndex": "0x0",
            "transactionHash": "",
            "transactionIndex": "0x0",
        }

    # --- faults ------------------------------------------------------------------------
    def rate_limit_next(self, count: int) -> None:
        """The next ``count`` requests answer "Max rate limit reached"."""
        with self._lock:
            self._rate_limited = count

    def refuse(self, action: str, result: str) -> None:
        """Every request for ``action`` answers NOTOK with ``result``."""
        with self._lock:
            self._refused[action] = result

    def ignore_paging(self, action: str) -> None:
        """``action`` answers the first page whatever ``page`` asks for (as some do)."""
        with self._lock:
            self._unpaged.add(action)

    def calls(self, action: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if action is None or r.get("action") == action)

    # --- answering -----------------------------------------------------------------------
    def answer_get(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(query)
            if self._rate_limited > 0:
                self._rate_limited -= 1
                return 200, {"status": "0", "message": "NOTOK", "result": "Max rate limit reached"}
            refused = self._refused.get(query.get("action", ""))
        if path != urllib.parse.urlsplit(self.api_url).path:
            return 404, {"error": "not found"}
        if refused is not None:
            return 200, {"status": "0", "message": "NOTOK", "result": refused}
        if self.flavour == "etherscan":
            if self.api_key is not None and query.get("apikey") != self.api_key:
                return 200, {
                    "status": "0",
                    "message": "NOTOK",
                    "result": "Invalid API Key (#err2)|",
                }
            if not query.get("chainid", "").isdigit():
                return 200, {
                    "status": "0",
                    "message": "NOTOK",
                    "result": "Missing or unsupported chainid parameter (required for v2 api)",
                }
        chain_id = int(query.get("chainid") or 0)
        module, action = query.get("module"), query.get("action", "")
        if module == "proxy":
            if self.flavour == "blockscout":
                return 200, {"message": "Unknown module", "result": None, "status": "0"}
            params = [query.get("txhash") or query.get("tag"), query.get("boolean") == "true"]
            return 200, self._rpc(chain_id, action, params, 1)
        if module == "account" and action in ("txlist", "txlistinternal", "tokentx"):
            return 200, self._account(chain_id, action, query)
        if module == "logs" and action == "getLogs":
            return 200, self._logs(chain_id, query)
        return 200, {"status": "0", "message": "NOTOK", "result": "Error! Invalid action"}

    def answer_post(self, path: str, body: Any) -> tuple[int, Any]:
        with self._lock:
            self.requests.append({"action": str(body.get("method")), "rpc": "1"})
        if (
            self.flavour != "blockscout"
            or path != urllib.parse.urlsplit(self.api_url).path + "/eth-rpc"
        ):
            return 404, {"error": "not found"}
        return 200, self._rpc(
            0, str(body.get("method")), list(body.get("params") or []), body.get("id")
        )

    def _rpc(self, chain_id: int, method: str, params: list[Any], call_id: Any) -> Row:
        ledger = self.ledger(chain_id)
        result: Any = None
        if method == "eth_getTransactionByHash":
            row = next((r for r in ledger.normal if r["hash"] == params[0]), None)
            if row is not None:
                result = {
                    "hash": row["hash"],
                    "blockNumber": hex(int(row["blockNumber"])),
                    "from": row["from"],
                    "to": row["to"] or None,
                    "value": hex(int(row["value"])),
                    "input": "0x",
                }
        elif method == "eth_getTransactionReceipt":
            result = ledger.receipts.get(str(params[0]))
        elif method == "eth_getBlockByNumber":
            block = int(str(params[0]), 16)
            result = {"number": hex(block), "timestamp": hex(GENESIS_TIME + 12 * block)}
        else:
            return {
                "jsonrpc": "2.0",
                "id": call_id,
                "error": {"code": -32601, "message": "no such method"},
            }
        return {"jsonrpc": "2.0", "id": call_id, "result": result}

    def _page(self, rows: list[Row], query: dict[str, str], empty: str) -> Row:
        page = int(query.get("page") or 1)
        with self._lock:
            if query.get("action") in self._unpaged:
                page = 1
        offset = min(int(query.get("offset") or MAX_OFFSET), MAX_OFFSET)
        if page * offset > WINDOW:
            return {
                "status": "0",
                "message": "NOTOK",
                "result": "Result window is too large, PageNo x Offset size must be less than "
                "or equal to 10000",
            }
        if query.get("sort", "asc") == "desc":
            rows = rows[::-1]
        chosen = rows[(page - 1) * offset : page * offset]
        if not chosen:
            return {"status": "0", "message": empty, "result": []}
        return {"status": "1", "message": "OK", "result": chosen}

    def _account(self, chain_id: int, action: str, query: dict[str, str]) -> Row:
        ledger = self.ledger(chain_id)
        source = {
            "txlist": ledger.normal,
            "txlistinternal": ledger.internal,
            "tokentx": ledger.token,
        }
        with self._lock:
            rows = list(source[action])
        if "txhash" in query:
            chosen = [r for r in rows if r["hash"] == query["txhash"].lower()]
        else:
            address = query.get("address", "").lower()
            chosen = [r for r in rows if address in (r["from"], r["to"], r.get("contractAddress"))]
        return self._page(chosen, query, "No transactions found")

    def _logs(self, chain_id: int, query: dict[str, str]) -> Row:
        ledger = self.ledger(chain_id)
        with self._lock:
            rows = list(ledger.logs)
        wanted = [(i, query[f"topic{i}"].lower()) for i in range(4) if f"topic{i}" in query]
        chosen = [
            r for r in rows if all(len(r["topics"]) > i and r["topics"][i] == t for i, t in wanted)
        ]
        return self._page(chosen, query, "No records found")


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"
    timeout = 10

    def do_GET(self) -> None:
        split = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(split.query))
        self._reply(*self.server.owner.answer_get(split.path, query))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = {}
        self._reply(*self.server.owner.answer_post(urllib.parse.urlsplit(self.path).path, body))

    def _reply(self, status: int, body: Any) -> None:
        delay = self.server.owner.delay_s
        if delay:
            time.sleep(delay)
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except ConnectionError:
            self.close_connection = True  # the client gave up (a timeout test)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: ExplorerServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Options:
    """What ``open_explorers`` reads, as ``settings.explorers`` has it (tests' own values)."""

    defaults: bool = False  # a test reads only its own servers
    urls: Mapping[str, str] = field(default_factory=dict)
    etherscan_api_key: SecretStr | None = None
    solana_rpc_urls: Sequence[str] = ()
    timeout_s: float = 2.0
    calls_per_second: float = 200.0
    max_pages: int = 10
    allow_private: bool = True
    cache_ttl_s: float = 0  # each read reaches the server, unless a test says otherwise


def options_for(servers: Mapping[str, ExplorerServer], **changes: Any) -> Options:
    """Options reading each chain from its server and nothing else (the key if one is set)."""
    urls = {chain: server.api_url for chain, server in servers.items()}
    keys = {server.api_key for server in servers.values() if server.api_key}
    key = SecretStr(keys.pop()) if len(keys) == 1 else None
    return Options(**{"urls": urls, "etherscan_api_key": key, **changes})


@pytest.fixture
def explorer() -> Iterator[ExplorerServer]:
    """A local Etherscan V2 (``/v2/api``, chainid required, the key ``TEST_KEY`` checked)."""
    with ExplorerServer("etherscan", api_key=TEST_KEY) as server:
        yield server


@pytest.fixture
def blockscout() -> Iterator[ExplorerServer]:
    """A local Blockscout instance (``/api``, no proxy module, JSON-RPC at ``/api/eth-rpc``)."""
    with ExplorerServer("blockscout") as server:
        yield server
