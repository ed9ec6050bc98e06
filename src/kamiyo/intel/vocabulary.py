"""Controlled vocabularies: attack types, address roles and the firms behind references.

Source data speaks free text ("Business Logic Flaw", "precission loss", "Flashloan & Price Oracle
Manipulation"); the product speaks these names. Each mapping lives here and nowhere else: the
wording rules, the notable-incidents table's own categories, and the words people search with.
Chains and addresses have their own vocabulary, in ``kamiyo.chains``. The types themselves and
the checks that go with them live in ``kamiyo.intel.attack_types`` (re-exported here).

Attack types name the weakness the attacker used. KEY_COMPROMISE means the attacker ended up
signing as the victim: stolen or leaked keys, drained hot wallets, multisig signers taken over
or tricked into signing (Ronin, Harmony, Bybit), whatever the victim was (a bridge, an exchange,
a protocol). BRIDGE is kept for flaws in a bridge's own message or proof verification (Nomad,
Wormhole). PHISHING is a victim deceived into authorising a transfer, an approval or access
(drainer sites, address poisoning, fake support); SUPPLY_CHAIN is malicious code delivered
through a dependency, an app build, an extension or a hosted front end.
"""

import re
from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from urllib.parse import urlsplit

from kamiyo.intel.attack_types import ATTACK_CHECKS, AttackType
from kamiyo.intel.text import query_terms

__all__ = [
    "ATTACK_CHECKS",
    "NOTABLE_ATTACK_TYPES",
    "AddressRole",
    "AttackType",
    "attack_type_for_query",
    "classify_attack",
    "firm_for_url",
    "notable_attack_type",
]


# First match wins, so the more specific causes come before the broad ones
# ("flashloan price oracle manipulation" is oracle manipulation, not a flash-loan attack). Key
# compromise is read in two steps: signing keys named outright (private keys, multisig owners,
# validator keys) come before the supply-chain and phishing wordings that often carry them
# ("compromised Safe{Wallet} developer machine"), and the loose wordings ("hot wallet",
# "compromised") after them, so "Cloudflare key compromised" stays a supply-chain attack.
_KEY_NAMED = (
    r"private ?keys?|seed keys?|signing keys?|api keys?|\bkms\b|\bmpc\b|auth key|lost keys|"
    r"(admin|deployer|owner|minting|validator|operator|role) keys?\b|(key|wallet) generation|"
    r"validator (node|key)s?|compromised (signer|validator)s?|signers? (were |was )?compromis|"
    r"blind.?sign|ui/payload|safe\{?wallet|\bsafe (owner|signer)s?|"
    r"multi-?sig\w*\W+(\w+\W+){0,4}(compromis|keys?|owners?|signers?|takeover|phish)|"
    r"(control|compromis\w*|takeover) (over|of) (\w+\W+){0,4}multi-?sig"
)
_KEY_LOOSE = (
    r"hot.?wallets?|cold.?wallets?|seed phrase|mnemonic|compromis|\bleak|hijack|session token|"
    r"keys? (were |was )?(stolen|exposed)|stole\w* (\w+ ){0,3}keys"
)
_ATTACK_RULES: tuple[tuple[AttackType, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        (
            AttackType.RUG_PULL,
            r"rug ?-?pull|rugged|exit scam|backdoor|malicious (owner|dev|deployer)|insider|"
            r"rogue (dev|developer|employee|team)|former (employee|developer|dev)\b|"
            r"ex-?developer|employee (exploited|stole|abused)|deployer exploited|scammer|"
            r"hacked (its |their )?own|hidden (transfer|mint|fee|function)",
        ),
        (AttackType.KEY_COMPROMISE, _KEY_NAMED),
        (
            AttackType.SUPPLY_CHAIN,
            r"supply.?chain|front.?end (attack|hijack|compromis|exploit|injection)|"
            r"front.?end of|\bdns\b|cloudflare|\bnpm\b|pypi|\bapk\b|browser extension|"
            r"chrome extension|malicious (package|dependency|library|javascript|script|sdk)|"
            r"third-party",
        ),
        (
            AttackType.PHISHING,
            r"phish|social engineer|impersonat|address poisoning|drainer|pig butcher|"
            r"fake (support|site|website|airdrop|app|job|interview|call)|support call|"
            r"2fa reset|deceptive|signed a malicious|malicious (permit|approval|signature)|"
            r"security update\W+pop-?up",
        ),
        (AttackType.KEY_COMPROMISE, _KEY_LOOSE),
        (AttackType.COMPILER_BUG, r"compiler|vyper"),
        (AttackType.STORAGE_COLLISION, r"storage collision|storage slot|slot\d? collision"),
        (AttackType.BAD_RANDOMNESS, r"random|\brng\b"),
        (
            AttackType.BRIDGE,
            r"bridge|cross-?chain|cctp|message attestation|proof verif|\bspv\b|\bdvn\b|"
            r"log spoofing|trusted root",
        ),
        (AttackType.SIGNATURE, r"signature|replay|ecrecover|permit"),
        (AttackType.REENTRANCY, r"re-?entran|recursive (\w+ )?calls?"),
        (AttackType.INFLATION_ATTACK, r"inflation|donat|first deposit|empty market"),
        (AttackType.ORACLE_MANIPULATION, r"oracle"),
        (AttackType.FLASH_LOAN, r"flash ?-?loan callback|flash.?mint"),
        (AttackType.PRECISION_LOSS, r"precis+ion|rounding|truncat"),
        (AttackType.PRICE_MANIPULATION, r"\bprice|skim|\bsync\b|manipulat|spot"),
        (AttackType.INTEGER_OVERFLOW, r"overflow|underflow"),
        (
            AttackType.ARBITRARY_CALL,
            r"arbitrary.?(external )?call|external call|unverified call|callback|functioncall|"
            r"unchecked (external )?call|arbitrary yul|arbitary|call injection",
        ),
        (
            AttackType.ACCESS_CONTROL,
            r"acces+ ?-?contro|permission|unprotected|onlyowner|initiali[sz]|caller check|"
            r"ownership|allowance (check|bypass|sweep)|(stale|unrestricted|credit) approval|"
            r"approval (drain|bypass)|unauthori[sz]ed|authentication|visibility|"
            r"public (internal )?function|self-?destruct|killed|free mint|arbitrary mint|"
            r"mint and dump|forwarder",
        ),
        (AttackType.GOVERNANCE, r"governance|governor|proposal|voting"),
        (
            AttackType.INPUT_VALIDATION,
            r"validat(?!or)|unchecked|user input|sanity check|verif|spoof|fake|forg|calldata|"
            r"parameter check|faulty (input|calldata|parameter)|malicious (smart )?contracts?",
        ),
        (AttackType.SLIPPAGE_MEV, r"slippage|sandwich|front-?run|mev|arbitrage"),
        (
            AttackType.TOKEN_MECHANICS,
            r"reflect|deflation|burn|rebas|fee-on-transfer|transfer fee|self.?transfer|"
            r"transfer to self|token (incompatib|uncompatib|mechanic|is destroyed)|"
            r"incompatible token",
        ),
        (AttackType.MISCONFIGURATION, r"misconfig|config"),
        (
            AttackType.BUSINESS_LOGIC,
            r"logic|calculat|reward|accounting|incorrect|bus+iness|flaw|design|insolven|"
            r"health ?factor|mismatch|double|duplicate|repeat|infinite|redemption|msg\.?value|"
            r"\bbug\b|formula|error|wrong|implement|outdated|stale|incentive|bypass|"
            r"multiple times",
        ),
        # A flash loan is how most attacks are funded: the cause only when nothing else is named.
        (AttackType.FLASH_LOAN, r"flash ?-?loan"),
    )
)


