"""Controlled vocabularies: attack types, chains, address roles and the firms behind references.

Source data speaks free text ("Business Logic Flaw", "precission loss", "Flashloan & Price Oracle
Manipulation"); the product speaks these names. Each mapping lives here and nowhere else.
"""

import re
from enum import StrEnum
from urllib.parse import urlsplit


class AttackType(StrEnum):
    ACCESS_CONTROL = "access_control"
    REENTRANCY = "reentrancy"
    PRICE_MANIPULATION = "price_manipulation"
    ORACLE_MANIPULATION = "oracle_manipulation"
    FLASH_LOAN = "flash_loan"
    BUSINESS_LOGIC = "business_logic"
    INPUT_VALIDATION = "input_validation"
    ARBITRARY_CALL = "arbitrary_call"
    PRECISION_LOSS = "precision_loss"
    INTEGER_OVERFLOW = "integer_overflow"
    SIGNATURE = "signature"
    TOKEN_MECHANICS = "token_mechanics"  # noqa: S105 (a category, not a secret)
    SLIPPAGE_MEV = "slippage_mev"
    INFLATION_ATTACK = "inflation_attack"
    KEY_COMPROMISE = "key_compromise"
    RUG_PULL = "rug_pull"
    MISCONFIGURATION = "misconfiguration"
    BRIDGE = "bridge"
    GOVERNANCE = "governance"
    BAD_RANDOMNESS = "bad_randomness"
    STORAGE_COLLISION = "storage_collision"
    OTHER = "other"
    UNKNOWN = "unknown"


# First match wins, so the more specific causes come before the broad ones
# ("flashloan price oracle manipulation" is oracle manipulation, not a flash-loan attack).
_ATTACK_RULES: tuple[tuple[AttackType, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        (AttackType.KEY_COMPROMISE, r"private ?key|compromis|leaked key|phish"),
        (AttackType.RUG_PULL, r"rug ?pull|exit scam|backdoor|malicious (owner|dev)"),
        (AttackType.STORAGE_COLLISION, r"storage collision|storage slot"),
        (AttackType.BAD_RANDOMNESS, r"random"),
        (AttackType.SIGNATURE, r"signature|replay|ecrecover|permit"),
        (AttackType.REENTRANCY, r"re-?entran"),
        (AttackType.INFLATION_ATTACK, r"inflation|donat|first deposit|empty market"),
        (AttackType.ORACLE_MANIPULATION, r"oracle"),
        (AttackType.PRICE_MANIPULATION, r"\bprice|skim|\bsync\b|manipulat"),
        (AttackType.PRECISION_LOSS, r"precis+ion|rounding|truncat"),
        (AttackType.INTEGER_OVERFLOW, r"overflow|underflow"),
        (
            AttackType.ARBITRARY_CALL,
            r"arbitrary|external call|unverified call|unchecked call|"
            r"callback",
        ),
        (
            AttackType.ACCESS_CONTROL,
            r"access ?-?control|permission|unprotected|onlyowner|"
            r"initiali[sz]|caller check|ownership|allowance check",
        ),
        (AttackType.GOVERNANCE, r"governance|governor|proposal|voting"),
        (AttackType.INPUT_VALIDATION, r"validat|unchecked|user input|sanity check|verif"),
        (AttackType.SLIPPAGE_MEV, r"slippage|sandwich|front-?run|mev|arbitrage"),
        (
            AttackType.TOKEN_MECHANICS,
            r"reflect|deflation|burn|rebas|fee-on-transfer|"
            r"transfer fee|dividend|token",
        ),
        (AttackType.MISCONFIGURATION, r"misconfig|config"),
        (AttackType.BRIDGE, r"bridge|cross-?chain|cctp"),
        (AttackType.FLASH_LOAN, r"flash ?loan"),
        (
            AttackType.BUSINESS_LOGIC,
            r"logic|calculat|reward|accounting|incorrect|"
            r"bus+iness|flaw|design",
        ),
    )
)


def classify_attack(raw: str | None) -> AttackType:
    """Map a free-text root cause to the controlled vocabulary."""
    text = " ".join((raw or "").lower().split())
    if not text:
        return AttackType.UNKNOWN
    for kind, pattern in _ATTACK_RULES:
        if pattern.search(text):
            return kind
    return AttackType.OTHER


class AddressRole(StrEnum):
    ATTACKER = "attacker"
    ATTACK_CONTRACT = "attack_contract"
    VULNERABLE_CONTRACT = "vulnerable_contract"
    VICTIM = "victim"
    FRONTRUNNER = "frontrunner"


