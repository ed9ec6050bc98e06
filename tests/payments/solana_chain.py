"""A local Solana devnet for payment tests: real SPL Token programs behind loopback JSON-RPC.

Use the ``solana_chain`` fixture (import it into the test module) for a chain holding devnet USDC,
a funded payer, a merchant with its token account, and a facilitator fee payer. Two RPC endpoints
serve the same ledger, so failover can be tested by taking one down.

solana-py's sync ``Client`` (which x402's SVM code uses) warns on construction; modules that drive
x402's SVM facilitator or client directly add ``pytestmark = SOLANA_PY_WARNING_FILTERS``.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from solders.account import Account
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address
from solders.token.state import Mint, TokenAccount, TokenAccountState
from solders.transaction import VersionedTransaction
from x402 import x402ClientSync
from x402.mechanisms.svm import FacilitatorKeypairSigner, KeypairSigner
from x402.mechanisms.svm.exact import ExactSvmFacilitatorScheme, register_exact_svm_client
from x402.schemas import PaymentPayload, PaymentRequired, PaymentRequirements, ResourceInfo

from tests.payments.solana_rpc import (
    MEMO_PROGRAM,
    TOKEN_PROGRAM,
    OutageMode,
    SolanaLedger,
    SolanaRpcServer,
)

DEVNET = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
USDC_DEVNET_MINT = Pubkey.from_string("4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU")
USDC_DECIMALS = 6
USDC = 10**USDC_DECIMALS
SOL = 1_000_000_000
PAYER_USDC = 1_000 * USDC
RENT_EPOCH_EXEMPT = 2**64 - 1

_SOLANA_PY_WARNINGS = (
    ("Client is deprecated", DeprecationWarning),
    ("Client is deprecated", FutureWarning),
    ("TxOpts is deprecated", DeprecationWarning),
)
SOLANA_PY_WARNING_FILTERS = [
    pytest.mark.filterwarnings(f"ignore:{text}:{category.__name__}")
    for text, category in _SOLANA_PY_WARNINGS
]

_TOKEN_PROGRAM_ID = Pubkey.from_string(TOKEN_PROGRAM)
_MEMO_PROGRAM_ID = Pubkey.from_string(MEMO_PROGRAM)
_wallet_counter = itertools.count()


class RpcCallError(Exception):
    """A JSON-RPC error answer from the local chain."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.error = error


def keypair_for(label: str) -> Keypair:
    """A keypair derived from a label, so every run uses the same addresses."""
    return Keypair.from_seed(hashlib.sha256(f"kamiyo-test/{label}".encode()).digest())


