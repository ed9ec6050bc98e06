"""A Solana JSON-RPC endpoint on loopback, backed by an in-process LiteSVM ledger.

LiteSVM runs the real SPL Token, Associated Token Account and Memo program binaries, so a transfer
succeeds or fails exactly as on devnet. :class:`SolanaLedger` wraps one LiteSVM instance and keeps
what a node's ledger would (slots, block times, transaction metadata); :class:`SolanaRpcServer`
serves it over HTTP in the JSON shapes of Agave's RPC (see ``tests/fixtures/solana/``). Several
servers can share one ledger, which is how endpoint failover is tested.

Known gaps: address lookup tables are not resolved in responses; only the instruction types a
payment uses are parsed in ``jsonParsed`` (others appear unparsed, as the node shows programs it
has no parser for).
"""

from __future__ import annotations

import base64
import json
import math
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import uvicorn
from solders.account import Account
from solders.clock import Clock
from solders.hash import Hash
from solders.instruction import CompiledInstruction
from solders.litesvm import LiteSVM
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.rpc.responses import RpcSimulateTransactionResult
from solders.signature import Signature
from solders.token.state import Mint, TokenAccount, TokenAccountState
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import (
    FailedTransactionMetadata,
    SimulatedTransactionInfo,
    TransactionMetadata,
)
from solders.transaction_status import TransactionErrorType
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

JsonObj = dict[str, Any]
OutageMode = Literal["http_503", "rpc_error"]

SYSTEM_PROGRAM = "11111111111111111111111111111111"
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
TOKEN_2022_PROGRAM = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"
ATA_PROGRAM = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"
MEMO_PROGRAM = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"
MEMO_V1_PROGRAM = "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo"
COMPUTE_BUDGET_PROGRAM = "ComputeBudget111111111111111111111111111111"
DEVNET_GENESIS_HASH = "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG"

# Devnet-sized numbers, with block height trailing the slot as on every real cluster (skipped
# slots), so code that mixes up the two gets visibly wrong answers.
GENESIS_SLOT = 400_000_000
SKIPPED_SLOTS = 20_000_000
SLOTS_PER_EPOCH = 432_000
BLOCKHASH_LIFETIME = 150  # blocks a blockhash stays valid (Agave's MAX_PROCESSING_AGE)
LAMPORTS_PER_SIGNATURE = 5_000
DEFAULT_UNITS_PER_INSTRUCTION = 200_000
MAX_COMPUTE_UNITS = 1_400_000
MAX_SIGNATURE_STATUSES = 256
RPC_VERSION = {"feature-set": 3294202862, "solana-core": "2.2.0"}

# Keys the runtime never lets a transaction write, whatever the message header says.
_READONLY_KEYS = frozenset(
    {
        SYSTEM_PROGRAM,
        TOKEN_PROGRAM,
        TOKEN_2022_PROGRAM,
        ATA_PROGRAM,
        MEMO_PROGRAM,
        MEMO_V1_PROGRAM,
        COMPUTE_BUDGET_PROGRAM,
        "SysvarC1ock11111111111111111111111111111111",
        "SysvarRent111111111111111111111111111111111",
        "Sysvar1nstructions1111111111111111111111111",
        "SysvarRecentB1ockHashes11111111111111111111",
    }
)
_TOKEN_PROGRAMS = {TOKEN_PROGRAM: "spl-token", TOKEN_2022_PROGRAM: "spl-token-2022"}
_MEMO_PROGRAMS = frozenset({MEMO_PROGRAM, MEMO_V1_PROGRAM})
_EXTENSION_TYPES = {7: "immutableOwner"}

# Display texts of Agave's TransactionError / InstructionError, used in error messages.
_TX_ERROR_TEXT = {
    "AccountInUse": "Account in use",
    "AccountLoadedTwice": "Account loaded twice",
    "AccountNotFound": "Attempt to debit an account but found no record of a prior credit.",
    "ProgramAccountNotFound": "Attempt to load a program that does not exist",
    "InsufficientFundsForFee": "Insufficient funds for fee",
    "InvalidAccountForFee": "This account may not be used to pay transaction fees",
    "AlreadyProcessed": "This transaction has already been processed",
    "BlockhashNotFound": "Blockhash not found",
    "MissingSignatureForFee": "Transaction requires a fee but has no signature present",
    "InvalidAccountIndex": "Transaction contains an invalid account reference",
    "SignatureFailure": "Transaction did not pass signature verification",
    "InvalidProgramForExecution": "This program may not be used for executing instructions",
    "SanitizeFailure": "Transaction failed to sanitize accounts offsets correctly",
    "UnsupportedVersion": "Transaction version is unsupported",
    "InvalidWritableAccount": "Transaction loads a writable account that cannot be written",
}
_IX_ERROR_TEXT = {
    "GenericError": "generic instruction error",
    "InvalidArgument": "invalid program argument",
    "InvalidInstructionData": "invalid instruction data",
    "InvalidAccountData": "invalid account data for instruction",
    "AccountDataTooSmall": "account data too small for instruction",
    "InsufficientFunds": "insufficient funds for instruction",
    "IncorrectProgramId": "incorrect program id for instruction",
    "MissingRequiredSignature": "missing required signature for instruction",
    "AccountAlreadyInitialized": "instruction requires an uninitialized account",
    "UninitializedAccount": "instruction requires an initialized account",
    "InvalidAccountOwner": "Invalid account owner",
    "AccountNotExecutable": "instruction expected an executable account",
    "ProgramFailedToComplete": "Program failed to complete",
    "ComputationalBudgetExceeded": "Computational budget exceeded",
    "ExternalAccountLamportSpend": (
        "instruction spent from the balance of an account it does not own"
    ),
    "ReadonlyLamportChange": "instruction changed the balance of a read-only account",
    "ReadonlyDataModified": "instruction modified data of a read-only account",
}

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(data: bytes) -> str:
    """Base58 (Bitcoin alphabet), as Solana prints keys, signatures and instruction data."""
    number = int.from_bytes(data, "big")
    digits: list[str] = []
    while number:
        number, rest = divmod(number, 58)
        digits.append(_B58_ALPHABET[rest])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(digits))


def b58decode(text: str) -> bytes:
    """Inverse of :func:`b58encode`; raises ValueError on characters outside the alphabet."""
    number = 0
    for char in text:
        number = number * 58 + _B58_ALPHABET.index(char)
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")


