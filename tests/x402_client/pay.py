"""Pay KAMIYO for one search with x402's own Python client, as a third-party agent would.

Runs in the environment built from requirements.txt (x402 with mcp 1.x and httpx), not in
KAMIYO's, and prints one JSON line on stdout: whether the call was paid, the first incident's
protocol, the receipt, and what the client put on the wire (for the tests to compare with the
x402 v2 transport specs).

    python pay.py stdio --key-file F --asset NETWORK ADDRESS -- python -m kamiyo serve
    python pay.py http  --key-file F --asset NETWORK ADDRESS http://127.0.0.1:8000/mcp
    python pay.py rest  --key-file F --asset NETWORK ADDRESS 'http://…/api/v1/exploits?query=…'
    python pay.py http  --offer-only http://127.0.0.1:8000/mcp
    python pay.py rest  --key-file F --asset NETWORK ADDRESS --bearer-file K 'http://…/api/v1/risk/…'

``--offer-only`` makes the call without paying, as an agent that reads the price before it
decides, and prints what the MCP client accepted and the offer x402 read from it.

The network's CAIP-2 namespace picks the chain: ``eip155:…`` pays with an EVM key (hex),
``solana:…`` with a Solana keypair (base58, as ``solana-keygen`` prints a secret key) through
the RPC endpoint given with ``--rpc-url``, where x402's client reads the mint and the latest
blockhash.

The payer's private key is read from a file so it never shows in a process listing; the stdio
server gets this process's environment, which does not hold the key. ``--bearer-file`` names a
file holding an API key the REST requests carry (a key holder paying for a tool its plan lacks).
"""

import argparse
import asyncio
import base64
import json
import os
import warnings
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

# httpx is in this script's environment but not in KAMIYO's, whose mypy run covers tests/ as
# well; `mypy --python-executable <that environment's python> pay.py` checks it for real.
import httpx  # type: ignore[import-not-found, unused-ignore]
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from x402 import SpendControlAsset, x402Client
from x402.http import x402HTTPClient
from x402.http.clients import x402_httpx_transport
from x402.mcp import MCP_PAYMENT_RESPONSE_META_KEY, x402MCPSession
from x402.mcp.utils import convert_mcp_result, extract_payment_required_from_result

TOOL = "search_exploits"
ARGUMENTS = {"query": "euler"}
# Generous next to a local chain's settlement, short next to x402's 300 s default, so a server
# that hangs fails the run instead of stalling it.
CALL_TIMEOUT = timedelta(seconds=60)


# x402's exact SVM client builds on solana-py's sync Client, which warns that it is deprecated
# each time one is made: noise from the package under test, not something this client can act on.
for _text, _category in (
    ("Client is deprecated", DeprecationWarning),
    ("Client is deprecated", FutureWarning),
):
    warnings.filterwarnings("ignore", message=_text, category=_category)


def payment_client(
    key_file: Path,
    network: str,
    asset: str,
    max_amount: str | None,
    rpc_url: str | None = None,
) -> x402Client:
    """x402's async client paying on ``network`` with the key in ``key_file``.

    x402 clients pay only for the USDC deployments they know unless the owner lists others, as
    one would for a test token; ``max_amount`` caps what one payment may take, in atomic units.
    On Solana, ``rpc_url`` is where the client reads the mint and a recent blockhash (x402's
    public default for the network when None).
    """
    secret = key_file.read_text().strip()
    client = x402Client()
    if network.startswith("solana:"):
        _register_svm(client, secret, network, rpc_url)
    else:
        _register_evm(client, secret)
    allowed: SpendControlAsset = {"network": network, "asset": asset}
    if max_amount is not None:
        allowed["max_amount_per_payment"] = max_amount
    client.set_spend_controls({"allowed_assets": [allowed]})
    return client


# Each chain's signing stack is imported only when paying on it: web3 and eth_account take
# seconds to import, solana-py a good part of one, and every test run starts this script anew.
def _register_evm(client: x402Client, key: str) -> None:
    from eth_account import Account
    from eth_account.signers.local import LocalAccount
    from x402.mechanisms.evm.exact import ExactEvmClientScheme
    from x402.mechanisms.evm.signers import EthAccountSigner

    account: LocalAccount = Account.from_key(key)
    client.register("eip155:*", ExactEvmClientScheme(EthAccountSigner(account)))


def _register_svm(client: x402Client, keypair: str, network: str, rpc_url: str | None) -> None:
    from solders.keypair import Keypair
    from x402.mechanisms.svm import KeypairSigner
    from x402.mechanisms.svm.exact import register_exact_svm_client

    signer = KeypairSigner(Keypair.from_base58_string(keypair))
    register_exact_svm_client(client, signer, networks=network, rpc_url=rpc_url)