def classify_attack(raw: str | None) -> AttackType:
    """Map a free-text root cause to the controlled vocabulary (OTHER when nothing matches)."""
    text = " ".join((raw or "").lower().split())
    if not text:
        return AttackType.UNKNOWN
    for kind, pattern in _ATTACK_RULES:
        if pattern.search(text):
            return kind
    return AttackType.OTHER


# The notable-incidents table (data/notable/) classifies each row itself, in words of its own.
# Two of its categories name how the attacker got in rather than what was taken: where the
# row's wording shows signing keys taken (bZx "private key ... compromised (phishing)", WazirX
# "blind signing ... multisig", Bybit "Safe{Wallet}"), key compromise wins.
NOTABLE_ATTACK_TYPES: Mapping[str, AttackType] = MappingProxyType(
    {
        "key_compromise": AttackType.KEY_COMPROMISE,
        "access_control": AttackType.ACCESS_CONTROL,
        "oracle_manipulation": AttackType.ORACLE_MANIPULATION,
        "price_manipulation": AttackType.PRICE_MANIPULATION,
        "reentrancy": AttackType.REENTRANCY,
        "logic_flaw": AttackType.BUSINESS_LOGIC,
        "flash_loan": AttackType.FLASH_LOAN,
        "bridge_verification": AttackType.BRIDGE,
        "signature_replay": AttackType.SIGNATURE,
        "rug_pull_insider": AttackType.RUG_PULL,
        "phishing_social_engineering": AttackType.PHISHING,
        "supply_chain_frontend": AttackType.SUPPLY_CHAIN,
        "compiler_bug": AttackType.COMPILER_BUG,
        "rounding_precision": AttackType.PRECISION_LOSS,
        "unknown": AttackType.UNKNOWN,
    }
)
_NOTABLE_VECTORS = frozenset({"phishing_social_engineering", "supply_chain_frontend"})


def notable_attack_type(category: str, wording: str | None) -> AttackType:
    """Our attack type for a notable-incidents row's own category and wording.

    ValueError for a category the table does not define.
    """
    kind = NOTABLE_ATTACK_TYPES.get(category.strip().lower())
    if kind is None:
        raise ValueError(f"unknown attack category {category!r}")
    if category in _NOTABLE_VECTORS and classify_attack(wording) is AttackType.KEY_COMPROMISE:
        return AttackType.KEY_COMPROMISE
    return kind