class RpcError(Exception):
    """A JSON-RPC error object, raised by handlers and returned to the caller as is."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> JsonObj:
        error: JsonObj = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def _invalid_params(message: str) -> RpcError:
    return RpcError(-32602, message)


def _node_unhealthy() -> RpcError:
    return RpcError(-32005, "Node is unhealthy", {"numSlotsBehind": None})


def tx_error_json(err: TransactionErrorType) -> Any:
    """The RPC JSON of a TransactionError (``"BlockhashNotFound"``, ``{"InstructionError": …}``)."""
    encoded = json.loads(RpcSimulateTransactionResult(err=err, logs=None).to_json())
    return encoded["err"]


def describe_tx_error(err: Any) -> str:
    """The node's display text for an RPC-JSON TransactionError."""
    if isinstance(err, str):
        return _TX_ERROR_TEXT.get(err, err)
    if isinstance(err, dict) and len(err) == 1:
        ((kind, value),) = err.items()
        if kind == "InstructionError":
            index, ix_err = value
            return f"Error processing Instruction {index}: {_describe_ix_error(ix_err)}"
        if kind == "InsufficientFundsForRent":
            return (
                f"Transaction results in an account ({value['account_index']}) with "
                "insufficient funds for rent"
            )
        if kind == "DuplicateInstruction":
            return f"Transaction contains a duplicate instruction ({value}) that is not allowed"
    return json.dumps(err)


def _describe_ix_error(err: Any) -> str:
    if isinstance(err, str):
        return _IX_ERROR_TEXT.get(err, err)
    if isinstance(err, dict) and "Custom" in err:
        return f"custom program error: {int(err['Custom']):#x}"
    if isinstance(err, dict) and "BorshIoError" in err:
        return f"Failed to serialize or deserialize account data: {err['BorshIoError']}"
    return json.dumps(err)


def ui_token_amount(amount: int, decimals: int, *, from_ledger: bool = False) -> JsonObj:
    """``{amount, decimals, uiAmount, uiAmountString}`` as the node prints a token amount.

    ``from_ledger`` is for pre/post token balances: the node reads those back from its ledger
    store, which keeps ``uiAmount`` as a float and turns 0.0 into ``null``.
    """
    ui_amount: float | None = amount / 10**decimals
    if from_ledger and amount == 0:
        ui_amount = None
    whole, fraction = divmod(amount, 10**decimals)
    text = str(whole)
    if decimals and fraction:
        text += "." + str(fraction).rjust(decimals, "0").rstrip("0")
    return {
        "amount": str(amount),
        "decimals": decimals,
        "uiAmount": ui_amount,
        "uiAmountString": text,
    }


@dataclass(frozen=True)
class TokenBalance:
    """One entry of ``meta.preTokenBalances`` / ``postTokenBalances``."""

    account_index: int
    mint: str
    owner: str
    program_id: str
    amount: int
    decimals: int

    def to_json(self) -> JsonObj:
        return {
            "accountIndex": self.account_index,
            "mint": self.mint,
            "owner": self.owner,
            "programId": self.program_id,
            "uiTokenAmount": ui_token_amount(self.amount, self.decimals, from_ledger=True),
        }


@dataclass(frozen=True)
class InnerIx:
    """An instruction a program invoked (CPI), in compiled form."""

    program_id_index: int
    accounts: bytes
    data: bytes
    stack_height: int


@dataclass(frozen=True)
class LedgerEntry:
    """A transaction that landed (successfully or not), with what the node records about it."""

    signature: str
    slot: int
    block_time: int
    tx: VersionedTransaction
    err: Any
    fee: int
    pre_balances: list[int]
    post_balances: list[int]
    pre_token_balances: list[TokenBalance]
    post_token_balances: list[TokenBalance]
    logs: list[str]
    inner: list[list[InnerIx]]
    units_consumed: int
    cost_units: int
    return_data: tuple[str, bytes] | None

    @property
    def keys(self) -> list[str]:
        return [str(key) for key in self.tx.message.account_keys]


@dataclass(frozen=True)
class _Outcome:
    err: Any
    logs: list[str]
    units_consumed: int
    inner: list[list[InnerIx]]
    return_data: tuple[str, bytes] | None
    post_accounts: dict[str, Account]


def _inner_instructions(meta: TransactionMetadata) -> list[list[InnerIx]]:
    result: list[list[InnerIx]] = []
    for per_instruction in meta.inner_instructions():
        compiled: list[InnerIx] = []
        for inner in per_instruction:
            ix = inner.instruction()
            # The stub file lacks stack_height; it is a method at runtime.
            height = int(getattr(inner, "stack_height")())  # noqa: B009
            compiled.append(InnerIx(ix.program_id_index, bytes(ix.accounts), ix.data, height))
        result.append(compiled)
    return result


def _return_data(meta: TransactionMetadata) -> tuple[str, bytes] | None:
    # The stub file calls it transaction_return_data; at runtime it is the method return_data.
    data = getattr(meta, "return_data")()  # noqa: B009
    if not bytes(data.data):
        return None
    return str(data.program_id), bytes(data.data)


def _writable_flags(message: Message | MessageV0) -> list[bool]:
    """Which static account keys a transaction may write, as the runtime decides it."""
    header = message.header
    keys = [str(key) for key in message.account_keys]
    signed = header.num_required_signatures
    programs = {keys[ix.program_id_index] for ix in message.instructions}
    flags: list[bool] = []
    for index, key in enumerate(keys):
        if index < signed:
            writable = index < signed - header.num_readonly_signed_accounts
        else:
            writable = index < len(keys) - header.num_readonly_unsigned_accounts
        flags.append(writable and key not in _READONLY_KEYS and key not in programs)
    return flags


def _compute_budget(message: Message | MessageV0) -> tuple[int, int]:
    """(compute unit limit, micro-lamports per unit) the transaction asked for."""
    keys = [str(key) for key in message.account_keys]
    limit: int | None = None
    price = 0
    other = 0
    for ix in message.instructions:
        data = ix.data
        if keys[ix.program_id_index] != COMPUTE_BUDGET_PROGRAM:
            other += 1
        elif data[:1] == b"\x02" and len(data) >= 5:
            limit = int.from_bytes(data[1:5], "little")
        elif data[:1] == b"\x03" and len(data) >= 9:
            price = int.from_bytes(data[1:9], "little")
    if limit is None:
        limit = DEFAULT_UNITS_PER_INSTRUCTION * other
    return min(limit, MAX_COMPUTE_UNITS), price


