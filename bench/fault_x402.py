"""The x402 row's parts: an RPC endpoint that can be made to fail, and paid calls that check
what each payment cost.

The chain is the tests' anvil with TestUSDC (``tests/payments/evm_chain.py``). KAMIYO's only
RPC URL for it is ``FaultyRpc``, a loopback proxy that forwards JSON-RPC to anvil while its mode
is ``pass``, answers 503 at once in ``fail``, and holds the request without forwarding it in
``hang`` (until the caller gives up: an endpoint that times out).

``PaidLoad`` makes paid REST calls (``GET /api/v1/exploits`` with ``PAYMENT-SIGNATURE``, no API
key), each with a fresh EIP-3009 authorization, and sends each payment a second time to the other
instance once the first is answered (a client retrying): the second must never be answered as
a second paid call. A ``settlement_confirming`` answer (the settlement went out, its outcome is
not known yet) is followed as the protocol asks: the same payment again to the same instance
after ``RETRY_AFTER_S``, until another answer comes. Afterwards the chain says which
authorizations were used (charged).
"""

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2
import uvicorn
from eth_account.signers.local import LocalAccount
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from x402.mechanisms.evm.types import ExactEIP3009Payload
from x402.schemas import PaymentPayload, PaymentRequired

from bench.fault_load import Answer, recovery_s, sort_rest
from kamiyo.payments.settlements import CONFIRMING, RETRY_AFTER_S
from kamiyo.web.wire import encode_header
from tests.mcpserver.conftest import free_port
from tests.payments.evm_chain import EvmChain, sign_exact_payment

Mode = Literal["pass", "fail", "hang"]
HANG_S = 120.0  # longer than KAMIYO waits for an RPC answer
# Longer than KAMIYO's own bound on an RPC call (30 s), so the caller reads KAMIYO's answer.
PAID_TIMEOUT_S = 90.0
# How long a caller follows settlement_confirming: a payment's whole validity (max_timeout_s).
CONFIRMING_FOR_S = 300.0


