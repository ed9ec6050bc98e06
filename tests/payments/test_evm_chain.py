"""The local chain is a faithful stand-in for USDC: x402's own facilitator verifies and settles
payments on it, and refuses replays, altered amounts, expired or misdirected authorizations."""

import time
from typing import Any
from urllib.error import URLError

import pytest
from eth_abi.abi import decode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak
from x402.mechanisms.evm import constants as x402_evm
from x402.mechanisms.evm.exact import ExactEvmFacilitatorScheme
from x402.mechanisms.evm.types import ExactEIP3009Payload
from x402.schemas import PaymentPayload, PaymentRequirements

from tests.payments.evm_chain import (
    CHAIN_ID,
    NETWORK,
    PAYER_USDC,
    TRANSFER_WITH_AUTHORIZATION_TYPES,
    USDC,
    EvmChain,
    RpcError,
    authorization_args,
    compiled_test_usdc,
    exact_requirements,
    local_facilitator,
    rpc,
    running_chain,
    sign_exact_payment,
    split_signature,
    tampered,
)

_AUTHORIZATION = "address,address,uint256,uint256,uint256,bytes32"
TRANSFER_VRS = f"transferWithAuthorization({_AUTHORIZATION},uint8,bytes32,bytes32)"
TRANSFER_BYTES = f"transferWithAuthorization({_AUTHORIZATION},bytes)"
# secp256k1's group order: (r, n - s) with the other parity is the same signer's twin signature.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@pytest.fixture
def facilitator(evm_chain: EvmChain) -> ExactEvmFacilitatorScheme:
    return local_facilitator(evm_chain)


def _signature_text(abi: dict[str, Any]) -> str:
    return f"{abi['name']}({','.join(item['type'] for item in abi['inputs'])})"


def _balances(chain: EvmChain, *addresses: str) -> list[int]:
    return [chain.balance_of(address) for address in addresses]


def _nonce(payment: PaymentPayload) -> str:
    return ExactEIP3009Payload.from_dict(payment.payload).authorization.nonce


def _signature(payment: PaymentPayload) -> str:
    signature = ExactEIP3009Payload.from_dict(payment.payload).signature
    assert signature is not None
    return signature


def _string(data: bytes) -> str:
    (text,) = decode(["string"], data)
    return str(text)


def test_the_contract_has_every_function_x402_calls() -> None:
    abi, _bytecode = compiled_test_usdc()
    ours = {_signature_text(item) for item in abi if item["type"] == "function"}
    x402_abis = [
        x402_evm.TRANSFER_WITH_AUTHORIZATION_VRS_ABI,
        x402_evm.TRANSFER_WITH_AUTHORIZATION_BYTES_ABI,
        x402_evm.AUTHORIZATION_STATE_ABI,
        x402_evm.BALANCE_OF_ABI,
        x402_evm.NAME_ABI,
        x402_evm.VERSION_ABI,
    ]
    called = {_signature_text(item) for entries in x402_abis for item in entries}
    assert called <= ours, called - ours
    assert {TRANSFER_VRS, TRANSFER_BYTES} <= called


def test_the_token_looks_like_usdc(evm_chain: EvmChain) -> None:
    assert _string(evm_chain.call("name()")) == "USD Coin"
    assert _string(evm_chain.call("version()")) == "2"
    assert decode(["uint8"], evm_chain.call("decimals()")) == (6,)
    assert evm_chain.network == NETWORK == f"eip155:{CHAIN_ID}"
    assert evm_chain.pay_to not in (evm_chain.relayer, evm_chain.deployer, evm_chain.payer.address)
    assert evm_chain.relayer != evm_chain.deployer


def test_the_domain_separator_is_eip712s_for_this_deployment(evm_chain: EvmChain) -> None:
    domain = {
        "name": "USD Coin",
        "version": "2",
        "chainId": evm_chain.chain_id,
        "verifyingContract": evm_chain.token,
    }
    message = {
        "from": evm_chain.payer.address,
        "to": evm_chain.pay_to,
        "value": 1,
        "validAfter": 0,
        "validBefore": 1,
        "nonce": bytes(32),
    }
    signable = encode_typed_data(domain, TRANSFER_WITH_AUTHORIZATION_TYPES, message)
    assert evm_chain.call("DOMAIN_SEPARATOR()") == signable.header


