"""Every chain KAMIYO knows: one declaration each, and the lookups built from them.

A chain's slug is what the store keeps and the API speaks. Aliases are what people and sources
type ("eth", "BNB Chain", "arbitrum one"); the display name and the CAIP-2 id are understood too.
CAIP-2 ids are given only where a ChainAgnostic namespace (or, for Tron and NEAR, the id wallets
use) defines one; a chain without one says None rather than a guess.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class AddressFamily(StrEnum):
    """How a chain's addresses look; chains of one family share one address format."""

    EVM = "evm"
    SOLANA = "solana"
    BITCOIN = "bitcoin"  # Bitcoin and the UTXO chains derived from it
    TRON = "tron"
    COSMOS = "cosmos"
    POLKADOT = "polkadot"
    SUI = "sui"
    APTOS = "aptos"
    CARDANO = "cardano"
    XRP = "xrp"
    STELLAR = "stellar"
    NEAR = "near"
    TON = "ton"
    ALGORAND = "algorand"
    ANTELOPE = "antelope"
    STARKNET = "starknet"
    OTHER = "other"  # a format of its own that nothing here reads yet


@dataclass(frozen=True, slots=True)
class Chain:
    slug: str
    name: str
    family: AddressFamily
    evm_chain_id: int | None = None
    caip2: str | None = None
    aliases: tuple[str, ...] = ()
    testnet: bool = False


def _evm(slug: str, name: str, chain_id: int, *aliases: str, testnet: bool = False) -> Chain:
    return Chain(slug, name, AddressFamily.EVM, chain_id, f"eip155:{chain_id}", aliases, testnet)


def _other(slug: str, name: str, family: AddressFamily, caip2: str | None, *aliases: str) -> Chain:
    return Chain(slug, name, family, None, caip2, aliases)


F = AddressFamily
# The networks x402 payments are taken on, as constants (each is also a chain below).
BASE = "eip155:8453"
BASE_SEPOLIA = "eip155:84532"
SOLANA = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
SOLANA_DEVNET = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"