def _base_fee(tx: VersionedTransaction) -> int:
    return LAMPORTS_PER_SIGNATURE * tx.message.header.num_required_signatures


def _priority_fee(tx: VersionedTransaction) -> int:
    limit, price = _compute_budget(tx.message)
    return math.ceil(limit * price / 1_000_000)


def _cost_units(tx: VersionedTransaction, units_consumed: int) -> int:
    """Approximates Agave's cost model: signatures, write locks, data bytes, executed units."""
    message = tx.message
    data_bytes = sum(len(ix.data) for ix in message.instructions)
    writable = sum(_writable_flags(message))
    signatures = message.header.num_required_signatures
    return 720 * signatures + 300 * writable + data_bytes // 4 + units_consumed


def _with_blockhash(tx: VersionedTransaction, blockhash: Hash) -> VersionedTransaction:
    message = tx.message
    replaced: Message | MessageV0
    if isinstance(message, MessageV0):
        replaced = MessageV0(
            message.header,
            message.account_keys,
            blockhash,
            message.instructions,
            message.address_table_lookups,
        )
    else:
        replaced = Message.new_with_compiled_instructions(
            message.header.num_required_signatures,
            message.header.num_readonly_signed_accounts,
            message.header.num_readonly_unsigned_accounts,
            message.account_keys,
            blockhash,
            message.instructions,
        )
    return VersionedTransaction.populate(replaced, tx.signatures)


def _token_state(account: Account | None) -> TokenAccount | None:
    if account is None or str(account.owner) not in _TOKEN_PROGRAMS:
        return None
    data = account.data
    is_account = len(data) == 165 or (len(data) > 165 and data[165] == 2)
    if not is_account:
        return None
    return TokenAccount.from_bytes(data[:165])


def _mint_state(account: Account | None) -> Mint | None:
    if account is None or str(account.owner) not in _TOKEN_PROGRAMS:
        return None
    data = account.data
    if len(data) == 82 or (len(data) > 165 and data[165] == 1):
        return Mint.from_bytes(data[:82])
    return None


