"""Paying on Solana with a plain USDC transfer, then naming its signature in the call.

For agents with a Solana wallet but no x402 client. The unpaid answer carries a reference (a
secret for this caller) and a memo derived from it; the agent sends USDC to our token account
with that memo, then calls again naming the transfer's signature and the reference (each surface
says where: MCP in two tool arguments, REST in two headers).
The memo is public on chain but the reference is not, so a signature seen on chain cannot be
claimed by anyone else. References are stateless: the memo carries when it was issued and a
MAC over (reference, time, tool, amount, network) with a key derived from the server's secret,
so any instance can check it. That a signature pays for one call only is the journal's job.

Errors use the codes agents of the first KAMIYO design already handle (``CODES``).
"""

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kamiyo.chains import AcceptedNetwork
from kamiyo.payments.prices import usd

CODES = (
    "PAYMENT_REQUIRED",
    "INVALID_SIGNATURE",
    "TRANSACTION_NOT_FOUND",
    "INSUFFICIENT_AMOUNT",
    "WRONG_RECIPIENT",
    "WRONG_TOKEN",
    "EXPIRED_PAYMENT",
    "REPLAY_ATTACK",
    "RPC_ERROR",
    "VERIFICATION_TIMEOUT",
)
MEMO_PREFIX = "kamiyo"
REFERENCE_TTL_S = 300  # how long after the quote the transfer may be made
MAX_AGE_S = 300  # how old the transfer may be when it is claimed
# The longest claim read: a base58 signature is at most 88 characters, a reference 22.
SIGNATURE_MAX_CHARS = 100
REFERENCE_MAX_CHARS = 64
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"  # noqa: S105 (a public address)
ASSOCIATED_TOKEN_PROGRAM = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"  # noqa: S105
TOKEN_PROGRAMS = ("spl-token", "spl-token-2022")


@dataclass(frozen=True, slots=True)
class TransferClaim:
    """What the caller sends back: the transfer's signature and the reference it was given."""

    signature: str
    reference: str


@dataclass(frozen=True, slots=True)
class VerifiedTransfer:
    signature: str
    payer: str | None
    amount: int
    block_time: int


@dataclass(frozen=True, slots=True)
class TransferRefused:
    code: str  # one of CODES
    message: str


class TransactionSource(Protocol):
    async def get_transaction(self, signature: str) -> Mapping[str, Any] | None: ...


def token_account(owner: str, mint: str) -> str:
    """The associated token account of ``owner`` for ``mint`` (where transfers must go)."""
    # solders is imported where a transfer is offered or checked: a server that takes none
    # (and every process reading the gate's types) never loads it.
    from solders.pubkey import Pubkey

    seeds = (owner, TOKEN_PROGRAM, mint)
    address, _ = Pubkey.find_program_address(
        [bytes(Pubkey.from_string(seed)) for seed in seeds],
        Pubkey.from_string(ASSOCIATED_TOKEN_PROGRAM),
    )
    return str(address)


class References:
    def __init__(self, secret: str) -> None:
        # A key of its own, so a reference's MAC is never a MAC made for something else.
        self._key = hmac.new(secret.encode(), b"kamiyo x402 solana reference", "sha256").digest()

    def issue(self, tool: str, amount: int, network: str, now: int) -> tuple[str, str]:
        """A new (reference, memo) for one call of ``tool`` at ``amount``."""
        reference = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        return reference, self._memo(reference, now, tool, amount, network)

    def matches(
        self, memo: str, reference: str, tool: str, amount: int, network: str
    ) -> int | None:
        """When the reference behind ``memo`` was issued, if it was issued for this call."""
        prefix, _, rest = memo.partition(":")
        issued, _, _ = rest.partition(":")
        if prefix != MEMO_PREFIX or not issued.isdigit():
            return None
        expected = self._memo(reference, int(issued), tool, amount, network)
        return int(issued) if hmac.compare_digest(memo, expected) else None

    def _memo(self, reference: str, issued: int, tool: str, amount: int, network: str) -> str:
        message = f"{reference}|{issued}|{tool}|{amount}|{network}".encode()
        mac = hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]
        return f"{MEMO_PREFIX}:{issued}:{mac}"


def offer(
    references: References, network: AcceptedNetwork, tool: str, amount: int, now: int
) -> dict[str, Any]:
    """How to pay this call with a plain transfer (an extension of the PaymentRequired)."""
    reference, memo = references.issue(tool, amount, network.network, now)
    return {
        "network": network.network,
        "asset": network.usdc,
        "amount": str(amount),
        "payTo": network.pay_to,
        "tokenAccount": token_account(network.pay_to, network.usdc),
        "memo": memo,
        "reference": reference,
        "expiresAt": now + REFERENCE_TTL_S,
        "howToPay": (
            f"Send {usd(amount)} USDC ({amount} units) to the token account with this memo, "
            "then call again naming the transfer's signature and this reference where "
            "claimWith says. Keep the reference to yourself."
        ),
    }