# Every chain in the bundled data and in shared/data/notable_incidents.csv is here (a test
# checks it), plus the test networks payments are taken on.
_DECLARED: tuple[Chain, ...] = (
    # --- EVM -----------------------------------------------------------------------------
    _evm("ethereum", "Ethereum", 1, "eth", "mainnet", "ethereum mainnet", "ether"),
    _evm("optimism", "OP Mainnet", 10, "op", "optimism mainnet", "op mainnet"),
    _evm(
        "bsc",
        "BNB Smart Chain",
        56,
        "bnb",
        "bnb chain",
        "bnbchain",
        "binance",
        "binance smart chain",
        "bsc mainnet",
    ),
    _evm("ethereum-classic", "Ethereum Classic", 61, "etc"),
    _evm("okexchain", "OKX Chain (OKC)", 66, "okc", "oec", "okx chain", "okex chain"),
    _evm("gnosis", "Gnosis Chain", 100, "xdai", "gnosis chain"),
    _evm("heco", "Huobi ECO Chain", 128, "huobi eco chain", "heco chain"),
    _evm("unichain", "Unichain", 130),
    _evm("polygon", "Polygon PoS", 137, "matic", "polygon pos", "pol"),
    _evm("sonic", "Sonic", 146),
    _evm("tac", "TAC", 239),
    _evm("fantom", "Fantom Opera", 250, "ftm", "fantom opera"),
    _evm("zksync", "ZKsync Era", 324, "zksync era", "zk sync"),
    _evm("metis", "Metis Andromeda", 1088, "metis andromeda"),
    _evm("wemix", "WEMIX3.0", 1111, "wemix3.0"),
    _evm("moonbeam", "Moonbeam", 1284, "glmr"),
    _evm("moonriver", "Moonriver", 1285, "movr"),
    _evm("sei", "Sei", 1329, "sei evm"),
    _evm("milkomeda", "Milkomeda C1", 2001, "milkomeda c1"),
    _evm("ronin", "Ronin", 2020, "ron", "ronin network"),
    _evm("mantle", "Mantle", 5000, "mnt"),
    _evm("sagaevm", "SagaEVM", 5464, "saga evm"),
    _evm("base", "Base", 8453, "base mainnet"),
    _evm("evmos", "Evmos", 9001),
    _evm("arbitrum", "Arbitrum One", 42161, "arb", "arbitrum one", "arb1"),
    _evm("avalanche", "Avalanche C-Chain", 43114, "avax", "avalanche c-chain", "c-chain"),
    _evm("linea", "Linea", 59144),
    _evm("blast", "Blast", 81457),
    _evm("base-sepolia", "Base Sepolia", 84532, testnet=True),
    _evm("harmony", "Harmony", 1666600000, "harmony one"),
    # --- Solana ----------------------------------------------------------------------------
    Chain("solana", "Solana", F.SOLANA, None, SOLANA, ("sol", "solana mainnet")),
    Chain("solana-devnet", "Solana devnet", F.SOLANA, None, SOLANA_DEVNET, testnet=True),
    # --- Bitcoin and its kin (bip122 ids: the genesis block hash's first 32 hex digits) ------
    _other("bitcoin", "Bitcoin", F.BITCOIN, "bip122:000000000019d6689c085ae165831e93", "btc"),
    _other(
        "bitcoin-cash",
        "Bitcoin Cash",
        F.BITCOIN,
        "bip122:000000000000000000651ef99cb9fcbe",
        "bch",
    ),
    _other("litecoin", "Litecoin", F.BITCOIN, "bip122:12a765e31ffd4059bada1e25190f6e98", "ltc"),
    _other("dogecoin", "Dogecoin", F.BITCOIN, "bip122:1a91e3dace36e2be3bf030a65679fe82", "doge"),
    _other("zcash", "Zcash", F.BITCOIN, "bip122:00040fe8ec8471911baa1db1266ea15d", "zec"),
    _other("monacoin", "Monacoin", F.BITCOIN, None, "mona"),
    _other("syscoin", "Syscoin", F.BITCOIN, None, "sys"),
    _other("verus", "Verus", F.BITCOIN, None, "vrsc"),
    # --- Tron --------------------------------------------------------------------------------
    _other("tron", "Tron", F.TRON, "tron:0x2b6653dc", "trx", "tron mainnet"),
    # --- Cosmos SDK chains (cosmos:<chain-id>) -------------------------------------------------
    _other("cosmos", "Cosmos Hub", F.COSMOS, "cosmos:cosmoshub-4", "atom", "cosmos hub"),
    _other("osmosis", "Osmosis", F.COSMOS, "cosmos:osmosis-1", "osmo"),
    _other("secret", "Secret Network", F.COSMOS, "cosmos:secret-4", "scrt", "secret network"),
    _other("terra", "Terra", F.COSMOS, "cosmos:phoenix-1", "luna", "terra 2"),
    _other(
        "terra-classic",
        "Terra Classic",
        F.COSMOS,
        "cosmos:columbus-5",
        "lunc",
        "terra luna classic",
    ),
    _other("thorchain", "THORChain", F.COSMOS, "cosmos:thorchain-1", "rune"),
    # --- Polkadot and Substrate chains ---------------------------------------------------------
    _other("polkadot", "Polkadot", F.POLKADOT, "polkadot:91b171bb158e2d3848fa23a9f1c25182", "dot"),
    _other("acala", "Acala", F.POLKADOT, None, "aca"),
    _other("bittensor", "Bittensor", F.POLKADOT, None, "tao"),
    # --- one family each -----------------------------------------------------------------------
    _other("sui", "Sui", F.SUI, "sui:mainnet"),
    _other("aptos", "Aptos", F.APTOS, "aptos:1", "apt"),
    _other("cardano", "Cardano", F.CARDANO, None, "ada"),
    _other("xrp", "XRP Ledger", F.XRP, "xrpl:0", "ripple", "xrpl", "xrp ledger"),
    _other("stellar", "Stellar", F.STELLAR, "stellar:pubnet", "xlm"),
    _other("near", "NEAR Protocol", F.NEAR, "near:mainnet", "near protocol"),
    _other("ton", "TON", F.TON, "tvm:-239", "the open network", "toncoin"),
    _other("algorand", "Algorand", F.ALGORAND, "algorand:wGHE2Pwdvd7S12BL5FaOP20EGYesN73k", "algo"),
    _other("eos", "EOS", F.ANTELOPE, "antelope:aca376f206b8fc25a6ed44dbdc66547c", "eosio"),
    _other("starknet", "Starknet", F.STARKNET, "starknet:SN_MAIN", "strk"),
    # --- formats of their own ------------------------------------------------------------------
    _other("flow", "Flow", F.OTHER, "flow:mainnet"),
    _other("hedera", "Hedera", F.OTHER, "hedera:mainnet", "hbar"),
    _other("icon", "ICON", F.OTHER, None, "icx"),
    _other("icp", "Internet Computer", F.OTHER, None, "internet computer"),
    _other("iota", "IOTA", F.OTHER, "iota:mainnet", "miota"),
    _other("iotex", "IoTeX", F.OTHER, None, "iotx"),
    _other("mixin", "Mixin", F.OTHER, None, "xin"),
    _other("multiversx", "MultiversX", F.OTHER, "mvx:1", "egld", "elrond"),
    _other("nano", "Nano", F.OTHER, None, "xno"),
    _other("nem", "NEM", F.OTHER, None, "xem"),
    _other("nervos", "Nervos CKB", F.OTHER, None, "ckb", "nervos ckb"),
    _other("stacks", "Stacks", F.OTHER, "stacks:1", "stx"),
)