class SolanaLedger:
    """One LiteSVM bank plus the bookkeeping a node keeps: slots, block times, statuses.

    Thread-safe: every server thread and the test thread go through one lock.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._svm = LiteSVM()
        self._slot = GENESIS_SLOT
        self._fixed_time: int | None = None
        self._blockhash_height = self.block_height
        self._entries: dict[str, LedgerEntry] = {}
        self._order: list[str] = []
        # Every address written or used by a transaction: LiteSVM has no index of accounts by
        # owner, and getTokenAccountsByOwner needs one.
        self._known: dict[Pubkey, None] = {}
        self._apply_clock()

    # -- clock and blockhash -------------------------------------------------------------------

    @property
    def slot(self) -> int:
        return self._slot

    @property
    def block_height(self) -> int:
        return self._slot - SKIPPED_SLOTS

    def now(self) -> int:
        """The chain's wall clock: the pinned time if one is set, else the real time."""
        return self._fixed_time if self._fixed_time is not None else int(time.time())

    def set_time(self, unix_ts: int | None) -> None:
        """Pin the block time of coming transactions (None: follow the real clock again)."""
        with self._lock:
            self._fixed_time = unix_ts
            self._apply_clock()

    def latest_blockhash(self) -> tuple[Hash, int]:
        """(blockhash, lastValidBlockHeight)."""
        with self._lock:
            return self._svm.latest_blockhash(), self._blockhash_height + BLOCKHASH_LIFETIME

    def expire_blockhash(self) -> None:
        """Move past the current blockhash's lifetime, as 150 blocks would."""
        with self._lock:
            self._slot += BLOCKHASH_LIFETIME + 1
            self._rotate_blockhash()
            self._apply_clock()

    def _rotate_blockhash(self) -> None:
        self._svm.expire_blockhash()
        self._blockhash_height = self.block_height

    def _advance_slot(self) -> None:
        self._slot += 1
        if self.block_height > self._blockhash_height + BLOCKHASH_LIFETIME:
            self._rotate_blockhash()
        self._apply_clock()

    def _apply_clock(self) -> None:
        epoch = self._slot // SLOTS_PER_EPOCH
        now = self.now()
        self._svm.set_clock(Clock(self._slot, now, epoch, epoch + 1, now))

    # -- accounts --------------------------------------------------------------------------------

    def get_account(self, address: Pubkey) -> Account | None:
        with self._lock:
            return self._svm.get_account(address)

    def set_account(self, address: Pubkey, account: Account) -> None:
        """Write account state directly (test setup; no transaction is recorded)."""
        with self._lock:
            self._svm.set_account(address, account)
            self._known[address] = None

    def rent_exempt_minimum(self, size: int) -> int:
        with self._lock:
            return self._svm.minimum_balance_for_rent_exemption(size)

    def _snapshot(self, keys: Sequence[Pubkey]) -> list[Account | None]:
        return [self._svm.get_account(key) for key in keys]

    def _token_balances(
        self, keys: Sequence[Pubkey], accounts: Sequence[Account | None]
    ) -> list[TokenBalance]:
        balances: list[TokenBalance] = []
        for index, account in enumerate(accounts):
            state = _token_state(account)
            if account is None or state is None:
                continue
            mint = _mint_state(self._svm.get_account(state.mint))
            balances.append(
                TokenBalance(
                    account_index=index,
                    mint=str(state.mint),
                    owner=str(state.owner),
                    program_id=str(account.owner),
                    amount=state.amount,
                    decimals=mint.decimals if mint is not None else 0,
                )
            )
        return balances

    # -- transactions -----------------------------------------------------------------------------

    def entry(self, signature: str) -> LedgerEntry | None:
        with self._lock:
            return self._entries.get(signature)

    def entries(self) -> list[LedgerEntry]:
        """Landed transactions, oldest first."""
        with self._lock:
            return [self._entries[signature] for signature in self._order]

    def submit(self, tx: VersionedTransaction, *, skip_preflight: bool = False) -> str:
        """``sendTransaction``: preflight (unless skipped), then execute; returns the signature.

        With preflight a failing transaction raises the node's -32003 / -32002 errors. Without it,
        as on a real cluster, the signature comes back regardless: a transaction that fails in a
        program still lands (fee charged, status carries ``err``), while one the leader would drop
        (bad signature, unknown blockhash, duplicate) never gets a status.
        """
        try:
            tx.sanitize()
        except Exception as exc:
            raise _invalid_params(f"invalid transaction: {exc}") from exc
        signature = str(tx.signatures[0])
        with self._lock:
            if not skip_preflight:
                if not all(tx.verify_with_results()):
                    raise RpcError(-32003, "Transaction signature verification failure")
                outcome = self._simulate(tx)
                if outcome.err is not None:
                    raise RpcError(
                        -32002,
                        f"Transaction simulation failed: {describe_tx_error(outcome.err)}",
                        self._simulation_json(tx, outcome, None, None),
                    )
            self._execute(tx)
        return signature

    def _execute(self, tx: VersionedTransaction) -> None:
        signature = str(tx.signatures[0])
        if signature in self._entries:
            return  # the node drops a duplicate without a word
        keys = list(tx.message.account_keys)
        self._known.update(dict.fromkeys(keys))
        pre = self._snapshot(keys)
        pre_tokens = self._token_balances(keys, pre)
        self._advance_slot()
        result = self._svm.send_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            if self._svm.get_transaction(tx.signatures[0]) is None:
                return  # rejected before execution: never lands, no status
            meta = result.meta()
            err = tx_error_json(result.err())
        else:
            meta = result
            err = None
        # LiteSVM charges only the per-signature fee; a cluster also takes the priority fee.
        priority = self._charge_priority_fee(tx, keys[0])
        post = self._snapshot(keys)
        units = meta.compute_units_consumed()
        self._entries[signature] = LedgerEntry(
            signature=signature,
            slot=self._slot,
            block_time=self.now(),
            tx=tx,
            err=err,
            fee=_base_fee(tx) + priority,
            pre_balances=[account.lamports if account else 0 for account in pre],
            post_balances=[account.lamports if account else 0 for account in post],
            pre_token_balances=pre_tokens,
            post_token_balances=self._token_balances(keys, post),
            logs=list(meta.logs()),
            inner=_inner_instructions(meta),
            units_consumed=units,
            cost_units=_cost_units(tx, units),
            return_data=_return_data(meta),
        )
        self._order.append(signature)

    def _charge_priority_fee(self, tx: VersionedTransaction, fee_payer: Pubkey) -> int:
        account = self._svm.get_account(fee_payer)
        if account is None:
            return 0
        fee = min(_priority_fee(tx), account.lamports)
        if fee:
            self._svm.set_account(
                fee_payer,
                Account(
                    account.lamports - fee,
                    account.data,
                    account.owner,
                    account.executable,
                    account.rent_epoch,
                ),
            )
        return fee

    def _simulate(self, tx: VersionedTransaction) -> _Outcome:
        # The node's simulation never checks signatures (sigVerify is a separate step).
        self._svm.with_sigverify(False)
        try:
            result = self._svm.simulate_transaction(tx)
        finally:
            self._svm.with_sigverify(True)
        if isinstance(result, SimulatedTransactionInfo):
            meta = result.meta()
            err = None
            post = {str(key): account for key, account in result.post_accounts()}
        else:
            meta = result.meta()
            err = tx_error_json(result.err())
            post = {}
        return _Outcome(
            err=err,
            logs=list(meta.logs()),
            units_consumed=meta.compute_units_consumed(),
            inner=_inner_instructions(meta),
            return_data=_return_data(meta),
            post_accounts=post,
        )

    def _simulation_json(
        self,
        tx: VersionedTransaction,
        outcome: _Outcome,
        accounts: JsonObj | None,
        replacement: JsonObj | None,
        *,
        inner: bool = False,
    ) -> JsonObj:
        accounts_json: list[Any] | None = None
        if accounts is not None:
            encoding = accounts.get("encoding", "base64")
            accounts_json = []
            for address in accounts.get("addresses", []):
                key = _pubkey(address)
                account = outcome.post_accounts.get(address) or self._svm.get_account(key)
                accounts_json.append(self._account_json(account, encoding))
        keys = [str(key) for key in tx.message.account_keys]
        return_data = None
        if outcome.return_data is not None:
            program, data = outcome.return_data
            return_data = {
                "programId": program,
                "data": [base64.b64encode(data).decode(), "base64"],
            }
        landed = outcome.err is None or isinstance(outcome.err, dict)
        return {
            "err": outcome.err,
            "logs": outcome.logs,
            "accounts": accounts_json,
            "unitsConsumed": outcome.units_consumed,
            "loadedAccountsDataSize": None,
            "returnData": return_data,
            "innerInstructions": (_inner_json(outcome.inner, keys, parsed=True) if inner else None),
            "replacementBlockhash": replacement,
            "fee": _base_fee(tx) + _priority_fee(tx) if landed else None,
            "preBalances": None,
            "postBalances": None,
            "preTokenBalances": None,
            "postTokenBalances": None,
            "loadedAddresses": None,
        }

    # -- JSON-RPC ---------------------------------------------------------------------------------

    def handle(self, method: str, params: Any) -> Any:
        """Answer one JSON-RPC call; raises :class:`RpcError` for error responses."""
        if params is None:
            params = []
        if not isinstance(params, list):
            raise _invalid_params("expected an array of parameters")
        handler = _METHODS.get(method)
        if handler is None:
            raise RpcError(-32601, "Method not found")
        with self._lock:
            return handler(self, params)

    def _context(self) -> JsonObj:
        return {"apiVersion": RPC_VERSION["solana-core"], "slot": self._slot}

    def _account_json(self, account: Account | None, encoding: str) -> JsonObj | None:
        if account is None:
            return None
        data: Any
        if encoding == "jsonParsed":
            data = self._parsed_account_data(account)
        elif encoding == "base64":
            data = [base64.b64encode(account.data).decode(), "base64"]
        elif encoding in ("base58", "binary"):
            if len(account.data) > 128:
                raise _invalid_params(
                    "Encoded binary (base 58) data should be less than 128 bytes, "
                    "please use Base64 encoding."
                )
            encoded = b58encode(account.data)
            data = encoded if encoding == "binary" else [encoded, "base58"]
        else:
            raise _invalid_params(f"unsupported encoding {encoding!r}")
        return {
            "data": data,
            "executable": account.executable,
            "lamports": account.lamports,
            "owner": str(account.owner),
            "rentEpoch": account.rent_epoch,
            "space": len(account.data),
        }

    def _parsed_account_data(self, account: Account) -> Any:
        program = _TOKEN_PROGRAMS.get(str(account.owner))
        token = _token_state(account)
        if program is not None and token is not None:
            mint = _mint_state(self._svm.get_account(token.mint))
            decimals = mint.decimals if mint is not None else 0
            states = {
                int(TokenAccountState.Initialized): "initialized",
                int(TokenAccountState.Frozen): "frozen",
            }
            info: JsonObj = {
                "isNative": token.is_native is not None,
                "mint": str(token.mint),
                "owner": str(token.owner),
                "state": states.get(int(token.state), "uninitialized"),
                "tokenAmount": ui_token_amount(token.amount, decimals),
            }
            if token.delegate is not None:
                info["delegate"] = str(token.delegate)
                info["delegatedAmount"] = ui_token_amount(token.delegated_amount, decimals)
            if token.close_authority is not None:
                info["closeAuthority"] = str(token.close_authority)
            parsed: JsonObj = {"info": info, "type": "account"}
            return {"parsed": parsed, "program": program, "space": len(account.data)}
        mint_state = _mint_state(account)
        if program is not None and mint_state is not None:
            authority = mint_state.mint_authority
            freeze = mint_state.freeze_authority
            info = {
                "decimals": mint_state.decimals,
                "freezeAuthority": str(freeze) if freeze is not None else None,
                "isInitialized": mint_state.is_initialized,
                "mintAuthority": str(authority) if authority is not None else None,
                "supply": str(mint_state.supply),
            }
            return {
                "parsed": {"info": info, "type": "mint"},
                "program": program,
                "space": len(account.data),
            }
        return [base64.b64encode(account.data).decode(), "base64"]

    def _decode_tx(self, encoded: Any, encoding: str) -> VersionedTransaction:
        if not isinstance(encoded, str):
            raise _invalid_params("transaction must be a string")
        try:
            raw = base64.b64decode(encoded, validate=True) if encoding == "base64" else None
            if encoding == "base58":
                raw = b58decode(encoded)
            if raw is None:
                raise _invalid_params(f"unsupported encoding: {encoding}")
            return VersionedTransaction.from_bytes(raw)
        except RpcError:
            raise
        except Exception as exc:
            raise _invalid_params(f"failed to deserialize VersionedTransaction: {exc}") from exc

    def _rpc_send_transaction(self, params: list[Any]) -> str:
        config = _config(params, 1)
        tx = self._decode_tx(_param(params, 0), config.get("encoding", "base58"))
        return self.submit(tx, skip_preflight=bool(config.get("skipPreflight", False)))

    def _rpc_simulate_transaction(self, params: list[Any]) -> JsonObj:
        config = _config(params, 1)
        tx = self._decode_tx(_param(params, 0), config.get("encoding", "base58"))
        sig_verify = bool(config.get("sigVerify", False))
        replace = bool(config.get("replaceRecentBlockhash", False))
        if sig_verify and replace:
            raise _invalid_params("sigVerify may not be used with replaceRecentBlockhash")
        if sig_verify and not all(tx.verify_with_results()):
            raise RpcError(-32003, "Transaction signature verification failure")
        replacement = None
        if replace:
            blockhash, last_valid = self.latest_blockhash()
            tx = _with_blockhash(tx, blockhash)
            replacement = {"blockhash": str(blockhash), "lastValidBlockHeight": last_valid}
        outcome = self._simulate(tx)
        value = self._simulation_json(
            tx,
            outcome,
            config.get("accounts"),
            replacement,
            inner=bool(config.get("innerInstructions", False)),
        )
        return {"context": self._context(), "value": value}

    def _rpc_get_latest_blockhash(self, params: list[Any]) -> JsonObj:
        blockhash, last_valid = self.latest_blockhash()
        return {
            "context": self._context(),
            "value": {"blockhash": str(blockhash), "lastValidBlockHeight": last_valid},
        }

    def _rpc_is_blockhash_valid(self, params: list[Any]) -> JsonObj:
        blockhash, _ = self.latest_blockhash()
        return {"context": self._context(), "value": _param(params, 0) == str(blockhash)}

    def _rpc_get_signature_statuses(self, params: list[Any]) -> JsonObj:
        signatures = _param(params, 0)
        if not isinstance(signatures, list):
            raise _invalid_params("expected an array of signatures")
        if len(signatures) > MAX_SIGNATURE_STATUSES:
            raise _invalid_params(f"Too many inputs provided; max {MAX_SIGNATURE_STATUSES}")
        value: list[JsonObj | None] = []
        for signature in signatures:
            entry = self._entries.get(str(_signature(signature)))
            if entry is None:
                value.append(None)
                continue
            value.append(
                {
                    "slot": entry.slot,
                    # A rooted (finalized) transaction has no confirmation count.
                    "confirmations": None,
                    "err": entry.err,
                    "status": {"Ok": None} if entry.err is None else {"Err": entry.err},
                    "confirmationStatus": "finalized",
                }
            )
        return {"context": self._context(), "value": value}

    def _rpc_get_transaction(self, params: list[Any]) -> JsonObj | None:
        signature = str(_signature(_param(params, 0)))
        raw_config = params[1] if len(params) > 1 else None
        config = {"encoding": raw_config} if isinstance(raw_config, str) else _config(params, 1)
        if config.get("commitment") == "processed":
            raise _invalid_params("Method does not support commitment below `confirmed`")
        entry = self._entries.get(signature)
        if entry is None:
            return None
        max_version = config.get("maxSupportedTransactionVersion")
        is_v0 = isinstance(entry.tx.message, MessageV0)
        if is_v0 and max_version is None:
            raise RpcError(
                -32015,
                "Transaction version (0) is not supported by the requesting client. Please try "
                'the request again with the following configuration parameter: "'
                'maxSupportedTransactionVersion": 0',
            )
        encoding = config.get("encoding", "json")
        result: JsonObj = {
            "blockTime": entry.block_time,
            "meta": self._meta_json(entry, parsed=encoding == "jsonParsed"),
            "slot": entry.slot,
            "transaction": self._transaction_json(entry, encoding),
        }
        if max_version is not None:
            result["version"] = 0 if is_v0 else "legacy"
        return result

    def _transaction_json(self, entry: LedgerEntry, encoding: str) -> Any:
        raw = bytes(entry.tx)
        if encoding == "base64":
            return [base64.b64encode(raw).decode(), "base64"]
        if encoding in ("base58", "binary"):
            return [b58encode(raw), "base58"] if encoding == "base58" else b58encode(raw)
        if encoding not in ("json", "jsonParsed"):
            raise _invalid_params(f"unsupported encoding {encoding!r}")
        message = entry.tx.message
        keys = entry.keys
        body: JsonObj
        if encoding == "json":
            header = message.header
            body = {
                "accountKeys": keys,
                "header": {
                    "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
                    "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts,
                    "numRequiredSignatures": header.num_required_signatures,
                },
                "instructions": [_compiled_json(ix, 1) for ix in message.instructions],
                "recentBlockhash": str(message.recent_blockhash),
            }
        else:
            writable = _writable_flags(message)
            body = {
                "accountKeys": [
                    {
                        "pubkey": key,
                        "signer": index < message.header.num_required_signatures,
                        "source": "transaction",
                        "writable": writable[index],
                    }
                    for index, key in enumerate(keys)
                ],
                "instructions": [
                    parse_instruction(
                        keys[ix.program_id_index],
                        [keys[i] for i in bytes(ix.accounts)],
                        ix.data,
                        1,
                    )
                    for ix in message.instructions
                ],
                "recentBlockhash": str(message.recent_blockhash),
            }
        if isinstance(message, MessageV0):
            body["addressTableLookups"] = [
                json.loads(lookup.to_json()) for lookup in message.address_table_lookups
            ]
        return {"message": body, "signatures": [str(sig) for sig in entry.tx.signatures]}

    def _meta_json(self, entry: LedgerEntry, *, parsed: bool) -> JsonObj:
        meta: JsonObj = {
            "computeUnitsConsumed": entry.units_consumed,
            "costUnits": entry.cost_units,
            "err": entry.err,
            "fee": entry.fee,
            "innerInstructions": _inner_json(entry.inner, entry.keys, parsed=parsed),
            "logMessages": entry.logs,
            "postBalances": entry.post_balances,
            "postTokenBalances": [balance.to_json() for balance in entry.post_token_balances],
            "preBalances": entry.pre_balances,
            "preTokenBalances": [balance.to_json() for balance in entry.pre_token_balances],
            "rewards": [],
            "status": {"Ok": None} if entry.err is None else {"Err": entry.err},
        }
        if not parsed:
            # jsonParsed leaves loaded addresses out; they are folded into accountKeys there.
            meta["loadedAddresses"] = {"readonly": [], "writable": []}
        if entry.return_data is not None:
            program, data = entry.return_data
            meta["returnData"] = {
                "programId": program,
                "data": [base64.b64encode(data).decode(), "base64"],
            }
        return meta

    def _rpc_get_signatures_for_address(self, params: list[Any]) -> list[JsonObj]:
        address = str(_pubkey(_param(params, 0)))
        config = _config(params, 1)
        limit = int(config.get("limit") or 1000)
        before, until = config.get("before"), config.get("until")
        results: list[JsonObj] = []
        started = before is None
        for signature in reversed(self._order):
            if not started:
                started = signature == before
                continue
            if signature == until:
                break
            entry = self._entries[signature]
            if address not in entry.keys:
                continue
            results.append(
                {
                    "blockTime": entry.block_time,
                    "confirmationStatus": "finalized",
                    "err": entry.err,
                    "memo": _memo_summary(entry),
                    "signature": signature,
                    "slot": entry.slot,
                }
            )
            if len(results) >= limit:
                break
        return results

    def _rpc_get_account_info(self, params: list[Any]) -> JsonObj:
        config = _config(params, 1)
        account = self._svm.get_account(_pubkey(_param(params, 0)))
        value = self._account_json(account, config.get("encoding", "binary"))
        return {"context": self._context(), "value": value}

    def _rpc_get_multiple_accounts(self, params: list[Any]) -> JsonObj:
        addresses = _param(params, 0)
        if not isinstance(addresses, list):
            raise _invalid_params("expected an array of addresses")
        encoding = _config(params, 1).get("encoding", "base64")
        value = [
            self._account_json(self._svm.get_account(_pubkey(address)), encoding)
            for address in addresses
        ]
        return {"context": self._context(), "value": value}

    def _rpc_get_token_accounts_by_owner(self, params: list[Any]) -> JsonObj:
        owner = _pubkey(_param(params, 0))
        wanted = _param(params, 1)
        if (
            not isinstance(wanted, dict)
            or len(wanted) != 1
            or not {"mint", "programId"} & set(wanted)
        ):
            raise _invalid_params("expected a filter object with mint or programId")
        encoding = _config(params, 2).get("encoding", "binary")
        value = []
        for address in list(self._known):
            account = self._svm.get_account(address)
            token = _token_state(account)
            if account is None or token is None or token.owner != owner:
                continue
            if str(wanted.get("programId", account.owner)) != str(account.owner):
                continue
            if str(wanted.get("mint", token.mint)) != str(token.mint):
                continue
            value.append({"account": self._account_json(account, encoding), "pubkey": str(address)})
        return {"context": self._context(), "value": value}

    def _rpc_get_balance(self, params: list[Any]) -> JsonObj:
        account = self._svm.get_account(_pubkey(_param(params, 0)))
        return {"context": self._context(), "value": account.lamports if account else 0}

    def _rpc_get_token_account_balance(self, params: list[Any]) -> JsonObj:
        account = self._svm.get_account(_pubkey(_param(params, 0)))
        if account is None:
            raise RpcError(-32602, "Invalid param: could not find account")
        token = _token_state(account)
        if token is None:
            raise RpcError(-32602, "Invalid param: not a Token account")
        mint = _mint_state(self._svm.get_account(token.mint))
        if mint is None:
            raise RpcError(-32602, "Invalid param: could not find mint")
        return {"context": self._context(), "value": ui_token_amount(token.amount, mint.decimals)}

    def _rpc_get_minimum_balance_for_rent_exemption(self, params: list[Any]) -> int:
        size = _param(params, 0)
        if not isinstance(size, int):
            raise _invalid_params("expected a data length")
        return self._svm.minimum_balance_for_rent_exemption(size)

    def _rpc_get_block_time(self, params: list[Any]) -> int:
        slot = _param(params, 0)
        for entry in self._entries.values():
            if entry.slot == slot:
                return entry.block_time
        raise RpcError(-32004, f"Block not available for slot {slot}")

    def _rpc_get_slot(self, params: list[Any]) -> int:
        return self._slot

    def _rpc_get_block_height(self, params: list[Any]) -> int:
        return self.block_height

    def _rpc_get_genesis_hash(self, params: list[Any]) -> str:
        return DEVNET_GENESIS_HASH

    def _rpc_get_health(self, params: list[Any]) -> str:
        return "ok"

    def _rpc_get_version(self, params: list[Any]) -> JsonObj:
        return dict(RPC_VERSION)