def test_only_the_owner_mints(evm_chain: EvmChain) -> None:
    with pytest.raises(RpcError, match="caller is not the owner"):
        evm_chain.call("mint(address,uint256)", evm_chain.relayer, 1, sender=evm_chain.relayer)
    before = evm_chain.balance_of(evm_chain.relayer)
    evm_chain.mint(evm_chain.relayer, 5)
    assert evm_chain.balance_of(evm_chain.relayer) == before + 5


def test_the_payment_is_what_the_x402_client_signs(evm_chain: EvmChain) -> None:
    requirements = exact_requirements(evm_chain, 10_000, max_timeout_seconds=120)
    payment = sign_exact_payment(evm_chain, requirements)

    assert payment.x402_version == 2
    assert payment.accepted == requirements
    auth = ExactEIP3009Payload.from_dict(payment.payload).authorization
    assert (auth.from_address, auth.to, auth.value) == (
        evm_chain.payer.address,
        evm_chain.pay_to,
        "10000",
    )
    assert auth.valid_after == "0"
    assert abs(int(auth.valid_before) - (int(time.time()) + 120)) <= 5
    # Independent of x402: eth-account recovers the payer from the EIP-712 message.
    domain = {
        "name": "USD Coin",
        "version": "2",
        "chainId": CHAIN_ID,
        "verifyingContract": evm_chain.token,
    }
    from_, to, value, valid_after, valid_before, nonce = authorization_args(payment)
    message = {
        "from": from_,
        "to": to,
        "value": value,
        "validAfter": valid_after,
        "validBefore": valid_before,
        "nonce": nonce,
    }
    signable = encode_typed_data(domain, TRANSFER_WITH_AUTHORIZATION_TYPES, message)
    assert Account.recover_message(signable, signature=_signature(payment)) == from_


def test_a_signed_payment_verifies_and_settles(
    evm_chain: EvmChain, facilitator: ExactEvmFacilitatorScheme
) -> None:
    chain = evm_chain
    amount = 25 * USDC // 100
    requirements = exact_requirements(chain, amount)
    payment = sign_exact_payment(chain, requirements)
    payer = chain.payer.address
    before = _balances(chain, payer, chain.pay_to)
    payer_eth = rpc(chain.rpc_url, "eth_getBalance", payer, "latest")

    verdict = facilitator.verify(payment, requirements)
    assert verdict.is_valid, verdict
    assert verdict.payer == payer
    assert not chain.authorization_used(payer, _nonce(payment))

    settled = facilitator.settle(payment, requirements)
    assert settled.success, settled
    assert settled.network == NETWORK
    assert settled.payer == payer
    assert _balances(chain, payer, chain.pay_to) == [before[0] - amount, before[1] + amount]
    assert chain.authorization_used(payer, _nonce(payment))
    # The relayer paid for gas, not the payer.
    assert rpc(chain.rpc_url, "eth_getBalance", payer, "latest") == payer_eth

    receipt = rpc(chain.rpc_url, "eth_getTransactionReceipt", settled.transaction)
    assert receipt["from"].lower() == chain.relayer.lower()
    assert receipt["to"].lower() == chain.token.lower()
    topics = [log["topics"][0] for log in receipt["logs"]]
    assert "0x" + keccak(text="AuthorizationUsed(address,bytes32)").hex() in topics
    assert "0x" + keccak(text="Transfer(address,address,uint256)").hex() in topics


