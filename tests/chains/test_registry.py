"""The chain vocabulary: every chain in the data is known, aliases resolve, unknown is refused."""

import csv
import gzip
import json
from pathlib import Path

import pytest

from kamiyo.chains import (
    BASE,
    BASE_SEPOLIA,
    CHAINS,
    SOLANA,
    SOLANA_DEVNET,
    USDC,
    AcceptedNetwork,
    AddressFamily,
    chain_by_caip2,
    family_of,
    find_chain,
    get_chain,
    known_slugs,
    normalize_chain,
)

REPO = Path(__file__).resolve().parents[2]
DEFIHACKLABS = REPO / "data" / "defihacklabs"
BUNDLE = REPO / "src" / "kamiyo" / "intel" / "data" / "bundle.json.gz"
# The chains of shared/data/notable_incidents.csv (its README's "Rows per chain"), which the next
# source ingests. Listed here, not read from shared/: the tests never depend on it.
NOTABLE_CHAINS = [
    "ethereum",
    "bitcoin",
    "bsc",
    "solana",
    "polygon",
    "arbitrum",
    "tron",
    "xrp",
    "avalanche",
    "base",
    "optimism",
    "bitcoin-cash",
    "fantom",
    "litecoin",
    "cosmos",
    "sui",
    "cardano",
    "thorchain",
    "polkadot",
    "ethereum-classic",
    "zcash",
    "dogecoin",
    "eos",
    "stellar",
    "terra-classic",
    "algorand",
    "ronin",
    "metis",
    "osmosis",
    "near",
    "heco",
    "stacks",
    "zksync",
    "nem",
    "nano",
    "monacoin",
    "iota",
    "multiversx",
    "harmony",
    "moonbeam",
    "evmos",
    "milkomeda",
    "acala",
    "mixin",
    "icon",
    "wemix",
    "okexchain",
    "moonriver",
    "blast",
    "bittensor",
    "linea",
    "terra",
    "aptos",
    "hedera",
    "starknet",
    "nervos",
    "icp",
    "mantle",
    "sonic",
    "flow",
    "sagaevm",
    "iotex",
    "unichain",
    "ton",
    "tac",
    "verus",
    "syscoin",
    "secret",
]