_METHODS: dict[str, Any] = {
    "getAccountInfo": SolanaLedger._rpc_get_account_info,
    "getBalance": SolanaLedger._rpc_get_balance,
    "getBlockHeight": SolanaLedger._rpc_get_block_height,
    "getBlockTime": SolanaLedger._rpc_get_block_time,
    "getGenesisHash": SolanaLedger._rpc_get_genesis_hash,
    "getHealth": SolanaLedger._rpc_get_health,
    "getLatestBlockhash": SolanaLedger._rpc_get_latest_blockhash,
    "getMinimumBalanceForRentExemption": (SolanaLedger._rpc_get_minimum_balance_for_rent_exemption),
    "getMultipleAccounts": SolanaLedger._rpc_get_multiple_accounts,
    "getSignatureStatuses": SolanaLedger._rpc_get_signature_statuses,
    "getSignaturesForAddress": SolanaLedger._rpc_get_signatures_for_address,
    "getSlot": SolanaLedger._rpc_get_slot,
    "getTokenAccountBalance": SolanaLedger._rpc_get_token_account_balance,
    "getTokenAccountsByOwner": SolanaLedger._rpc_get_token_accounts_by_owner,
    "getTransaction": SolanaLedger._rpc_get_transaction,
    "getVersion": SolanaLedger._rpc_get_version,
    "isBlockhashValid": SolanaLedger._rpc_is_blockhash_valid,
    "sendTransaction": SolanaLedger._rpc_send_transaction,
    "simulateTransaction": SolanaLedger._rpc_simulate_transaction,
}