def test_a_replayed_payment_is_refused(
    evm_chain: EvmChain, facilitator: ExactEvmFacilitatorScheme
) -> None:
    chain = evm_chain
    requirements = exact_requirements(chain, USDC)
    payment = sign_exact_payment(chain, requirements)
    assert facilitator.settle(payment, requirements).success
    after_first = _balances(chain, chain.payer.address, chain.pay_to)

    verdict = facilitator.verify(payment, requirements)
    assert not verdict.is_valid
    assert verdict.invalid_reason == x402_evm.ERR_NONCE_ALREADY_USED
    # settle() skips the simulation by default, so the replay reaches the chain and reverts.
    again = facilitator.settle(payment, requirements)
    assert not again.success
    assert again.error_reason == x402_evm.ERR_TRANSACTION_FAILED
    assert _balances(chain, chain.payer.address, chain.pay_to) == after_first


@pytest.mark.parametrize("how", ["signed-for-another-amount", "amount-edited-after-signing"])
def test_a_changed_amount_is_refused(
    evm_chain: EvmChain, facilitator: ExactEvmFacilitatorScheme, how: str
) -> None:
    chain = evm_chain
    requirements = exact_requirements(chain, 2 * USDC)
    if how == "signed-for-another-amount":
        payment = sign_exact_payment(chain, requirements, value=USDC)
        expected = x402_evm.ERR_AUTHORIZATION_VALUE_MISMATCH
    else:
        # Signed for 1 USDC, then claimed to be the 2 USDC the server asks for.
        payment = tampered(sign_exact_payment(chain, requirements, value=USDC), value=2 * USDC)
        expected = x402_evm.ERR_INVALID_SIGNATURE
    before = _balances(chain, chain.payer.address, chain.pay_to)

    verdict = facilitator.verify(payment, requirements)
    assert (verdict.is_valid, verdict.invalid_reason) == (False, expected)
    settled = facilitator.settle(payment, requirements)
    assert (settled.success, settled.error_reason) == (False, expected)
    assert _balances(chain, chain.payer.address, chain.pay_to) == before
    assert not chain.authorization_used(chain.payer.address, _nonce(payment))


@pytest.mark.parametrize("seconds_left", [-60, 3])
def test_an_expired_authorization_is_refused(
    evm_chain: EvmChain, facilitator: ExactEvmFacilitatorScheme, seconds_left: int
) -> None:
    # x402 wants at least 6 seconds left, so 3 seconds counts as expired too.
    requirements = exact_requirements(evm_chain, USDC)
    valid_before = int(time.time()) + seconds_left
    payment = sign_exact_payment(evm_chain, requirements, valid_before=valid_before)

    verdict = facilitator.verify(payment, requirements)
    assert (verdict.is_valid, verdict.invalid_reason) == (
        False,
        x402_evm.ERR_VALID_BEFORE_EXPIRED,
    )
    assert not facilitator.settle(payment, requirements).success


@pytest.mark.parametrize(
    "override",
    [
        {"asset": "0x" + "11" * 20},
        {"chain_id": 1},
        {"name": "USDC"},
        {"version": "1"},
        {"from_address": Account.create().address},
    ],
    ids=["other-token", "other-chain", "other-name", "other-version", "other-signer"],
)
def test_a_signature_over_another_domain_or_signer_is_refused(
    evm_chain: EvmChain, facilitator: ExactEvmFacilitatorScheme, override: dict[str, Any]
) -> None:
    requirements = exact_requirements(evm_chain, USDC)
    payment = sign_exact_payment(evm_chain, requirements, **override)
    verdict = facilitator.verify(payment, requirements)
    assert (verdict.is_valid, verdict.invalid_reason) == (False, x402_evm.ERR_INVALID_SIGNATURE)


def test_a_payment_to_someone_else_is_refused(
    evm_chain: EvmChain, facilitator: ExactEvmFacilitatorScheme
) -> None:
    requirements = exact_requirements(evm_chain, USDC)
    payment = sign_exact_payment(evm_chain, requirements, to=Account.create().address)
    verdict = facilitator.verify(payment, requirements)
    assert (verdict.is_valid, verdict.invalid_reason) == (False, x402_evm.ERR_RECIPIENT_MISMATCH)