# What people type when they look for an attack type rather than a protocol. Only wordings
# that name a type on their own: a bare "bridge" or "wallet" is more often part of a name
# ("Nomad Bridge") than a question about bridge bugs.
_QUERY_WORDS: Mapping[AttackType, str] = MappingProxyType(
    {
        AttackType.KEY_COMPROMISE: "private key|private keys|key compromise|compromised key|"
        "stolen keys|leaked key|key leak|hot wallet|hot wallets|multisig|multi sig|"
        "compromised signer|compromised signers|signer compromise|seed phrase|wallet hack",
        AttackType.PHISHING: "phishing|social engineering|address poisoning|drainer|"
        "wallet drainer|approval phishing|permit phishing|impersonation",
        AttackType.SUPPLY_CHAIN: "supply chain|frontend attack|front end attack|dns hijack|"
        "malicious package|malicious dependency",
        AttackType.COMPILER_BUG: "compiler bug|compiler|vyper bug",
        AttackType.REENTRANCY: "reentrancy|re entrancy|reentrant|read only reentrancy",
        AttackType.ORACLE_MANIPULATION: "oracle manipulation|oracle attack|oracle",
        AttackType.PRICE_MANIPULATION: "price manipulation|market manipulation",
        AttackType.FLASH_LOAN: "flash loan|flashloan|flash loan attack",
        AttackType.ACCESS_CONTROL: "access control|missing access control",
        AttackType.BUSINESS_LOGIC: "business logic|logic flaw|logic bug",
        AttackType.INPUT_VALIDATION: "input validation|missing validation",
        AttackType.ARBITRARY_CALL: "arbitrary call|arbitrary external call",
        AttackType.PRECISION_LOSS: "precision loss|rounding error|rounding",
        AttackType.INTEGER_OVERFLOW: "integer overflow|overflow|underflow",
        AttackType.SIGNATURE: "signature replay|replay attack|signature bypass",
        AttackType.TOKEN_MECHANICS: "fee on transfer|reflection token|deflationary token",
        AttackType.SLIPPAGE_MEV: "sandwich|sandwich attack|front running|slippage",
        AttackType.INFLATION_ATTACK: "inflation attack|donation attack|first depositor",
        AttackType.RUG_PULL: "rug pull|rugpull|exit scam|insider",
        AttackType.MISCONFIGURATION: "misconfiguration",
        AttackType.BRIDGE: "bridge exploit|bridge hack|bridge attack|bridge bug",
        AttackType.GOVERNANCE: "governance attack|governance",
        AttackType.BAD_RANDOMNESS: "bad randomness|weak randomness",
        AttackType.STORAGE_COLLISION: "storage collision",
    }
)
# No one searches for "other"; "bridge" alone is a name more often than a question.
_NOT_BY_VALUE = frozenset({AttackType.OTHER, AttackType.UNKNOWN, AttackType.BRIDGE})
_WORD_GAPS = re.compile(r"[\s_\-./]+")


def _query_key(text: str) -> str:
    return " ".join(_WORD_GAPS.sub(" ", text.lower()).split())


_QUERY_INDEX: Mapping[str, AttackType] = MappingProxyType(
    {_query_key(kind.value): kind for kind in AttackType if kind not in _NOT_BY_VALUE}
    | {_query_key(w): kind for kind, words in _QUERY_WORDS.items() for w in words.split("|")}
)


# Words that add nothing to an attack type's name: "reentrancy attack" is "reentrancy".
_FILLER = frozenset({"attack", "attacks", "exploit", "exploits", "hack", "hacks", "bug", "bugs"})
_FILLER |= {"incident", "incidents", "vulnerability", "vulnerabilities"}


def attack_type_for_query(text: str, *, whole: bool = False) -> AttackType | None:
    """The attack type a search names ("private key", "hot wallet", "flash loan"), or None.

    The longest phrase found as whole words wins, so "read-only reentrancy" and "Euler flash
    loan" both name a type; case, hyphens and underscores do not matter. ``whole``: only when
    the whole query is such a phrase ("private keys", "reentrancy attack", not "Euler flash
    loan"), as search wants it.
    """
    if whole:
        key = _query_key(text)
        # The search's own words: folded, without stopwords ("the oracle") or filler.
        plain = " ".join(w for w in query_terms(text) if w not in _FILLER)
        for candidate in (key, plain, plain.removesuffix("s")):
            if candidate in _QUERY_INDEX:
                return _QUERY_INDEX[candidate]
        return None
    words = f" {_query_key(text)} "
    found = [phrase for phrase in _QUERY_INDEX if f" {phrase} " in words]
    return _QUERY_INDEX[max(found, key=len)] if found else None


class AddressRole(StrEnum):
    ATTACKER = "attacker"
    ATTACK_CONTRACT = "attack_contract"
    VULNERABLE_CONTRACT = "vulnerable_contract"
    VICTIM = "victim"
    FRONTRUNNER = "frontrunner"


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