class RecordingSession:
    """Hands x402's wrapper the SDK's ClientSession, noting the ``_meta`` of each tool call."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.sent_meta: list[dict[str, Any] | None] = []

    async def initialize(self) -> Any:
        return await self.session.initialize()

    async def call_tool(self, **call: Any) -> Any:
        # x402MCPSession passes every argument by keyword; they go on to the SDK unchanged.
        meta = call.get("meta")
        self.sent_meta.append(json.loads(json.dumps(meta)) if meta is not None else None)
        return await self.session.call_tool(**call)


async def pay_over_mcp(
    mode: str, target: Sequence[str], client: x402Client, offer_only: bool = False
) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        if mode == "stdio":
            command, *args = target
            server = StdioServerParameters(command=command, args=args, env=dict(os.environ))
            read, write = await stack.enter_async_context(stdio_client(server))
        else:
            (url,) = target
            streams = await stack.enter_async_context(streamable_http_client(url))
            read, write = streams[0], streams[1]
        session = RecordingSession(await stack.enter_async_context(ClientSession(read, write)))
        paying = x402MCPSession(session, client, auto_payment=not offer_only)
        await paying.initialize()
        result = await paying.call_tool(TOOL, ARGUMENTS, read_timeout_seconds=CALL_TIMEOUT)
        raw = result.raw_result
        if offer_only:
            return _offer(raw)
        structured = raw.structuredContent or {}
        receipt = (raw.meta or {}).get(MCP_PAYMENT_RESPONSE_META_KEY)
        parsed = result.payment_response
        return {
            "mode": mode,
            "paid": result.payment_made,
            "is_error": result.is_error,
            "protocol": _first_protocol(structured),
            "payment_response": receipt,
            # x402 parses the receipt into its SettleResponse model; a dict means it could not.
            "receipt_parsed": parsed is not None and not isinstance(parsed, dict),
            "sent": session.sent_meta,
            "error_text": [getattr(c, "text", None) for c in raw.content] if raw.isError else None,
        }


def _offer(raw: Any) -> dict[str, Any]:
    """The unpaid answer as the MCP client accepted it, and the offer x402's parser read."""
    offer = extract_payment_required_from_result(convert_mcp_result(raw))
    return {
        "is_error": raw.isError,
        "structured": raw.structuredContent,
        "texts": [getattr(c, "text", None) for c in raw.content],
        "offer": offer.model_dump(mode="json", by_alias=True) if offer is not None else None,
    }


class RecordingTransport(httpx.AsyncBaseTransport):  # type: ignore[misc, unused-ignore]
    """httpx's transport, noting the headers of each request x402's transport sends."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[dict[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(dict(request.headers))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def pay_over_rest(url: str, client: x402Client, bearer: str | None = None) -> dict[str, Any]:
    wire = RecordingTransport()
    timeout = CALL_TIMEOUT.total_seconds()
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
    async with httpx.AsyncClient(
        transport=x402_httpx_transport(client, wire), timeout=timeout, headers=headers
    ) as http:
        response = await http.get(url)
    body = response.json()
    paid = any("payment-signature" in headers for headers in wire.sent)
    receipt = None
    if "payment-response" in response.headers:
        settle = x402HTTPClient(client).get_payment_settle_response(response.headers.get)
        receipt = settle.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {
        "mode": "rest",
        "paid": paid and response.status_code == 200,
        "status": response.status_code,
        "is_error": response.status_code != 200,
        "protocol": _first_protocol(body) if response.status_code == 200 else None,
        "payment_response": receipt,
        "sent": [_payment_headers(headers) for headers in wire.sent],
        "error_text": None if response.status_code == 200 else response.text,
    }


def _payment_headers(headers: dict[str, str]) -> dict[str, Any]:
    """The header names of one request, and its payment headers decoded from base64 JSON."""
    seen: dict[str, Any] = {"names": sorted(headers)}
    for name in ("payment-signature", "x-payment"):
        if name in headers:
            seen[name] = json.loads(base64.b64decode(headers[name]))
    return seen


def _first_protocol(structured: dict[str, Any]) -> str | None:
    incidents = structured.get("incidents") or []
    first = incidents[0] if incidents else {}
    protocol = first.get("protocol") if isinstance(first, dict) else None
    return protocol if isinstance(protocol, str) else None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("mode", choices=["stdio", "http", "rest"])
    parser.add_argument("--key-file", type=Path, help="the payer's key: hex (EVM), base58 (Solana)")
    parser.add_argument("--asset", nargs=2, metavar=("NETWORK", "ADDRESS"))
    parser.add_argument("--offer-only", action="store_true", help="call without paying")
    parser.add_argument("--max-amount", help="largest payment allowed, in atomic units")
    parser.add_argument("--rpc-url", help="Solana JSON-RPC endpoint the client reads the chain at")
    parser.add_argument("--bearer-file", type=Path, help="an API key the REST requests carry")
    parser.add_argument("target", nargs="+", help="the server command (stdio) or URL")
    options = parser.parse_args(argv)
    if options.offer_only:
        # Nothing is paid, so no key is read: x402's client only parses the offer.
        offer = pay_over_mcp(options.mode, options.target, x402Client(), offer_only=True)
        print(json.dumps(asyncio.run(offer), separators=(",", ":")), flush=True)
        return
    if options.key_file is None or options.asset is None:
        parser.error("--key-file and --asset are needed to pay")
    network, asset = options.asset
    client = payment_client(options.key_file, network, asset, options.max_amount, options.rpc_url)
    if options.mode == "rest":
        (url,) = options.target
        bearer = options.bearer_file.read_text().strip() if options.bearer_file else None
        outcome = asyncio.run(pay_over_rest(url, client, bearer))
    else:
        outcome = asyncio.run(pay_over_mcp(options.mode, options.target, client))
    print(json.dumps(outcome, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