def test_a_payer_without_funds_is_refused(
    evm_chain: EvmChain, facilitator: ExactEvmFacilitatorScheme
) -> None:
    broke = evm_chain.new_payer(usdc=USDC // 2)
    requirements = exact_requirements(evm_chain, USDC)
    payment = sign_exact_payment(evm_chain, requirements, payer=broke)
    verdict = facilitator.verify(payment, requirements)
    assert (verdict.is_valid, verdict.invalid_reason) == (
        False,
        x402_evm.ERR_INSUFFICIENT_BALANCE,
    )


def test_a_malleated_signature_is_refused(
    evm_chain: EvmChain, facilitator: ExactEvmFacilitatorScheme
) -> None:
    requirements = exact_requirements(evm_chain, USDC)
    payment = sign_exact_payment(evm_chain, requirements)
    v, r, s = split_signature(_signature(payment))
    # The twin signature recovers the same payer, so only the contract's low-s rule stops it.
    high_s = (SECP256K1_N - int.from_bytes(s, "big")).to_bytes(32, "big")
    twin = r + high_s + bytes([55 - v])
    with pytest.raises(RpcError, match="invalid signature 's' value"):
        evm_chain.call(TRANSFER_VRS, *authorization_args(payment), 55 - v, r, high_s)

    verdict = facilitator.verify(tampered(payment, signature=twin), requirements)
    assert (verdict.is_valid, verdict.invalid_reason) == (False, x402_evm.ERR_INVALID_SIGNATURE)


def test_the_contract_enforces_the_validity_window_itself(evm_chain: EvmChain) -> None:
    # eth_call runs at the latest block's timestamp, which lags the clock while anvil idles.
    rpc(evm_chain.rpc_url, "evm_mine")
    requirements = exact_requirements(evm_chain, USDC)
    now = int(time.time())
    late = sign_exact_payment(evm_chain, requirements, valid_before=now - 60)
    early = sign_exact_payment(evm_chain, requirements, valid_after=now + 3600)
    for payment, reason in [
        (late, "authorization is expired"),
        (early, "authorization is not yet valid"),
    ]:
        with pytest.raises(RpcError, match=reason):
            evm_chain.call(
                TRANSFER_VRS, *authorization_args(payment), *split_signature(_signature(payment))
            )


def test_the_bytes_overload_settles_a_65_byte_signature(evm_chain: EvmChain) -> None:
    chain = evm_chain
    payer = chain.new_payer()
    requirements = exact_requirements(chain, 3 * USDC)
    payment = sign_exact_payment(chain, requirements, payer=payer)
    args = authorization_args(payment)
    signature = bytes.fromhex(_signature(payment).removeprefix("0x"))
    before = chain.balance_of(chain.pay_to)

    with pytest.raises(RpcError, match="invalid signature length"):
        chain.call(TRANSFER_BYTES, *args, signature[:64], sender=chain.relayer)
    chain.send(TRANSFER_BYTES, *args, signature, sender=chain.relayer)

    assert chain.balance_of(payer.address) == PAYER_USDC - 3 * USDC
    assert chain.balance_of(chain.pay_to) == before + 3 * USDC
    assert chain.authorization_used(payer.address, args[5])
    with pytest.raises(RpcError, match="authorization is used"):
        chain.call(TRANSFER_BYTES, *args, signature, sender=chain.relayer)


def test_the_chain_stops_when_its_context_exits(tmp_path: Any) -> None:
    with running_chain(tmp_path) as chain:
        assert chain.balance_of(chain.payer.address) == PAYER_USDC
        url = chain.rpc_url
    with pytest.raises(URLError, match="Connection refused"):  # anvil is gone
        rpc(url, "eth_chainId", timeout=2.0)
    assert "anvil.log" in {path.name for path in tmp_path.iterdir()}


def test_requirements_name_the_deployed_token(evm_chain: EvmChain) -> None:
    requirements = exact_requirements(evm_chain, 7, pay_to=evm_chain.relayer)
    assert requirements == PaymentRequirements(
        scheme="exact",
        network=NETWORK,
        asset=evm_chain.token,
        amount="7",
        pay_to=evm_chain.relayer,
        max_timeout_seconds=300,
        extra={"name": "USD Coin", "version": "2"},
    )
