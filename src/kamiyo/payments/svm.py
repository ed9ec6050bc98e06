"""The exact scheme on Solana: x402's mechanism, plus the spec's checks it leaves out.

x402 (2.25) checks the instruction layout, the compute price cap, the mint, that the
destination is payTo's token account, the amount (at least) and memo rules, then simulates.
``scheme_exact_svm.md`` also asks that the fee payer appear in no instruction (else a payer
could make our fee payer's account part of its own transaction) and that the amount be exact;
and x402's confirmation counts a transaction that landed but failed as settled. Those three are
added here.
"""

import base64
import binascii
import struct
import time
from typing import Any

from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from solders.transaction_status import TransactionConfirmationStatus
from x402.mechanisms.svm import FacilitatorKeypairSigner
from x402.mechanisms.svm.constants import TOKEN_2022_PROGRAM_ADDRESS, TOKEN_PROGRAM_ADDRESS
from x402.mechanisms.svm.exact import ExactSvmFacilitatorScheme
from x402.schemas import PaymentPayload, PaymentRequirements, SettleResponse, VerifyResponse

FEE_PAYER_IN_INSTRUCTION = "invalid_exact_svm_fee_payer_in_instruction"
AMOUNT_NOT_EXACT = "invalid_exact_svm_payload_amount_not_exact"
UNDECODABLE = "invalid_exact_svm_payload_transaction_could_not_be_decoded"
TRANSFER_CHECKED = 12  # the SPL Token instruction tag
TOKEN_PROGRAMS = {
    Pubkey.from_string(TOKEN_PROGRAM_ADDRESS),
    Pubkey.from_string(TOKEN_2022_PROGRAM_ADDRESS),
}
CONFIRMED = (TransactionConfirmationStatus.Confirmed, TransactionConfirmationStatus.Finalized)


def spec_problem(payload: PaymentPayload, requirements: PaymentRequirements) -> str | None:
    """The reason this payment breaks a rule of the spec that x402 does not check, or None."""
    try:
        raw = base64.b64decode(str(payload.payload.get("transaction", "")), validate=True)
        message = VersionedTransaction.from_bytes(raw).message
    except (binascii.Error, ValueError):
        return UNDECODABLE
    keys = list(message.account_keys)
    fee_payer = str((requirements.extra or {}).get("feePayer", ""))
    for instruction in message.instructions:
        touched = [instruction.program_id_index, *bytes(instruction.accounts)]
        if any(index < len(keys) and str(keys[index]) == fee_payer for index in touched):
            return FEE_PAYER_IN_INSTRUCTION
        data = bytes(instruction.data)
        program = (
            keys[instruction.program_id_index] if instruction.program_id_index < len(keys) else None
        )
        if program in TOKEN_PROGRAMS and data[:1] == bytes([TRANSFER_CHECKED]) and len(data) >= 9:
            (amount,) = struct.unpack_from("<Q", data, 1)
            if amount != int(requirements.amount):
                return AMOUNT_NOT_EXACT
    return None


class CheckedExactSvm(ExactSvmFacilitatorScheme):
    def verify(
        self, payload: PaymentPayload, requirements: PaymentRequirements, context: Any = None
    ) -> VerifyResponse:
        problem = spec_problem(payload, requirements)
        if problem is not None:
            return VerifyResponse(is_valid=False, invalid_reason=problem)
        return super().verify(payload, requirements, context)

    def settle(
        self, payload: PaymentPayload, requirements: PaymentRequirements, context: Any = None
    ) -> SettleResponse:
        problem = spec_problem(payload, requirements)
        if problem is not None:
            return SettleResponse(
                success=False, error_reason=problem, transaction="", network=requirements.network
            )
        return super().settle(payload, requirements, context)


class ConfirmingKeypairSigner(FacilitatorKeypairSigner):
    """x402's fee-payer signer, whose confirmation also fails on a transaction that failed."""

    def confirm_transaction(self, signature: str, network: str, timeout_seconds: int = 30) -> None:
        client = self._get_client(network)
        deadline = time.monotonic() + timeout_seconds
        delay = 0.1
        while time.monotonic() < deadline:
            statuses = client.get_signature_statuses([Signature.from_string(signature)]).value
            status = statuses[0] if statuses else None
            if status is not None and status.err is not None:
                raise RuntimeError(f"Transaction failed: {status.err}")
            if status is not None and status.confirmation_status in CONFIRMED:
                return
            time.sleep(delay)  # in a worker thread: the event loop goes on meanwhile
            delay = min(delay * 2, 1.0)
        raise RuntimeError("Transaction confirmation timeout")