class FaultyRpc:
    """A JSON-RPC proxy in front of ``upstream`` whose ``mode`` the run switches."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode: Mode = "pass"
        self.port = free_port()
        self.requests: dict[Mode, int] = {"pass": 0, "fail": 0, "hang": 0}
        self._client = httpx2.AsyncClient(timeout=30)
        app = Starlette(routes=[Route("/", self._forward, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def _forward(self, request: Request) -> Response:
        mode = self.mode
        self.requests[mode] += 1
        if mode == "fail":
            return JSONResponse({"error": "unavailable"}, status_code=503)
        body = await request.body()  # read first: a caller that gives up mid-hang is gone
        if mode == "hang":
            await asyncio.sleep(HANG_S)
        answer = await self._client.post(
            self.upstream, content=body, headers={"Content-Type": "application/json"}
        )
        return Response(answer.content, answer.status_code, media_type="application/json")

    @contextmanager
    def running(self) -> Iterator["FaultyRpc"]:
        thread = threading.Thread(target=self._server.run, daemon=True)
        thread.start()
        while not self._server.started:
            time.sleep(0.05)  # polling for readiness
        try:
            yield self
        finally:
            self._server.should_exit = True
            thread.join(timeout=10)


@dataclass(frozen=True)
class Paid:
    """One payment: its answers (first, then the retry to the other instance)."""

    started: float
    payer: str
    nonce: str
    first: tuple[str, str]  # (kind, message)
    retry: tuple[str, str]
    confirming: int = 0  # settlement_confirming answers followed (the same payment sent again)


def _nonce(payment: PaymentPayload) -> str:
    return str(ExactEIP3009Payload.from_dict(payment.payload).authorization.nonce)


@dataclass
class PaidLoad:
    chain: EvmChain
    urls: Sequence[str]
    payers: Sequence[LocalAccount]
    rate: float = 1.0
    paid: list[Paid] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        # Open loop: a payment every 1/rate s whatever the earlier ones wait for, so a hanging
        # RPC holds many payments at once, as it would under real traffic.
        async with httpx2.AsyncClient(timeout=PAID_TIMEOUT_S) as client:
            requirements = await self._offer(client)
            pending: list[asyncio.Task[None]] = []
            for step in itertools.count():
                if self._stop.is_set():
                    break
                payer = self.payers[step % len(self.payers)]
                pending.append(asyncio.create_task(self._pay(client, step, payer, requirements)))
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1 / self.rate)
            await asyncio.gather(*pending)

    async def _offer(self, client: httpx2.AsyncClient) -> Any:
        """The EVM offer, from an unpaid call's answer (the free tier's, with its paid offer)."""
        response = await client.get(f"{self.urls[0]}/api/v1/exploits", params={"query": "euler"})
        body = response.json()
        offer = PaymentRequired.model_validate(body["paid_offer"]["payment_required"])
        return offer.accepts[0]

    async def _pay(
        self, client: httpx2.AsyncClient, step: int, payer: LocalAccount, requirements: Any
    ) -> None:
        payment = sign_exact_payment(self.chain, requirements, payer)
        header = encode_header(payment.model_dump(mode="json", by_alias=True, exclude_none=True))
        began = time.monotonic()
        answers = []
        confirming = 0
        for url in (self.urls[step % 2], self.urls[(step + 1) % 2]):
            answer = await self._send(client, url, step, header)
            while answer[0] == f"http 402 {CONFIRMING}" and time.monotonic() - began < (
                CONFIRMING_FOR_S
            ):
                confirming += 1
                await asyncio.sleep(RETRY_AFTER_S)
                answer = await self._send(client, url, step, header)
            answers.append(answer)
        self.paid.append(
            Paid(began, payer.address, _nonce(payment), answers[0], answers[1], confirming)
        )

    async def _send(
        self, client: httpx2.AsyncClient, url: str, step: int, header: str
    ) -> tuple[str, str]:
        try:
            response = await client.get(
                f"{url}/api/v1/exploits",
                params={"query": "euler", "min_loss_usd": step + 1},
                headers={"PAYMENT-SIGNATURE": header},
            )
        except httpx2.HTTPError as exc:
            return (f"connection {type(exc).__name__}", "")
        return sort_rest(response)


def settlement_report(chain: EvmChain, paid: Sequence[Paid]) -> dict[str, int]:
    """What the chain says the payments cost, against what their callers were answered."""
    used = [chain.authorization_used(p.payer, p.nonce) for p in paid]
    answered = [int(p.first[0] == "ok") + int(p.retry[0] == "ok") for p in paid]
    return {
        "payments": len(paid),
        "answered_ok": sum(1 for n in answered if n),
        "settled_on_chain": sum(used),
        "answered_twice": sum(1 for n in answered if n > 1),
        "charged_not_answered": sum(1 for u, n in zip(used, answered, strict=True) if u and not n),
        "answered_not_charged": sum(1 for u, n in zip(used, answered, strict=True) if n and not u),
        "confirming_followed": sum(p.confirming for p in paid),
    }


def paid_kinds(paid: Sequence[Paid], retry: bool = False) -> dict[str, int]:
    return dict(Counter(p.retry[0] if retry else p.first[0] for p in paid).most_common())


def paid_messages(paid: Sequence[Paid]) -> dict[str, str]:
    """One message per kind of error a paying caller read on the first try."""
    found: dict[str, str] = {}
    for kind, message in (p.first for p in paid):
        if kind != "ok":
            found.setdefault(kind, message)
    return found


def paid_recovery_s(paid: Sequence[Paid], back: float | None) -> float | None:
    answers = [
        Answer(p.started, 0.0, "paid", "rest", f"rest: {p.first[0]}", p.first[1], False)
        for p in paid
    ]
    return None if back is None else recovery_s(answers, back)
