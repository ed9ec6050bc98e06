"""A local EVM chain for payment tests: anvil running TestUSDC, an EIP-3009 USDC look-alike.

anvil and solc-js live in ``tests/node`` (``make test`` installs them from the lock file with
``npm ci``). Without them the fixture skips with the reason, except under CI (``CI`` set), where
that is an error.

Payments are signed by x402's own client (``sign_exact_payment``), so tests see exactly what a
real x402 client sends; tampered payments are signed with eth-account over the same EIP-712 types.
"""

import dataclasses
import functools
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from eth_abi.abi import decode, encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from x402 import x402ClientSync
from x402.mechanisms.evm import FacilitatorWeb3Signer
from x402.mechanisms.evm.exact import ExactEvmClientScheme, ExactEvmFacilitatorScheme
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.mechanisms.evm.types import ExactEIP3009Authorization, ExactEIP3009Payload
from x402.schemas import PaymentPayload, PaymentRequired, PaymentRequirements

from tests.mcpserver.conftest import free_port
from tests.mcpserver.test_node_clients import NODE_DIR, node_binary

CHAIN_ID = 31337
NETWORK = f"eip155:{CHAIN_ID}"
USDC = 10**6
"""One USDC in atomic units (6 decimals)."""
PAYER_USDC = 1_000 * USDC
TOKEN_NAME = "USD Coin"
TOKEN_VERSION = "2"

CONTRACT = Path(__file__).resolve().parent / "contracts" / "TestUSDC.sol"
COMPILER = NODE_DIR / "compile_contract.mjs"

# anvil's default dev accounts (mnemonic "test test ... junk"): well known, unlocked in anvil and
# funded with 10,000 ETH at genesis. Index 0 deploys and mints; index 1 relays settlements, so
# the deployer's nonces never race the facilitator's.
ANVIL_DEV_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
)

STARTUP_TIMEOUT = 30.0
RECEIPT_TIMEOUT = 10.0

TRANSFER_WITH_AUTHORIZATION_TYPES = {
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ]
}
_AUTHORIZATION_FIELDS = frozenset(
    {"from_address", "to", "value", "valid_after", "valid_before", "nonce"}
)
_DOMAIN_FIELDS = frozenset({"asset", "chain_id", "name", "version"})


class RpcError(RuntimeError):
    """A JSON-RPC call answered with an error (a revert reason is in the message)."""