def _param(params: list[Any], index: int) -> Any:
    if len(params) <= index:
        raise _invalid_params(f"missing parameter {index}")
    return params[index]


def _config(params: list[Any], index: int) -> JsonObj:
    if len(params) <= index or params[index] is None:
        return {}
    config = params[index]
    if not isinstance(config, dict):
        raise _invalid_params(f"parameter {index} must be a configuration object")
    return config


def _pubkey(value: Any) -> Pubkey:
    try:
        return Pubkey.from_string(str(value))
    except Exception as exc:
        raise RpcError(-32602, "Invalid param: Invalid") from exc


def _signature(value: Any) -> Signature:
    try:
        return Signature.from_string(str(value))
    except Exception as exc:
        raise RpcError(-32602, "Invalid param: Invalid") from exc


def _compiled_json(ix: CompiledInstruction | InnerIx, stack_height: int) -> JsonObj:
    return {
        "accounts": list(bytes(ix.accounts)),
        "data": b58encode(ix.data),
        "programIdIndex": ix.program_id_index,
        "stackHeight": stack_height,
    }


def _inner_json(inner: list[list[InnerIx]], keys: list[str], *, parsed: bool) -> list[JsonObj]:
    groups: list[JsonObj] = []
    for index, instructions in enumerate(inner):
        if not instructions:
            continue
        rendered = [
            parse_instruction(
                keys[ix.program_id_index],
                [keys[i] for i in ix.accounts],
                ix.data,
                ix.stack_height,
            )
            if parsed
            else _compiled_json(ix, ix.stack_height)
            for ix in instructions
        ]
        groups.append({"index": index, "instructions": rendered})
    return groups