@dataclass(frozen=True)
class SolanaChain:
    """A running local chain and the accounts set up on it."""

    ledger: SolanaLedger
    primary: SolanaRpcServer
    backup: SolanaRpcServer
    network: str
    mint: Pubkey
    mint_authority: Keypair
    payer: Keypair
    pay_to: Pubkey
    pay_to_ata: Pubkey
    fee_payer: Keypair

    @property
    def rpc_url(self) -> str:
        return self.primary.url

    @property
    def backup_rpc_url(self) -> str:
        """A second, independent endpoint onto the same ledger."""
        return self.backup.url

    @property
    def servers(self) -> tuple[SolanaRpcServer, SolanaRpcServer]:
        return (self.primary, self.backup)

    def ata(self, owner: Pubkey) -> Pubkey:
        """The owner's associated token account for the chain's USDC mint."""
        return get_associated_token_address(owner, self.mint)

    def token_balance(self, owner: Pubkey) -> int:
        """USDC base units in the owner's associated token account (0 if it has none)."""
        account = self.ledger.get_account(self.ata(owner))
        return TokenAccount.from_bytes(account.data[:165]).amount if account else 0

    def sol_balance(self, pubkey: Pubkey) -> int:
        account = self.ledger.get_account(pubkey)
        return account.lamports if account else 0

    def airdrop(self, pubkey: Pubkey, lamports: int) -> None:
        """Add lamports to an account (state write: no transaction is recorded)."""
        account = self.ledger.get_account(pubkey)
        if account is None:
            account = Account(0, b"", Pubkey.default(), False, RENT_EPOCH_EXEMPT)
        self.ledger.set_account(
            pubkey,
            Account(
                account.lamports + lamports,
                account.data,
                account.owner,
                account.executable,
                account.rent_epoch,
            ),
        )

    def mint_to(self, owner: Pubkey, amount: int) -> Pubkey:
        """Credit USDC to the owner's associated token account, creating it; returns the ATA.

        Written straight into state (keeping the mint's supply consistent), so no transaction
        shows up in the owner's history.
        """
        ata = self.ata(owner)
        existing = self.ledger.get_account(ata)
        balance = TokenAccount.from_bytes(existing.data[:165]).amount if existing else 0
        token = TokenAccount(
            mint=self.mint,
            owner=owner,
            amount=balance + amount,
            delegate=None,
            state=TokenAccountState.Initialized,
            is_native=None,
            delegated_amount=0,
        )
        rent = self.ledger.rent_exempt_minimum(165)
        self.ledger.set_account(
            ata, Account(rent, bytes(token), _TOKEN_PROGRAM_ID, False, RENT_EPOCH_EXEMPT)
        )
        mint_account = self.ledger.get_account(self.mint)
        assert mint_account is not None
        mint = Mint.from_bytes(mint_account.data[:82])
        updated = Mint(
            mint.mint_authority, mint.supply + amount, mint.decimals, True, mint.freeze_authority
        )
        self.ledger.set_account(
            self.mint,
            Account(mint_account.lamports, bytes(updated), _TOKEN_PROGRAM_ID, False),
        )
        return ata

    def new_wallet(
        self, *, usdc: int = 0, lamports: int = SOL, label: str | None = None
    ) -> Keypair:
        """A fresh keypair with SOL and, if ``usdc`` is given, a funded token account."""
        keypair = keypair_for(label or f"wallet-{next(_wallet_counter)}")
        if lamports:
            self.airdrop(keypair.pubkey(), lamports)
        if usdc:
            self.mint_to(keypair.pubkey(), usdc)
        return keypair

    def rpc(self, method: str, params: list[Any] | None = None, *, url: str | None = None) -> Any:
        """Call the chain's JSON-RPC and return the whole response object."""
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
        response = httpx2.post(url or self.rpc_url, json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def rpc_result(
        self, method: str, params: list[Any] | None = None, *, url: str | None = None
    ) -> Any:
        """Call the chain's JSON-RPC; return ``result`` or raise :class:`RpcCallError`."""
        answer = self.rpc(method, params, url=url)
        if "error" in answer:
            raise RpcCallError(answer["error"])
        return answer["result"]

    def transfer_tx(
        self,
        payer: Keypair,
        to_owner: Pubkey,
        amount: int,
        memo: str | None,
        *,
        versioned: bool = False,
    ) -> VersionedTransaction:
        """A wallet's payment: TransferChecked between the ATAs plus an spl-memo, payer-signed.

        The payer also pays the fee. Legacy message unless ``versioned``.
        """
        owner = payer.pubkey()
        data = bytes([12]) + amount.to_bytes(8, "little") + bytes([USDC_DECIMALS])
        instructions = [
            Instruction(
                _TOKEN_PROGRAM_ID,
                data,
                [
                    AccountMeta(self.ata(owner), is_signer=False, is_writable=True),
                    AccountMeta(self.mint, is_signer=False, is_writable=False),
                    AccountMeta(self.ata(to_owner), is_signer=False, is_writable=True),
                    AccountMeta(owner, is_signer=True, is_writable=False),
                ],
            )
        ]
        if memo is not None:
            instructions.append(Instruction(_MEMO_PROGRAM_ID, memo.encode(), []))
        blockhash, _ = self.ledger.latest_blockhash()
        if versioned:
            message = MessageV0.try_compile(owner, instructions, [], blockhash)
            return VersionedTransaction(message, [payer])
        legacy = Message.new_with_blockhash(instructions, owner, blockhash)
        return VersionedTransaction(legacy, [payer])

    def transfer_with_memo(
        self,
        payer: Keypair,
        to_owner: Pubkey,
        amount: int,
        memo: str | None,
        *,
        versioned: bool = False,
        skip_preflight: bool = False,
        url: str | None = None,
    ) -> str:
        """Pay as an agent's wallet does (see :meth:`transfer_tx`); returns the signature.

        Sent through the RPC server (preflight on unless ``skip_preflight``); a preflight failure
        raises :class:`RpcCallError`. As on a real chain, the same payer, recipient, amount and
        memo under one blockhash make the same transaction, refused as already processed: vary
        the memo.
        """
        tx = self.transfer_tx(payer, to_owner, amount, memo, versioned=versioned)
        return self.send_transaction(tx, skip_preflight=skip_preflight, url=url)

    def send_transaction(
        self, tx: VersionedTransaction, *, skip_preflight: bool = False, url: str | None = None
    ) -> str:
        """``sendTransaction`` (base64) through an endpoint; returns the signature."""
        encoded = base64.b64encode(bytes(tx)).decode()
        config = {"encoding": "base64", "skipPreflight": skip_preflight}
        result = self.rpc_result("sendTransaction", [encoded, config], url=url)
        assert isinstance(result, str)
        return result

    def send_sol(self, payer: Keypair, to: Pubkey, lamports: int) -> str:
        """A System Program transfer of ``lamports`` from ``payer``; returns the signature."""
        from solders.system_program import TransferParams, transfer

        instruction = transfer(
            TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=lamports)
        )
        blockhash, _ = self.ledger.latest_blockhash()
        message = Message.new_with_blockhash([instruction], payer.pubkey(), blockhash)
        return self.send_transaction(VersionedTransaction(message, [payer]))

    def get_transaction(
        self, signature: str, *, encoding: str = "jsonParsed", url: str | None = None
    ) -> Any:
        """``getTransaction`` result (``maxSupportedTransactionVersion: 0``), or None."""
        config = {"encoding": encoding, "maxSupportedTransactionVersion": 0}
        return self.rpc_result("getTransaction", [signature, config], url=url)

    def set_clock(self, unix_ts: int | None) -> None:
        """Pin the block time of coming transactions; None returns to the real clock."""
        self.ledger.set_time(unix_ts)

    @contextmanager
    def clock_at(self, unix_ts: int) -> Iterator[None]:
        """Transactions landing inside the block get ``blockTime == unix_ts``."""
        self.ledger.set_time(unix_ts)
        try:
            yield
        finally:
            self.ledger.set_time(None)

    def expire_blockhash(self) -> None:
        """Age the chain past the current blockhash, so transactions built on it are dropped."""
        self.ledger.expire_blockhash()

    @contextmanager
    def rpc_down(self, *urls: str, mode: OutageMode = "http_503") -> Iterator[None]:
        """Take endpoints down (all of them when no URL is given) for the block.

        ``http_503`` answers every request with HTTP 503; ``rpc_error`` answers every call with
        the node's -32005 "Node is unhealthy".
        """
        chosen = [s for s in self.servers if not urls or s.url in urls]
        if urls and len(chosen) != len(set(urls)):
            raise ValueError(f"unknown endpoint in {urls}")
        with ExitStack() as stack:
            for server in chosen:
                stack.enter_context(server.outage(mode))
            yield