def rpc(url: str, method: str, *params: Any, timeout: float = 10.0) -> Any:
    """One JSON-RPC call; returns ``result`` or raises RpcError."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.load(response)
    if "error" in reply:
        raise RpcError(f"{method}: {reply['error']}")
    return reply["result"]


def selector(signature: str) -> bytes:
    """The 4-byte function selector of e.g. ``balanceOf(address)``."""
    return keccak(text=signature)[:4]


def calldata(signature: str, *args: Any) -> str:
    """ABI-encoded call of ``signature`` (e.g. ``mint(address,uint256)``) with ``args``."""
    types = signature[signature.index("(") + 1 : -1]
    encoded = encode(types.split(","), list(args)) if types else b""
    return "0x" + (selector(signature) + encoded).hex()


def _address(key: str) -> str:
    account: LocalAccount = Account.from_key(key)
    return account.address


def _hex_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else bytes.fromhex(value.removeprefix("0x"))


@dataclass(frozen=True)
class EvmChain:
    """A running anvil with TestUSDC deployed at ``token`` and ``payer`` holding USDC."""

    rpc_url: str
    chain_id: int
    network: str
    token: str
    token_name: str
    token_version: str
    payer: LocalAccount
    pay_to: str
    relayer_key: str
    deployer_key: str

    @property
    def relayer(self) -> str:
        return _address(self.relayer_key)

    @property
    def deployer(self) -> str:
        return _address(self.deployer_key)

    def call(self, signature: str, *args: Any, sender: str | None = None) -> bytes:
        """eth_call a TestUSDC function; raises RpcError with the revert reason."""
        tx = {"to": self.token, "data": calldata(signature, *args)}
        if sender is not None:
            tx["from"] = sender
        return _hex_bytes(rpc(self.rpc_url, "eth_call", tx, "latest"))

    def send(self, signature: str, *args: Any, sender: str | None = None) -> dict[str, Any]:
        """Mine a TestUSDC transaction from an unlocked dev account; returns the receipt.

        A transaction that would revert is refused by anvil's gas estimate: RpcError.
        """
        tx = {"from": sender or self.deployer, "to": self.token, "data": calldata(signature, *args)}
        receipt = _mined(self.rpc_url, rpc(self.rpc_url, "eth_sendTransaction", tx))
        if int(receipt["status"], 16) != 1:
            raise RpcError(f"{signature} reverted: {receipt}")
        return receipt

    def balance_of(self, address: str) -> int:
        (balance,) = decode(["uint256"], self.call("balanceOf(address)", address))
        return int(balance)

    def mint(self, address: str, amount: int) -> None:
        self.send("mint(address,uint256)", address, amount)

    def authorization_used(self, authorizer: str, nonce: str | bytes) -> bool:
        data = self.call("authorizationState(address,bytes32)", authorizer, _hex_bytes(nonce))
        (used,) = decode(["bool"], data)
        return bool(used)

    def new_payer(self, usdc: int = PAYER_USDC) -> LocalAccount:
        """A fresh account holding ``usdc`` atomic units, for tests that need clean balances."""
        account: LocalAccount = Account.create()
        if usdc:
            self.mint(account.address, usdc)
        return account


def _mined(url: str, tx_hash: str) -> dict[str, Any]:
    # anvil mines on submission, but the receipt is still fetched by polling so a node that
    # mines a moment later does not fail the test.
    deadline = time.monotonic() + RECEIPT_TIMEOUT
    while (receipt := rpc(url, "eth_getTransactionReceipt", tx_hash)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no receipt for {tx_hash} after {RECEIPT_TIMEOUT}s")
        time.sleep(0.01)
    result: dict[str, Any] = receipt
    return result


def _missing(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def anvil_binary() -> Path:
    """The anvil executable that npm installed for this platform."""
    machine = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
    arch = machine.get(platform.machine().lower(), platform.machine().lower())
    name = "anvil.exe" if sys.platform == "win32" else "anvil"
    # The lock file pins the linux-x64 build (an optional dependency, as for node itself):
    # @foundry-rs/anvil's other platform packages are not on the registry, so npm ci cannot
    # lock the wrapper package. Elsewhere, install anvil's binary for the platform there.
    binary = NODE_DIR / "node_modules" / "@foundry-rs" / f"anvil-{sys.platform}-{arch}" / "bin"
    if (binary / name).exists():
        return binary / name
    _missing(f"anvil for {sys.platform}-{arch} is not installed: run `npm ci --prefix {NODE_DIR}`")


@functools.cache
def compiled_test_usdc() -> tuple[list[dict[str, Any]], str]:
    """TestUSDC's ABI and creation bytecode, compiled once per process with solc-js."""
    node = node_binary()
    if not (NODE_DIR / "node_modules" / "solc").exists():
        _missing(f"solc-js is not installed: run `npm ci --prefix {NODE_DIR}`")
    proc = subprocess.run(
        [node, str(COMPILER), str(CONTRACT)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=NODE_DIR,
        check=False,
    )
    assert proc.returncode == 0, f"TestUSDC does not compile:\n{proc.stderr}"
    artifact = json.loads(proc.stdout)
    return artifact["abi"], artifact["bytecode"]


def _stop(proc: "subprocess.Popen[bytes]") -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _answers(url: str, proc: "subprocess.Popen[bytes]") -> bool:
    """Poll until anvil answers eth_chainId (True) or exits (False)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        try:
            rpc(url, "eth_chainId", timeout=1.0)
            return True
        except OSError:  # refused or reset while anvil starts; URLError is an OSError
            pass
        # Waiting on the process doubles as the pause between polls and notices an early exit.
        try:
            proc.wait(timeout=0.02)
            return False
        except subprocess.TimeoutExpired:
            pass
    _stop(proc)
    pytest.fail(f"anvil did not answer on {url} within {STARTUP_TIMEOUT}s")


@contextmanager
def _anvil(log: Path) -> Iterator[str]:
    binary = anvil_binary()
    # The free port is only reserved until anvil binds it; another process can take it in
    # between, so a quick exit is retried on a new port.
    for _attempt in range(3):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [
                    str(binary),
                    *("--host", "127.0.0.1", "--port", str(port)),
                    *("--chain-id", str(CHAIN_ID), "--silent"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if _answers(url, proc):
            break
    else:
        pytest.fail(f"anvil exited at startup:\n{log.read_text(errors='replace')[-2000:]}")
    try:
        yield url
    finally:
        _stop(proc)


def _deploy(url: str, deployer: str, bytecode: str) -> str:
    tx_hash = rpc(url, "eth_sendTransaction", {"from": deployer, "data": bytecode})
    receipt = _mined(url, tx_hash)
    assert int(receipt["status"], 16) == 1, f"TestUSDC deployment failed: {receipt}"
    token = to_checksum_address(receipt["contractAddress"])
    assert rpc(url, "eth_getCode", token, "latest") not in ("0x", "0x0"), "no code at TestUSDC"
    return token


@contextmanager
def running_chain(log_dir: Path) -> Iterator[EvmChain]:
    """Start anvil, deploy TestUSDC and fund a payer; stop anvil on exit."""
    _abi, bytecode = compiled_test_usdc()
    deployer_key, relayer_key = ANVIL_DEV_KEYS
    with _anvil(log_dir / "anvil.log") as url:
        chain_id = int(rpc(url, "eth_chainId"), 16)
        assert chain_id == CHAIN_ID
        dev_accounts = [to_checksum_address(a) for a in rpc(url, "eth_accounts")]
        keyed = [_address(key) for key in ANVIL_DEV_KEYS]
        assert dev_accounts[:2] == keyed, f"anvil's dev accounts changed: {dev_accounts[:2]}"

        payer: LocalAccount = Account.create()
        # The payer only signs; the relayer pays gas. ETH lets a test send from it anyway.
        rpc(url, "anvil_setBalance", payer.address, hex(10**19))
        chain = EvmChain(
            rpc_url=url,
            chain_id=chain_id,
            network=NETWORK,
            token=_deploy(url, keyed[0], bytecode),
            token_name=TOKEN_NAME,
            token_version=TOKEN_VERSION,
            payer=payer,
            pay_to=Account.create().address,
            relayer_key=relayer_key,
            deployer_key=deployer_key,
        )
        chain.mint(payer.address, PAYER_USDC)
        yield chain


@pytest.fixture(scope="session")
def evm_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvmChain]:
    """anvil with TestUSDC deployed and ``payer`` holding 1,000 USDC, shared by the session.

    Balances carry over between tests: compare before and after, or use ``new_payer()``.
    """
    with running_chain(tmp_path_factory.mktemp("anvil")) as chain:
        yield chain


def exact_requirements(
    chain: EvmChain,
    amount: int,
    *,
    pay_to: str | None = None,
    max_timeout_seconds: int = 300,
) -> PaymentRequirements:
    """x402 v2 ``exact`` requirements for ``amount`` atomic TestUSDC on ``chain``."""
    return PaymentRequirements(
        scheme="exact",
        network=chain.network,
        asset=chain.token,
        amount=str(amount),
        pay_to=pay_to or chain.pay_to,
        max_timeout_seconds=max_timeout_seconds,
        extra={"name": chain.token_name, "version": chain.token_version},
    )


def local_facilitator(
    chain: EvmChain, *, confirmation_timeout: float = 30.0
) -> ExactEvmFacilitatorScheme:
    """x402's in-process exact EVM facilitator, settling with the relayer account."""
    signer = FacilitatorWeb3Signer(
        private_key=chain.relayer_key,
        rpc_url=chain.rpc_url,
        confirmation_timeout_seconds=confirmation_timeout,
    )
    return ExactEvmFacilitatorScheme(signer)


def sign_exact_payment(
    chain: EvmChain,
    requirements: PaymentRequirements,
    payer: LocalAccount | None = None,
    **overrides: object,
) -> PaymentPayload:
    """The v2 payment an x402 client sends for ``requirements``, signed by ``payer``.

    ``overrides`` replace what the payer signs: authorization fields (``from_address``, ``to``,
    ``value``, ``valid_after``, ``valid_before``, ``nonce``) and EIP-712 domain fields (``asset``,
    ``chain_id``, ``name``, ``version``). Such payments are re-signed with eth-account, so their
    signature is valid for what they say; ``tampered()`` changes a payment after signing.
    """
    account = payer or chain.payer
    client = x402ClientSync()
    client.register("eip155:*", ExactEvmClientScheme(EthAccountSigner(account)))
    # x402 clients only pay for assets they know (USDC on public chains) unless told otherwise,
    # as a wallet owner would for any other token.
    client.set_spend_controls(
        {"allowed_assets": [{"network": requirements.network, "asset": requirements.asset}]}
    )
    payment = client.create_payment_payload(PaymentRequired(accepts=[requirements]))
    assert isinstance(payment, PaymentPayload)
    if not overrides:
        return payment

    unknown = set(overrides) - _AUTHORIZATION_FIELDS - _DOMAIN_FIELDS
    if unknown:
        raise TypeError(f"unknown overrides: {sorted(unknown)}")
    signed = ExactEIP3009Payload.from_dict(payment.payload)
    authorization = _replace_authorization(
        signed.authorization,
        {k: v for k, v in overrides.items() if k in _AUTHORIZATION_FIELDS},
    )
    domain = {
        "name": overrides.get("name", requirements.extra["name"]),
        "version": overrides.get("version", requirements.extra["version"]),
        "chainId": int(str(overrides.get("chain_id", chain.chain_id))),
        "verifyingContract": to_checksum_address(str(overrides.get("asset", requirements.asset))),
    }
    message = {
        "from": to_checksum_address(authorization.from_address),
        "to": to_checksum_address(authorization.to),
        "value": int(authorization.value),
        "validAfter": int(authorization.valid_after),
        "validBefore": int(authorization.valid_before),
        "nonce": _hex_bytes(authorization.nonce),
    }
    signature = account.sign_typed_data(
        domain_data=domain,
        message_types=TRANSFER_WITH_AUTHORIZATION_TYPES,
        message_data=message,
    ).signature
    resigned = ExactEIP3009Payload(authorization=authorization, signature="0x" + signature.hex())
    return payment.model_copy(update={"payload": resigned.to_dict()})


def tampered(payment: PaymentPayload, **changes: object) -> PaymentPayload:
    """``payment`` with authorization fields (or ``signature``) changed after it was signed."""
    unknown = set(changes) - _AUTHORIZATION_FIELDS - {"signature"}
    if unknown:
        raise TypeError(f"unknown fields: {sorted(unknown)}")
    signed = ExactEIP3009Payload.from_dict(payment.payload)
    authorization = _replace_authorization(
        signed.authorization, {k: v for k, v in changes.items() if k != "signature"}
    )
    signature = changes.get("signature", signed.signature)
    if isinstance(signature, bytes):
        signature = "0x" + signature.hex()
    altered = ExactEIP3009Payload(
        authorization=authorization, signature=None if signature is None else str(signature)
    )
    return payment.model_copy(update={"payload": altered.to_dict()})


def _replace_authorization(
    authorization: ExactEIP3009Authorization, changes: dict[str, object]
) -> ExactEIP3009Authorization:
    # The payload carries every field as a string: numbers in decimal, the nonce in 0x-hex.
    as_text = {
        key: "0x" + value.hex() if isinstance(value, bytes) else str(value)
        for key, value in changes.items()
    }
    return dataclasses.replace(authorization, **as_text)


def split_signature(signature: str | bytes) -> tuple[int, bytes, bytes]:
    """(v, r, s) of a 65-byte r || s || v signature, with v as 27 or 28."""
    raw = _hex_bytes(signature)
    assert len(raw) == 65, f"not a 65-byte signature: {len(raw)} bytes"
    v = raw[64] + 27 if raw[64] < 27 else raw[64]
    return v, raw[:32], raw[32:64]


def authorization_args(payment: PaymentPayload) -> Sequence[Any]:
    """(from, to, value, validAfter, validBefore, nonce) of ``payment`` as contract arguments."""
    auth = ExactEIP3009Payload.from_dict(payment.payload).authorization
    return (
        to_checksum_address(auth.from_address),
        to_checksum_address(auth.to),
        int(auth.value),
        int(auth.valid_after),
        int(auth.valid_before),
        _hex_bytes(auth.nonce),
    )
