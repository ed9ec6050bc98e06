"""Addresses: which family an address belongs to, and the one form the store keeps it in.

EVM addresses are kept in lower case (the mixed-case checksum is display only); Solana, Tron and
Bitcoin base58 addresses are case-sensitive and kept as given; bech32 addresses in lower case.
What a person types is read by :func:`checked_address`, which also verifies the EIP-55 checksum
that a mixed-case EVM address carries (source data is read by :func:`normalize_address`, which
does not: a source's odd capitals are no reason to drop its fact).
A Solana address is a base58 ed25519 key (32 bytes); Tron and legacy Bitcoin addresses are
base58check (21 bytes + checksum), which is how the three are told apart. Other families have no
reader yet: an address on such a chain is refused with a sentence saying so.
"""

import hashlib
import re

from kamiyo.chains.registry import AddressFamily, get_chain

_EVM = re.compile(r"^0x[0-9a-fA-F]{40}$")
_BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{25,44}$")
_BECH32 = re.compile(r"^(bc|ltc|tb)1[02-9ac-hj-np-z]{8,87}$")
_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
TRON_VERSION = 0x41
READABLE = (AddressFamily.EVM, AddressFamily.SOLANA, AddressFamily.BITCOIN, AddressFamily.TRON)
_LABEL = {
    AddressFamily.EVM: "an EVM",
    AddressFamily.SOLANA: "a Solana",
    AddressFamily.BITCOIN: "a Bitcoin",
    AddressFamily.TRON: "a Tron",
}
_EXPECTED = (
    "expected 0x followed by 40 hex digits (EVM), a base58 public key (Solana), "
    "a Bitcoin address or a Tron address"
)


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        number = number * 58 + _BASE58_ALPHABET.index(char)
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + body


def _base58check_payload(text: str) -> bytes | None:
    raw = _b58decode(text)
    payload, checksum = raw[:-4], raw[-4:]
    if len(payload) != 21 or hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != (
        checksum
    ):
        return None
    return payload


def _bech32_valid(text: str) -> bool:
    """BIP-173/350 checksum (bech32 for segwit v0, bech32m for later versions)."""
    hrp, _, data_part = text.rpartition("1")
    data = [_BECH32_CHARSET.index(c) for c in data_part]
    check = 1
    for value in [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + data:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for bit, generator in enumerate(
            (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
        ):
            check ^= generator if (top >> bit) & 1 else 0
    version = data[0] if data else -1
    return check == (1 if version == 0 else 0x2BC830A3)


def _read(address: str) -> tuple[AddressFamily, str] | None:
    if _EVM.fullmatch(address):
        return AddressFamily.EVM, address.lower()
    if _BASE58.fullmatch(address):
        if len(address) >= 32 and len(_b58decode(address)) == 32:
            return AddressFamily.SOLANA, address
        payload = _base58check_payload(address)
        if payload is not None:
            family = AddressFamily.TRON if payload[0] == TRON_VERSION else AddressFamily.BITCOIN
            return family, address
    lower = address.lower()
    if (address in (lower, address.upper())) and _BECH32.fullmatch(lower) and _bech32_valid(lower):
        return AddressFamily.BITCOIN, lower
    return None


def address_family(address: str) -> AddressFamily:
    """The family an address belongs to; ValueError for a string that is no address KAMIYO reads."""
    read = _read(address.strip())
    if read is None:
        raise ValueError(f"not an address: {_EXPECTED}")
    return read[0]


def normalize_address(address: str, chain: str | None = None) -> str:
    """The address in the form the store keeps; with ``chain``, it must be of that chain's family.

    ValueError for a string that is not an address, for an address of another family than the
    chain's (an EVM address on solana), and for chains whose addresses KAMIYO cannot read yet.
    """
    read = _read(address.strip())
    if chain is None:
        if read is None:
            raise ValueError(f"not an address: {_EXPECTED}")
        return read[1]
    known = get_chain(chain)
    if known.family not in READABLE:
        raise ValueError(
            f"KAMIYO does not read {known.name} addresses yet "
            "(it reads EVM, Solana, Bitcoin and Tron addresses)"
        )
    if read is None:
        raise ValueError(f"not an address on {known.slug}: {_EXPECTED}")
    family, normal = read
    if family is not known.family:
        raise ValueError(
            f"not an address on {known.slug}: this is {_LABEL[family]} address, "
            f"and {known.slug} uses {_LABEL[known.family].split()[1]} addresses"
        )
    return normal


def evm_checksum_matches(address: str) -> bool:
    """Whether a ``0x`` + 40 hex digits address carries no checksum (all lower or all upper
    case) or a right EIP-55 one (the case of each letter set by the Keccak-256 of the rest)."""
    digits = address[2:]
    if digits in (digits.lower(), digits.upper()):
        return True
    # eth_utils is a dependency already (eth_account's); imported here, since it takes a
    # noticeable time and most commands never meet a mixed-case address.
    from eth_utils.address import is_checksum_address

    return bool(is_checksum_address(address))


def checked_address(address: str, chain: str | None = None) -> str:
    """Like :func:`normalize_address`, for an address a person gave: a mixed-case EVM address
    must also carry a right EIP-55 checksum (a wrong one means a mistyped character)."""
    normal = normalize_address(address, chain)
    given = address.strip()
    if _EVM.fullmatch(given) and not evm_checksum_matches(given):
        raise ValueError(
            "the address fails its EIP-55 checksum: its mixed capitals do not match its digits, "
            "so a character is probably mistyped; copy the address again (an all-lower-case "
            "address carries no checksum and is accepted as it is)"
        )
    return normal


_EVM_TX = re.compile(r"^0x[0-9a-fA-F]{64}$")
_SOLANA_SIGNATURE = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{64,90}$")
SOLANA_SIGNATURE_BYTES = 64


def normalize_tx_hash(value: str) -> str:
    """An EVM transaction hash in lower case, or a Solana signature (64 bytes in base58) as
    is; ValueError naming both forms for anything else."""
    candidate = value.strip()
    if _EVM_TX.fullmatch(candidate):
        return candidate.lower()
    if _SOLANA_SIGNATURE.fullmatch(candidate) and (
        len(_b58decode(candidate)) == SOLANA_SIGNATURE_BYTES
    ):
        return candidate
    raise ValueError(
        "not a transaction hash: expected 0x followed by 64 hex digits (EVM) "
        "or a base58 transaction signature (Solana, 64 bytes)"
    )