# Names people and data sources use for a chain -> the slug the store keeps.
CHAIN_ALIASES: dict[str, str] = {
    "eth": "ethereum",
    "mainnet": "ethereum",
    "bnb": "bsc",
    "bnb chain": "bsc",
    "bnbchain": "bsc",
    "binance": "bsc",
    "binance smart chain": "bsc",
    "arb": "arbitrum",
    "arbitrum one": "arbitrum",
    "matic": "polygon",
    "avax": "avalanche",
    "op": "optimism",
    "ftm": "fantom",
    "xdai": "gnosis",
    "zksync era": "zksync",
    "sol": "solana",
}
_CHAIN_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


def normalize_chain(name: str) -> str:
    """The chain slug for a user- or source-supplied name; ValueError when it cannot be one."""
    key = " ".join(name.strip().lower().split())
    slug = CHAIN_ALIASES.get(key, key)
    if not _CHAIN_SLUG.fullmatch(slug):
        raise ValueError(
            f"{name!r} is not a chain name: use a slug like 'ethereum', 'bsc' or 'arbitrum'"
        )
    return slug


# Security firms and alert accounts whose reports the references link to, recognised by the
# account handle (X/Twitter, Medium) or by the site. Keys are lower-case.
_FIRM_BY_HANDLE: dict[str, str] = {
    "blocksecteam": "BlockSec",
    "phalcon_xyz": "BlockSec Phalcon",
    "peckshield": "PeckShield",
    "peckshieldalert": "PeckShield",
    "certikalert": "CertiK",
    "certikaiagent": "CertiK",
    "slowmist_team": "SlowMist",
    "misttrack_io": "SlowMist",
    "beosinalert": "Beosin",
    "anciliainc": "Ancilia",
    "tenarmoralert": "TenArmor",
    "defimonalerts": "Defimon",
    "decurityhq": "Decurity",
    "metasec_xyz": "MetaSec",
    "metatrustalert": "MetaTrust",
    "chainaegis": "ChainAegis",
    "exvulsec": "ExVul",
    "hexagate_": "Hexagate",
    "cyversalerts": "Cyvers",
    "hypernativelabs": "Hypernative",
    "blockaid_": "Blockaid",
    "numencyber": "Numen Cyber",
    "quillaudits": "QuillAudits",
    "quillaudits_ai": "QuillAudits",
    "quillhash": "QuillAudits",
    "@quillaudits": "QuillAudits",
    "immunefi": "Immunefi",
    "neptune-mutual": "Neptune Mutual",
    "openzeppelin": "OpenZeppelin",
    "audit_911": "Audit 911",
    "@knownsec_blockchain_lab": "Knownsec",
}
_FIRM_BY_SITE: dict[str, str] = {
    "blocksec.com": "BlockSec",
    "app.blocksec.com": "BlockSec Phalcon",
    "explorer.phalcon.xyz": "BlockSec Phalcon",
    "phalcon.blocksec.com": "BlockSec Phalcon",
    "blocksecteam.medium.com": "BlockSec",
    "peckshield.medium.com": "PeckShield",
    "certik.com": "CertiK",
    "skylens.certik.com": "CertiK",
    "slowmist.medium.com": "SlowMist",
    "hacked.slowmist.io": "SlowMist",
    "beosin.medium.com": "Beosin",
    "rekt.news": "Rekt News",
    "blog.solidityscan.com": "SolidityScan",
    "blog.verichains.io": "Verichains",
    "lunaray.medium.com": "Lunaray",
    "defimon.xyz": "Defimon",
    "quillaudits.medium.com": "QuillAudits",
    "quillaudits.com": "QuillAudits",
    "halborn.com": "Halborn",
    "blog.openzeppelin.com": "OpenZeppelin",
    "neptunemutual.com": "Neptune Mutual",
    "numencyber.com": "Numen Cyber",
    "immunebytes.com": "ImmuneBytes",
    "inspexco.medium.com": "Inspex",
    "knownseclab.com": "Knownsec",
    "app.dedaub.com": "Dedaub",
    "dashboard.tenderly.co": "Tenderly",
}
_SOCIAL_SITES = frozenset({"twitter.com", "x.com", "mobile.twitter.com", "medium.com"})


def firm_for_url(url: str) -> str | None:
    """The security firm or alert service a reference link comes from, if it is a known one."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().removeprefix("www.")
    if host in _SOCIAL_SITES:
        segments = [s for s in parts.path.split("/") if s]
        return _FIRM_BY_HANDLE.get(segments[0].lower()) if segments else None
    return _FIRM_BY_SITE.get(host)


_EVM_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_BASE58_ADDRESS = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")


def normalize_address(address: str) -> str:
    """An EVM address in lower case or a Solana address as is; ValueError for anything else."""
    candidate = address.strip()
    if _EVM_ADDRESS.fullmatch(candidate):
        return candidate.lower()
    if _BASE58_ADDRESS.fullmatch(candidate):
        return candidate
    raise ValueError(
        "not an address: expected 0x followed by 40 hex digits (EVM) "
        "or a 32-44 character base58 key (Solana)"
    )