def _create_mint(ledger: SolanaLedger, authority: Pubkey) -> None:
    mint = Mint(mint_authority=authority, supply=0, decimals=USDC_DECIMALS, is_initialized=True)
    ledger.set_account(
        USDC_DEVNET_MINT,
        Account(
            ledger.rent_exempt_minimum(82),
            bytes(mint),
            _TOKEN_PROGRAM_ID,
            False,
            RENT_EPOCH_EXEMPT,
        ),
    )


@contextmanager
def running_solana_chain() -> Iterator[SolanaChain]:
    """Start a fresh chain with two endpoints; stop both on exit."""
    ledger = SolanaLedger()
    mint_authority = keypair_for("usdc-mint-authority")
    _create_mint(ledger, mint_authority.pubkey())
    with (
        SolanaRpcServer(ledger, name="solana-rpc-primary") as primary,
        SolanaRpcServer(ledger, name="solana-rpc-backup") as backup,
    ):
        pay_to = keypair_for("merchant").pubkey()
        payer = keypair_for("payer")
        fee_payer = keypair_for("facilitator-fee-payer")
        chain = SolanaChain(
            ledger=ledger,
            primary=primary,
            backup=backup,
            network=DEVNET,
            mint=USDC_DEVNET_MINT,
            mint_authority=mint_authority,
            payer=payer,
            pay_to=pay_to,
            pay_to_ata=get_associated_token_address(pay_to, USDC_DEVNET_MINT),
            fee_payer=fee_payer,
        )
        chain.airdrop(payer.pubkey(), 2 * SOL)
        chain.mint_to(payer.pubkey(), PAYER_USDC)
        chain.airdrop(fee_payer.pubkey(), 10 * SOL)
        chain.mint_to(pay_to, 0)
        yield chain