def _memo_summary(entry: LedgerEntry) -> str | None:
    """``getSignaturesForAddress``'s memo: each memo as ``[<byte length>] <text>``, '; '-joined."""
    keys = entry.keys
    memos = [
        f"[{len(ix.data)}] {ix.data.decode('utf-8', 'replace')}"
        for ix in entry.tx.message.instructions
        if keys[ix.program_id_index] in _MEMO_PROGRAMS
    ]
    return "; ".join(memos) if memos else None


def parse_instruction(
    program_id: str,
    accounts: list[str],
    data: bytes,
    stack_height: int | None,
) -> JsonObj:
    """One instruction as ``jsonParsed`` shows it: parsed where a parser exists, else raw."""
    parsed: Any = None
    program = ""
    try:
        if program_id in _TOKEN_PROGRAMS:
            program = _TOKEN_PROGRAMS[program_id]
            parsed = _parse_token(accounts, data)
        elif program_id in _MEMO_PROGRAMS:
            program = "spl-memo"
            parsed = data.decode("utf-8")
        elif program_id == SYSTEM_PROGRAM:
            program = "system"
            parsed = _parse_system(accounts, data)
        elif program_id == ATA_PROGRAM:
            program = "spl-associated-token-account"
            parsed = _parse_ata(accounts, data)
    except (IndexError, ValueError):
        parsed = None
    if parsed is None:
        return {
            "accounts": accounts,
            "data": b58encode(data),
            "programId": program_id,
            "stackHeight": stack_height,
        }
    return {
        "parsed": parsed,
        "program": program,
        "programId": program_id,
        "stackHeight": stack_height,
    }


def _u64(data: bytes, offset: int) -> int:
    if len(data) < offset + 8:
        raise ValueError("truncated instruction data")
    return int.from_bytes(data[offset : offset + 8], "little")


def _authority(info: JsonObj, accounts: list[str], index: int, name: str) -> JsonObj:
    """Single-signer authority, or the multisig form the node prints for more accounts."""
    if len(accounts) > index + 1:
        info[f"multisig{name[0].upper()}{name[1:]}"] = accounts[index]
        info["signers"] = accounts[index + 1 :]
    else:
        info[name] = accounts[index]
    return info