def is_signature(text: str) -> bool:
    from solders.signature import Signature

    try:
        Signature.from_string(text)
    except ValueError:
        return False
    return True


async def verify_transfer(
    source: TransactionSource,
    claim: TransferClaim,
    *,
    network: AcceptedNetwork,
    references: References,
    tool: str,
    amount: int,
    now: int,
) -> VerifiedTransfer | TransferRefused:
    """Check a claimed transfer against the chain: every rule of the signature flow but replay
    (the journal's), in the order that gives the most useful refusal."""
    if not is_signature(claim.signature):
        return TransferRefused("INVALID_SIGNATURE", "that is not a Solana transaction signature")
    found = await source.get_transaction(claim.signature)
    if found is None:
        return TransferRefused(
            "TRANSACTION_NOT_FOUND",
            "no confirmed transaction has that signature yet; retry in a few seconds",
        )
    meta = found.get("meta") or {}
    if meta.get("err") is not None:
        return TransferRefused("INVALID_SIGNATURE", "that transaction failed on chain")
    instructions = _instructions(found)
    ours = token_account(network.pay_to, network.usdc)
    transfers = [i["parsed"]["info"] for i in instructions if _is_transfer(i)]
    to_us = [t for t in transfers if t.get("destination") == ours]
    if not to_us:
        if any(_owner_of(found, t.get("destination")) == network.pay_to for t in transfers):
            return TransferRefused("WRONG_TOKEN", f"the transfer is not in USDC ({network.usdc})")
        return TransferRefused(
            "WRONG_RECIPIENT", f"the transfer does not go to our USDC account {ours}"
        )
    if any(t.get("mint", network.usdc) != network.usdc for t in to_us):
        return TransferRefused("WRONG_TOKEN", f"the transfer is not in USDC ({network.usdc})")
    paid = sum(_amount(t) for t in to_us)
    if paid < amount:
        return TransferRefused(
            "INSUFFICIENT_AMOUNT", f"{paid} units arrived; this call costs {amount} ({usd(amount)})"
        )
    memos = [str(i["parsed"]) for i in instructions if i.get("program") == "spl-memo"]
    issued = [references.matches(m, claim.reference, tool, amount, network.network) for m in memos]
    valid = [when for when in issued if when is not None]
    if not valid:
        return TransferRefused(
            "PAYMENT_REQUIRED",
            "the transfer's memo is not the one issued with this reference for this call; "
            "call without payment for a new one",
        )
    block_time = int(found.get("blockTime") or 0)
    if block_time > valid[0] + REFERENCE_TTL_S or now - block_time > MAX_AGE_S:
        return TransferRefused(
            "EXPIRED_PAYMENT",
            f"the transfer must be made within {REFERENCE_TTL_S} s of the quote and claimed "
            f"within {MAX_AGE_S} s; call without payment for a new reference",
        )
    payer = to_us[0].get("authority") or to_us[0].get("multisigAuthority")
    return VerifiedTransfer(claim.signature, payer, paid, block_time)


def _instructions(found: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    top = found.get("transaction", {}).get("message", {}).get("instructions", [])
    inner = (found.get("meta") or {}).get("innerInstructions") or []
    return [*top, *(i for group in inner for i in group.get("instructions", []))]


def _is_transfer(instruction: Mapping[str, Any]) -> bool:
    parsed = instruction.get("parsed")
    return (
        instruction.get("program") in TOKEN_PROGRAMS
        and isinstance(parsed, Mapping)
        and parsed.get("type") in ("transfer", "transferChecked")
    )


def _amount(info: Mapping[str, Any]) -> int:
    raw = info.get("tokenAmount", {}).get("amount") if "tokenAmount" in info else info.get("amount")
    return int(raw) if isinstance(raw, str) and raw.isdigit() else 0


def _owner_of(found: Mapping[str, Any], account: object) -> str | None:
    keys = found.get("transaction", {}).get("message", {}).get("accountKeys", [])
    pubkeys = [k.get("pubkey") if isinstance(k, Mapping) else k for k in keys]
    balances = (found.get("meta") or {}).get("postTokenBalances") or []
    for balance in balances:
        index = balance.get("accountIndex")
        if isinstance(index, int) and index < len(pubkeys) and pubkeys[index] == account:
            owner = balance.get("owner")
            return str(owner) if owner is not None else None
    return None