@pytest.fixture(scope="session")
def solana_chain() -> Iterator[SolanaChain]:
    """The session's local chain. Shared: assert on balance changes, not absolute balances."""
    with running_solana_chain() as chain:
        yield chain
        errors = [error for server in chain.servers for error in server.internal_errors]
        assert not errors, f"the local Solana RPC failed internally: {errors}"


def exact_svm_requirements(
    chain: SolanaChain,
    amount: int,
    *,
    memo: str | None = None,
    pay_to: Pubkey | None = None,
    max_timeout_seconds: int = 60,
    **extra: Any,
) -> PaymentRequirements:
    """x402 ``exact`` requirements for USDC on the local chain, fee paid by ``chain.fee_payer``."""
    fields: dict[str, Any] = {"feePayer": str(chain.fee_payer.pubkey()), **extra}
    if memo is not None:
        fields["memo"] = memo
    return PaymentRequirements(
        scheme="exact",
        network=chain.network,
        asset=str(chain.mint),
        amount=str(amount),
        pay_to=str(pay_to or chain.pay_to),
        max_timeout_seconds=max_timeout_seconds,
        extra=fields,
    )


def sign_exact_svm_payment(
    chain: SolanaChain, requirements: PaymentRequirements, payer: Keypair | None = None
) -> PaymentPayload:
    """The PaymentPayload x402's own client sends for these requirements (partially signed).

    Built by ``x402ClientSync`` with the exact SVM client scheme pointed at the chain's RPC (it
    reads the mint there and, unless ``extra.recentBlockhash`` is set, the latest blockhash).
    """
    client = x402ClientSync()
    # Spend caps only decide whether the client agrees to pay; tests pick amounts freely.
    client.set_spend_controls(False)
    signer = KeypairSigner(payer or chain.payer)
    register_exact_svm_client(client, signer, networks=chain.network, rpc_url=chain.rpc_url)
    required = PaymentRequired(
        accepts=[requirements], resource=ResourceInfo(url="https://kamiyo.test/mcp")
    )
    with warnings.catch_warnings():
        for text, category in _SOLANA_PY_WARNINGS:
            warnings.filterwarnings("ignore", message=text, category=category)
        payload = client.create_payment_payload(required)
    assert isinstance(payload, PaymentPayload)
    return payload


def svm_facilitator(chain: SolanaChain, rpc_url: str | None = None) -> ExactSvmFacilitatorScheme:
    """x402's exact SVM facilitator scheme, signing as ``chain.fee_payer`` via ``rpc_url``."""
    signer = FacilitatorKeypairSigner(chain.fee_payer, rpc_url=rpc_url or chain.rpc_url)
    return ExactSvmFacilitatorScheme(signer)