def _parse_token(accounts: list[str], data: bytes) -> JsonObj | None:
    kind = data[0]
    if kind == 3:  # Transfer
        info: JsonObj = {
            "amount": str(_u64(data, 1)),
            "destination": accounts[1],
            "source": accounts[0],
        }
        return {"info": _authority(info, accounts, 2, "authority"), "type": "transfer"}
    if kind == 12:  # TransferChecked
        info = {
            "destination": accounts[2],
            "mint": accounts[1],
            "source": accounts[0],
            "tokenAmount": ui_token_amount(_u64(data, 1), data[9]),
        }
        return {"info": _authority(info, accounts, 3, "authority"), "type": "transferChecked"}
    if kind == 7:  # MintTo
        info = {"account": accounts[1], "amount": str(_u64(data, 1)), "mint": accounts[0]}
        return {"info": _authority(info, accounts, 2, "mintAuthority"), "type": "mintTo"}
    if kind == 14:  # MintToChecked
        info = {
            "account": accounts[1],
            "mint": accounts[0],
            "tokenAmount": ui_token_amount(_u64(data, 1), data[9]),
        }
        return {"info": _authority(info, accounts, 2, "mintAuthority"), "type": "mintToChecked"}
    if kind == 18:  # InitializeAccount3
        info = {"account": accounts[0], "mint": accounts[1], "owner": b58encode(data[1:33])}
        return {"info": info, "type": "initializeAccount3"}
    if kind == 21:  # GetAccountDataSize
        codes = [int.from_bytes(data[i : i + 2], "little") for i in range(1, len(data), 2)]
        if any(code not in _EXTENSION_TYPES for code in codes):
            return None
        names = [_EXTENSION_TYPES[code] for code in codes]
        return {
            "info": {"extensionTypes": names, "mint": accounts[0]},
            "type": "getAccountDataSize",
        }
    if kind == 22:  # InitializeImmutableOwner
        return {"info": {"account": accounts[0]}, "type": "initializeImmutableOwner"}
    return None


def _parse_system(accounts: list[str], data: bytes) -> JsonObj | None:
    kind = int.from_bytes(data[:4], "little")
    if kind == 0 and len(data) >= 52:  # CreateAccount
        info = {
            "lamports": _u64(data, 4),
            "newAccount": accounts[1],
            "owner": b58encode(data[20:52]),
            "source": accounts[0],
            "space": _u64(data, 12),
        }
        return {"info": info, "type": "createAccount"}
    if kind == 2:  # Transfer
        info = {"destination": accounts[1], "lamports": _u64(data, 4), "source": accounts[0]}
        return {"info": info, "type": "transfer"}
    return None


def _parse_ata(accounts: list[str], data: bytes) -> JsonObj | None:
    kinds = {b"": "create", b"\x00": "create", b"\x01": "createIdempotent"}
    kind = kinds.get(data)
    if kind is None:
        return None
    info = {
        "account": accounts[1],
        "mint": accounts[3],
        "source": accounts[0],
        "systemProgram": accounts[4],
        "tokenProgram": accounts[5],
        "wallet": accounts[2],
    }
    return {"info": info, "type": kind}


# Every answer closes its connection. x402's SVM signers open solana-py clients and never close
# them; with keep-alive their pooled sockets would be reclaimed by the garbage collector, and the
# resulting ResourceWarning fails tests (warnings are errors). Costs nothing on loopback.
_CLOSE = {"connection": "close"}


class SolanaRpcServer:
    """Serves a :class:`SolanaLedger` over HTTP JSON-RPC on 127.0.0.1 (uvicorn in a thread)."""

    def __init__(self, ledger: SolanaLedger, *, name: str = "solana-rpc") -> None:
        self.ledger = ledger
        self.name = name
        self._outage: OutageMode | None = None
        self._calls: list[str] = []
        self._errors: list[str] = []
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._port = 0
        self.app = Starlette(
            routes=[
                Route("/", self._rpc, methods=["POST"]),
                Route("/health", self._health, methods=["GET"]),
            ]
        )

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError(f"{self.name} is not running")
        return f"http://127.0.0.1:{self._port}"

    @property
    def calls(self) -> list[str]:
        """Method names received so far, in order (including ones answered with an outage)."""
        with self._lock:
            return list(self._calls)

    @property
    def internal_errors(self) -> list[str]:
        """Exceptions raised while answering: a bug in this server, never a node behaviour."""
        with self._lock:
            return list(self._errors)

    def set_outage(self, mode: OutageMode | None) -> None:
        """``http_503``: every request gets 503; ``rpc_error``: every call gets -32005."""
        self._outage = mode

    @contextmanager
    def outage(self, mode: OutageMode = "http_503") -> Iterator[None]:
        self.set_outage(mode)
        try:
            yield
        finally:
            self.set_outage(None)

    def start(self, *, timeout: float = 10.0) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._socket = sock
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=self.name, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.005)

    def stop(self, *, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"{self.name} did not stop")
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
        self._port = 0

    def __enter__(self) -> SolanaRpcServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _health(self, request: Request) -> Response:
        if self._outage is not None:
            return PlainTextResponse("unknown", status_code=503, headers=_CLOSE)
        return PlainTextResponse("ok", headers=_CLOSE)

    async def _rpc(self, request: Request) -> Response:
        if self._outage == "http_503":
            with self._lock:
                self._calls.append("<http 503>")
            return PlainTextResponse("Service Unavailable", status_code=503, headers=_CLOSE)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse(
                _error_response(None, RpcError(-32700, "Parse error")), headers=_CLOSE
            )
        if isinstance(body, list):
            if not body:
                invalid = _error_response(None, RpcError(-32600, "Invalid request"))
                return JSONResponse(invalid, headers=_CLOSE)
            return JSONResponse([self._answer(item) for item in body], headers=_CLOSE)
        return JSONResponse(self._answer(body), headers=_CLOSE)

    def _answer(self, request: Any) -> JsonObj:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return _error_response(None, RpcError(-32600, "Invalid request"))
        call_id = request.get("id")
        method = request["method"]
        with self._lock:
            self._calls.append(method)
        if self._outage == "rpc_error":
            return _error_response(call_id, _node_unhealthy())
        try:
            result = self.ledger.handle(method, request.get("params"))
        except RpcError as exc:
            return _error_response(call_id, exc)
        except Exception as exc:
            with self._lock:
                self._errors.append(f"{method}: {exc!r}")
            return _error_response(call_id, RpcError(-32603, "Internal error", repr(exc)))
        return {"jsonrpc": "2.0", "result": result, "id": call_id}


def _error_response(call_id: Any, error: RpcError) -> JsonObj:
    return {"jsonrpc": "2.0", "error": error.to_json(), "id": call_id}
