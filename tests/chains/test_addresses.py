"""Address families and the one stored form of an address, with and without a chain."""

import pytest

from kamiyo.chains import (
    AddressFamily,
    address_family,
    checked_address,
    evm_checksum_matches,
    normalize_address,
)

EVM = "0x2419432344B0B892E592B2601B98EAE702BA360E"
SOLANA = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
SYSTEM_PROGRAM = "11111111111111111111111111111111"  # 32 zero bytes: leading 1s are zero bytes
# Real addresses named in shared/data/notable_incidents.csv.
BITCOIN_P2PKH = "1A4PXZE5j8v7UuapYckq6fSegmY5i8uUyq"
BITCOIN_BECH32 = "bc1qt64756h9aylujm9tpk826zndegpxtngmr6eqad"
TRON = "TKK6d1YALy8HCSoCSWWd1ZJhyC9NPPx4wa"


@pytest.mark.parametrize(
    ("address", "family", "stored"),
    [
        (EVM, AddressFamily.EVM, EVM.lower()),
        (f"  {EVM}\n", AddressFamily.EVM, EVM.lower()),
        (SOLANA, AddressFamily.SOLANA, SOLANA),
        (SYSTEM_PROGRAM, AddressFamily.SOLANA, SYSTEM_PROGRAM),
        (BITCOIN_P2PKH, AddressFamily.BITCOIN, BITCOIN_P2PKH),
        (BITCOIN_BECH32, AddressFamily.BITCOIN, BITCOIN_BECH32),
        (BITCOIN_BECH32.upper(), AddressFamily.BITCOIN, BITCOIN_BECH32),
        (TRON, AddressFamily.TRON, TRON),
    ],
)
def test_families_and_stored_forms(address: str, family: AddressFamily, stored: str) -> None:
    assert address_family(address) is family
    assert normalize_address(address) == stored


@pytest.mark.parametrize(
    "bad",
    [
        "0x123",
        "0x" + "g" * 40,
        "",
        "not an address at all",
        "0" * 100,
        SOLANA[:-1] + "0",  # 0 is not base58
        TRON[:-1] + ("b" if TRON[-1] != "b" else "c"),  # a base58check typo
        BITCOIN_BECH32[:-1] + "q",  # a bech32 checksum typo
        "bc1Qt64756h9aylujm9tpk826zndegpxtngmr6eqad",  # mixed case bech32
    ],
)
def test_what_is_not_an_address_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not an address"):
        address_family(bad)
    with pytest.raises(ValueError, match="not an address"):
        normalize_address(bad)


@pytest.mark.parametrize(
    ("address", "chain", "stored"),
    [
        (EVM, "ethereum", EVM.lower()),
        (EVM, "bnb", EVM.lower()),
        (EVM, "base-sepolia", EVM.lower()),
        (SOLANA, "sol", SOLANA),
        (BITCOIN_P2PKH, "bitcoin", BITCOIN_P2PKH),
        (TRON, "tron", TRON),
    ],
)
def test_an_address_on_its_chain(address: str, chain: str, stored: str) -> None:
    assert normalize_address(address, chain) == stored


@pytest.mark.parametrize(
    ("address", "chain", "message"),
    [
        (EVM, "solana", "this is an EVM address, and solana uses Solana addresses"),
        (SOLANA, "ethereum", "this is a Solana address, and ethereum uses EVM addresses"),
        (TRON, "bsc", "this is a Tron address"),
        (BITCOIN_P2PKH, "solana", "this is a Bitcoin address"),
        ("0x123", "ethereum", "not an address on ethereum"),
    ],
)
def test_an_address_of_another_family_is_refused(address: str, chain: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalize_address(address, chain)


def test_a_chain_whose_addresses_are_not_read_yet_says_so() -> None:
    with pytest.raises(ValueError, match="does not read XRP Ledger addresses yet"):
        normalize_address("r9do2Ar8k64NxgLD6oJoywaxQhUS57Ck8k", "xrp")


def test_an_unknown_chain_is_refused_before_the_address_is_read() -> None:
    with pytest.raises(ValueError, match="not a chain name KAMIYO knows"):
        normalize_address(EVM, "foochain")


# EIP-55's own examples (https://eips.ethereum.org/EIPS/eip-55), and one of them with a single
# letter's case flipped.
EIP55_EXAMPLES = (
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
)


@pytest.mark.parametrize("address", EIP55_EXAMPLES)
def test_a_right_checksum_is_accepted_and_stored_in_lower_case(address: str) -> None:
    assert evm_checksum_matches(address)
    assert checked_address(address) == address.lower()
    assert checked_address(address, "bsc") == address.lower()


@pytest.mark.parametrize("address", [EVM, EVM.lower(), "0x" + EVM[2:].lower()])
def test_an_address_without_a_checksum_is_accepted(address: str) -> None:
    assert checked_address(address) == EVM.lower()


def test_a_wrong_checksum_is_refused_by_name() -> None:
    flipped = EIP55_EXAMPLES[0][:-1] + "D"  # ...BeAed -> ...BeAeD
    assert not evm_checksum_matches(flipped)
    with pytest.raises(ValueError, match="fails its EIP-55 checksum"):
        checked_address(flipped)
    # Source data keeps its fact whatever its capitals.
    assert normalize_address(flipped) == flipped.lower()


def test_checked_addresses_keep_the_family_rules() -> None:
    assert checked_address(SOLANA, "solana") == SOLANA
    assert checked_address(TRON) == TRON
    with pytest.raises(ValueError, match="this is an EVM address, and solana uses Solana"):
        checked_address(EIP55_EXAMPLES[0], "solana")
    with pytest.raises(ValueError, match="not an address"):
        checked_address("0x123")