def _bundled_chains() -> set[str]:
    seen: set[str] = set()
    with (DEFIHACKLABS / "defihacklabs_incidents.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            seen.update(row["chains"].split())
    with (DEFIHACKLABS / "defihacklabs_addresses.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            seen.update(row["chain"].split())
    with gzip.open(BUNDLE, "rt", encoding="utf-8") as handle:
        reports = [r for source in json.load(handle)["sources"] for r in source["reports"]]
        for incident in reports:
            seen.update(incident.get("chains", []))
            for fact in incident.get("addresses", []) + incident.get("transactions", []):
                if fact.get("chain"):
                    seen.add(fact["chain"])
    return seen


def test_every_chain_in_the_bundled_data_is_known_by_its_slug() -> None:
    chains = _bundled_chains()
    assert {"ethereum", "bsc", "base", "sei", "moonriver"} <= chains  # the files were read
    assert sorted(c for c in chains if c not in CHAINS) == []


def test_every_chain_of_the_notable_incidents_is_known() -> None:
    assert sorted(c for c in NOTABLE_CHAINS if c not in CHAINS) == []


@pytest.mark.parametrize(
    ("typed", "slug"),
    [
        ("eth", "ethereum"),
        ("Mainnet", "ethereum"),
        ("BSC", "bsc"),
        ("bnb", "bsc"),
        ("BNB Chain", "bsc"),
        (" Binance  Smart Chain ", "bsc"),
        ("arb", "arbitrum"),
        ("Arbitrum One", "arbitrum"),
        ("matic", "polygon"),
        ("avax", "avalanche"),
        ("Avalanche C-Chain", "avalanche"),
        ("op", "optimism"),
        ("ftm", "fantom"),
        ("xdai", "gnosis"),
        ("zkSync Era", "zksync"),
        ("zksync-era", "zksync"),
        ("sol", "solana"),
        ("btc", "bitcoin"),
        ("Bitcoin Cash", "bitcoin-cash"),
        ("bitcoin_cash", "bitcoin-cash"),
        ("trx", "tron"),
        ("ripple", "xrp"),
        ("eip155:8453", "base"),
        ("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp", "solana"),
        ("tvm:-239", "ton"),
    ],
)
def test_aliases_names_and_caip2_ids_resolve(typed: str, slug: str) -> None:
    assert normalize_chain(typed) == slug


@pytest.mark.parametrize("name", ["foochain", "eth'; --", "x" * 40, "", "eip155:999999999"])
def test_an_unknown_chain_is_refused_with_the_known_ones_listed(name: str) -> None:
    assert find_chain(name) is None
    with pytest.raises(ValueError, match="not a chain name KAMIYO knows") as caught:
        normalize_chain(name)
    message = str(caught.value)
    assert "\n" not in message
    listed = message.split("use one of: ")[1].split(" (aliases")[0].split(", ")
    assert listed == list(known_slugs())
    assert "aliases such as eth, bnb" in message
    assert "matic" in message


def test_a_long_name_is_cut_in_the_message() -> None:
    with pytest.raises(ValueError, match="not a chain name") as caught:
        get_chain("y" * 500)
    assert "y" * 41 not in str(caught.value)


def test_no_name_is_claimed_by_two_chains() -> None:
    # The index refuses such a table when it is built; this checks the declarations directly.
    seen: dict[str, str] = {}
    for chain in CHAINS.values():
        for name in {chain.slug, chain.name.lower(), *chain.aliases}:
            assert seen.setdefault(name.lower(), chain.slug) == chain.slug, name


@pytest.mark.parametrize(
    ("slug", "chain_id"),
    [
        ("ethereum", 1),
        ("optimism", 10),
        ("bsc", 56),
        ("gnosis", 100),
        ("polygon", 137),
        ("fantom", 250),
        ("zksync", 324),
        ("moonriver", 1285),
        ("sei", 1329),
        ("mantle", 5000),
        ("base", 8453),
        ("arbitrum", 42161),
        ("avalanche", 43114),
        ("linea", 59144),
        ("blast", 81457),
        ("base-sepolia", 84532),
    ],
)
def test_evm_chain_ids_and_their_caip2(slug: str, chain_id: int) -> None:
    chain = CHAINS[slug]
    assert chain.family is AddressFamily.EVM
    assert chain.evm_chain_id == chain_id
    assert chain.caip2 == f"eip155:{chain_id}"
    assert chain_by_caip2(f"eip155:{chain_id}") is chain


def test_every_evm_chain_has_an_id_and_no_other_chain_has_one() -> None:
    for chain in CHAINS.values():
        is_evm = chain.family is AddressFamily.EVM
        assert (chain.evm_chain_id is not None) == is_evm, chain.slug
        if chain.caip2 is not None and chain.family is not AddressFamily.OTHER:
            assert family_of(chain.caip2) is chain.family, chain.slug


@pytest.mark.parametrize(
    ("slug", "caip2"),
    [
        ("solana", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"),
        ("solana-devnet", "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"),
        ("bitcoin", "bip122:000000000019d6689c085ae165831e93"),
        ("litecoin", "bip122:12a765e31ffd4059bada1e25190f6e98"),
        ("tron", "tron:0x2b6653dc"),
        ("cosmos", "cosmos:cosmoshub-4"),
        ("sui", "sui:mainnet"),
        ("aptos", "aptos:1"),
        ("xrp", "xrpl:0"),
        ("polkadot", "polkadot:91b171bb158e2d3848fa23a9f1c25182"),
    ],
)
def test_non_evm_caip2_ids(slug: str, caip2: str) -> None:
    assert CHAINS[slug].caip2 == caip2
    assert chain_by_caip2(caip2) is CHAINS[slug]


def test_the_payment_networks_are_chains_with_circles_usdc() -> None:
    assert [chain_by_caip2(n).slug for n in (BASE, BASE_SEPOLIA, SOLANA, SOLANA_DEVNET)] == [  # type: ignore[union-attr]
        "base",
        "base-sepolia",
        "solana",
        "solana-devnet",
    ]
    assert CHAINS["base-sepolia"].testnet
    assert CHAINS["solana-devnet"].testnet
    assert not CHAINS["base"].testnet
    assert USDC[BASE].address == "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
    assert (USDC[BASE].eip712_name, USDC[BASE].eip712_version) == ("USD Coin", "2")
    assert (USDC[BASE_SEPOLIA].eip712_name, USDC[BASE_SEPOLIA].eip712_version) == ("USDC", "2")
    assert USDC[SOLANA].address == "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
    assert USDC[SOLANA].eip712_name is None
    assert {asset.decimals for asset in USDC.values()} == {6}


@pytest.mark.parametrize(
    ("network", "family"),
    [
        ("eip155:8453", AddressFamily.EVM),
        ("eip155:31337", AddressFamily.EVM),  # a local chain: the namespace decides
        ("solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1", AddressFamily.SOLANA),
        ("bip122:000000000019d6689c085ae165831e93", AddressFamily.BITCOIN),
        ("tron:0x2b6653dc", AddressFamily.TRON),
    ],
)
def test_family_of_a_network(network: str, family: AddressFamily) -> None:
    assert family_of(network) is family


@pytest.mark.parametrize("network", ["base", "eip155", "foo:bar", "EIP155:1", ""])
def test_family_of_refuses_what_is_not_a_caip2_id(network: str) -> None:
    with pytest.raises(ValueError, match="not a CAIP-2 network id"):
        family_of(network)


def test_accepted_networks_fill_in_circles_usdc_and_refuse_other_families() -> None:
    base = AcceptedNetwork(network=BASE, pay_to="0x" + "1" * 40)
    assert (base.usdc, base.eip712_name, base.eip712_version, base.label) == (
        USDC[BASE].address,
        "USD Coin",
        "2",
        "Base",
    )
    assert base.family is AddressFamily.EVM
    assert AcceptedNetwork(network=SOLANA, pay_to="x").family is AddressFamily.SOLANA
    with pytest.raises(ValueError, match="eip155:\\* and solana:\\* only"):
        AcceptedNetwork(network="tron:0x2b6653dc", pay_to="T", asset="T")
    with pytest.raises(ValueError, match="give its USDC asset"):
        AcceptedNetwork(network="eip155:31337", pay_to="0x" + "1" * 40)
    with pytest.raises(ValueError, match="eip712_name and version"):
        AcceptedNetwork(network="eip155:31337", pay_to="0x" + "1" * 40, asset="0x" + "2" * 40)
    local = AcceptedNetwork(
        network="eip155:31337",
        pay_to="0x" + "1" * 40,
        asset="0x" + "2" * 40,
        eip712_name="Token",
        eip712_version="1",
    )
    assert local.label == "eip155:31337"