CHAINS: Mapping[str, Chain] = MappingProxyType({c.slug: c for c in _DECLARED})
_SEPARATORS = re.compile(r"[\s_-]+")


def _key(text: str) -> str:
    # "Bitcoin Cash", "bitcoin-cash" and "BITCOIN_CASH" are one name.
    return _SEPARATORS.sub(" ", text.strip().lower()).strip()


def _index() -> Mapping[str, Chain]:
    index: dict[str, Chain] = {}
    for chain in _DECLARED:
        names = [chain.slug, chain.name, *chain.aliases]
        for key in {_key(n) for n in names} | ({chain.caip2.lower()} if chain.caip2 else set()):
            other = index.setdefault(key, chain)
            if other is not chain:
                raise AssertionError(f"{key!r} names both {other.slug} and {chain.slug}")
    return MappingProxyType(index)


_BY_NAME = _index()
_BY_CAIP2: Mapping[str, Chain] = MappingProxyType(
    {c.caip2: c for c in _DECLARED if c.caip2 is not None}
)
_EXAMPLE_ALIASES = ("eth", "bnb", "arb", "matic", "avax", "op", "sol", "btc", "trx")


def known_slugs() -> tuple[str, ...]:
    """Every chain slug, sorted: what the error for an unknown chain lists."""
    return tuple(sorted(CHAINS))


def find_chain(name: str) -> Chain | None:
    """The chain a slug, alias, display name or CAIP-2 id names; None if none does."""
    return _BY_NAME.get(_key(name)) or _BY_NAME.get(name.strip().lower())


def get_chain(name: str) -> Chain:
    """Like :func:`find_chain`, but an unknown name is a ValueError that lists the known ones."""
    chain = find_chain(name)
    if chain is None:
        shown = name if len(name) <= 40 else name[:40] + "…"
        raise ValueError(
            f"{shown!r} is not a chain name KAMIYO knows; use one of: "
            f"{', '.join(known_slugs())} (aliases such as {', '.join(_EXAMPLE_ALIASES)} "
            "are understood)"
        )
    return chain


def normalize_chain(name: str) -> str:
    """The slug for a user- or source-supplied chain name; ValueError for an unknown one."""
    return get_chain(name).slug


def chain_by_caip2(network: str) -> Chain | None:
    """The chain a CAIP-2 id names exactly (``eip155:8453`` -> base), if KAMIYO knows it."""
    return _BY_CAIP2.get(network)


# CAIP-2 namespaces whose chains share one address family.
_NAMESPACE_FAMILY: Mapping[str, AddressFamily] = MappingProxyType(
    {
        "eip155": F.EVM,
        "solana": F.SOLANA,
        "bip122": F.BITCOIN,
        "tron": F.TRON,
        "cosmos": F.COSMOS,
        "polkadot": F.POLKADOT,
        "sui": F.SUI,
        "aptos": F.APTOS,
        "xrpl": F.XRP,
        "stellar": F.STELLAR,
        "near": F.NEAR,
        "tvm": F.TON,
        "algorand": F.ALGORAND,
        "antelope": F.ANTELOPE,
        "starknet": F.STARKNET,
    }
)
_CAIP2 = re.compile(r"^([-a-z0-9]{3,8}):([-_a-zA-Z0-9]{1,32})$")


def family_of(network: str) -> AddressFamily:
    """The address family of a CAIP-2 network, known chain or not (a local eip155:31337 is EVM)."""
    match = _CAIP2.fullmatch(network)
    family = _NAMESPACE_FAMILY.get(match.group(1)) if match else None
    if family is None:
        raise ValueError(
            f"{network!r} is not a CAIP-2 network id of a known kind "
            "(such as eip155:8453 or solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp)"
        )
    return family
