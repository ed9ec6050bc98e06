"""Facts in a DeFiHackLabs proof of concept: its header comment and where it forks.

The header comes in two shapes. The classic one::

    // @KeyInfo - Total Lost : 15.7k USD
    // Attacker : https://basescan.org/address/0x3cc1…
    // Attack Contract : https://basescan.org/address/0x0f30…   (also "Attack Contract1", "…2")
    // Vulnerable Contract : https://basescan.org/address/0xd6a7…  (possibly empty)
    // Attack Tx : https://basescan.org/tx/0x984c…   (bare hashes, blocksec/phalcon URLs too)
    // @Info / @Analysis: "Post-mortem : https://…", "Twitter Guy : https://…"

and the free-form one of 2026 (``// Exploit tx  : 0x… (block N)``, ``// Caller EOA  : 0x…``,
``// Attack ctrt : 0x…``, ``// Victim pool : 0x…``, then lists of other addresses touched).
Every comment line (``//``, or `` * `` inside a block comment) is read as ``label : value``.
The label decides the role (see :func:`role_of`); a transaction label (``Attack Tx``,
``Exploit tx``, ``TX``, ``txId``) gives hashes, except for set-up, buy or borrow
transactions; a line with no label right under a labelled one continues it (lists of attack
contracts or transactions); a line whose label names no role is skipped: the "protocol
addresses touched" lists name tokens and routers, not parties to the attack.
``address constant VICTIM = 0x…`` declarations add addresses the header does not give. Every
other link is a reference, except block explorers' pages of addresses and transactions (the
facts above again) and RPC endpoints.

The chain is where the test forks: ``createSelectFork("bsc", …)`` with a foundry alias, an RPC
URL, a string constant holding one, or an ``ETH_RPC_URL``-style variable; failing that, the
explorers the header links (bscscan -> bsc, basescan -> base, …).
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from kamiyo.chains import normalize_chain
from kamiyo.intel.vocabulary import AddressRole

_T = TypeVar("_T")
_ADDRESS = re.compile(r"(?<![0-9A-Za-z])0x[0-9a-fA-F]{40}(?![0-9A-Za-z])")
_TX_HASH = re.compile(r"(?<![0-9A-Za-z])0x[0-9a-fA-F]{64}(?![0-9A-Za-z])")
_URL = re.compile(r"https?://[^\s<>()\[\]\"'`,]+")
# A line comment, or a line inside a block comment that starts with "*" (" * Tx 1 : …").
_COMMENT = re.compile(r"^\s*(?://+|/\*+|\*+(?!/))\s?(?P<text>.*)$")
_LOSS = re.compile(r"@KeyInfo\s*-*\s*Total\s+Lost\s*:?\s*(?P<text>.*?)\s*$", re.IGNORECASE)
_LABELLED = re.compile(r"^(?P<label>[A-Za-z@][^:]*?)\s*(?::|\s-\s)\s*(?P<value>.*)$")
_FORK = re.compile(r"create(?:Select)?Fork\(\s*(?P<arg>[^,)]+)")
_STRING_CONSTANT = re.compile(r"\bstring\b[^;=]*?\b(?P<name>\w+)\s*=\s*\"(?P<value>[^\"]*)\"")
_ADDRESS_VARIABLE = re.compile(
    r"^\s*address\s+(?:(?:public|internal|private|constant|immutable|payable)\s+)*"
    r"(?P<name>[A-Za-z_]\w*)\s*=\s*(?:payable\(\s*)?(?:address\(\s*)?(?P<address>0x[0-9a-fA-F]{40})\b"
)
_RPC_FLAG = re.compile(r"--(?:rpc|fork)-url\s+(https?://\S+)")
_TX_WORDS = re.compile(r"\b(?:tx|txs|txid|txhash|transactions?|hash)\b|\btx\d|\btxid-", re.I)
# Transactions that set an attack up or follow it, not the attack itself.
_NOT_ATTACK_TX = re.compile(r"\b(?:buy|borrow|approve|approval|setup|preparation|deploy)", re.I)

# Foundry's rpc_endpoints aliases (foundry.toml) that are not chain names themselves.
_FORK_ALIASES = {"mainnet": "ethereum"}
# Explorer hosts, most specific first; a host ending in one of these names the chain.
_EXPLORERS = (
    ("optimistic.etherscan.io", "optimism"),
    ("moonriver.moonscan.io", "moonriver"),
    ("etherscan.io", "ethereum"),
    ("etherscan.com", "ethereum"),
    ("bscscan.com", "bsc"),
    ("basescan.org", "base"),
    ("base.blockscout.com", "base"),
    ("arbiscan.io", "arbitrum"),
    ("polygonscan.com", "polygon"),
    ("snowtrace.io", "avalanche"),
    ("snowscan.xyz", "avalanche"),
    ("ftmscan.com", "fantom"),
    ("lineascan.build", "linea"),
    ("blastscan.io", "blast"),
    ("gnosisscan.io", "gnosis"),
    ("era.zksync.network", "zksync"),
    ("explorer.zksync.io", "zksync"),
    ("seiscan.io", "sei"),
    ("seitrace.com", "sei"),
    ("mantlescan.xyz", "mantle"),
    ("explorer.mantle.xyz", "mantle"),
    ("mantlescan.info", "mantle"),
    ("moonscan.io", "moonbeam"),
)
# Tx viewers that put the chain in the path: app.blocksec.com/explorer/tx/eth/0x…
_PATH_CHAIN_HOSTS = (
    "app.blocksec.com",
    "explorer.phalcon.xyz",
    "phalcon.xyz",
    "phalcon.blocksec.com",
    "tools.blocksec.com",
    "versatile.blocksecteam.com",
)
_EXPLORER_PAGE = re.compile(r"/(?:address|tx|token)/|0x[0-9a-fA-F]{40}")


@dataclass(frozen=True, slots=True)
class PocAddress:
    role: AddressRole
    address: str  # lower case
    label: str
    chain: str | None  # the explorer's chain where the header links one


@dataclass(frozen=True, slots=True)
class PocTransaction:
    hash: str  # lower case
    chain: str | None


@dataclass(slots=True)
class PocFacts:
    loss_text: str | None = None
    fork_chains: list[str] = field(default_factory=list)
    explorer_chains: list[str] = field(default_factory=list)
    addresses: list[PocAddress] = field(default_factory=list)
    transactions: list[PocTransaction] = field(default_factory=list)
    references: list[str] = field(default_factory=list)

    @property
    def chains(self) -> list[str]:
        """Where the PoC forks; the header's explorers when it forks nowhere readable."""
        return self.fork_chains or self.explorer_chains


def role_of(label: str) -> AddressRole | None:
    """The role a header label (or a variable name) gives its addresses, if any.

    ``Attacker``, ``Caller EOA``, ``Exploiter``, ``Attack Deployer`` -> attacker;
    ``Attack Contract2``, ``Attack ctrt``, ``Created Attack Contract`` -> attack_contract;
    ``Vulnerable Contract (Code)``, ``Vuln Contract`` -> vulnerable_contract; ``Victim pool``
    -> victim; ``Frontrunner`` -> frontrunner. Transaction labels name no address role.
    """
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", label).replace("_", " ").lower()
    if _TX_WORDS.search(words):
        return None
    if "frontrun" in words:
        return AddressRole.FRONTRUNNER
    if "victim" in words:
        return AddressRole.VICTIM
    if "vuln" in words:
        return AddressRole.VULNERABLE_CONTRACT
    attacking = re.search(r"attack|exploit|hacker", words) is not None
    if attacking and re.search(r"contract|ctrt|helper|implementation", words):
        return AddressRole.ATTACK_CONTRACT
    if attacking or re.search(r"\bcaller eoa\b", words):
        return AddressRole.ATTACKER
    return None


def explorer_chain(url: str) -> str | None:
    """The chain an explorer URL points into, when the host (or path) says."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    for suffix, chain in _EXPLORERS:
        if host == suffix or host.endswith("." + suffix):
            return chain
    if host in _PATH_CHAIN_HOSTS:
        for segment in parts.path.split("/"):
            if named := _chain_name(segment):
                return named
    return None


def parse_poc(text: str) -> PocFacts:
    """The facts one PoC file states (``text`` is the whole ``.sol`` file)."""
    facts = PocFacts()
    lines = text.splitlines()
    _read_comments(lines, facts)
    known = {a.address for a in facts.addresses}
    for line in lines:
        if (var := _ADDRESS_VARIABLE.match(line)) and (role := role_of(var["name"])):
            address = var["address"].lower()
            if address not in known:
                known.add(address)
                facts.addresses.append(PocAddress(role, address, var["name"], None))
    facts.fork_chains = list(dict.fromkeys(_fork_chains(text)))
    return facts


def _read_comments(lines: list[str], facts: PocFacts) -> None:
    role: AddressRole | None = None
    label = ""
    is_tx = False
    for line in lines:
        comment = _COMMENT.match(line)
        if comment is None:
            role, is_tx = None, False
            continue
        text = comment["text"].strip()
        urls = [u.rstrip(".,;:!?*") for u in _URL.findall(text)]
        if facts.loss_text is None and (loss := _LOSS.search(text)):
            facts.loss_text = loss["text"] or None
            facts.references.extend(u for u in urls if _is_reference(u))
            continue
        labelled = _LABELLED.match(text)
        if labelled and "http" not in labelled["label"].lower():
            label = labelled["label"].strip()
            value = labelled["value"]
            role = role_of(label)
            is_tx = bool(_TX_WORDS.search(label)) and not _NOT_ATTACK_TX.search(label)
        elif not text.lstrip("-: ").startswith(("0x", "http")):
            role, is_tx = None, False  # prose: a continuation list has ended
            value = text
        else:
            value = text  # a continuation line under the last label
        chains = [explorer_chain(u) for u in urls]
        facts.explorer_chains.extend(c for c in chains if c)
        url_chain = next((c for c in chains if c), None)
        if is_tx:
            for tx in _TX_HASH.findall(value):
                facts.transactions.append(PocTransaction(tx.lower(), url_chain))
        elif role is not None:
            for address in _ADDRESS.findall(value):
                facts.addresses.append(PocAddress(role, address.lower(), label, url_chain))
        rpc = set(_RPC_FLAG.findall(text))
        facts.references.extend(u for u in urls if u not in rpc and _is_reference(u))
    facts.explorer_chains = list(dict.fromkeys(facts.explorer_chains))
    # The first mention of an address or a transaction is the one kept ("Vulnerable Contract"
    # rather than the "Vulnerable Contract Code" line repeating it).
    facts.addresses = list(_first(facts.addresses, lambda a: (a.role, a.address)))
    facts.transactions = list(_first(facts.transactions, lambda t: t.hash))
    facts.references = list(dict.fromkeys(facts.references))


def _first(items: list[_T], key: Callable[[_T], object]) -> Iterator[_T]:
    seen: set[object] = set()
    for item in items:
        if (k := key(item)) not in seen:
            seen.add(k)
            yield item


def _is_reference(url: str) -> bool:
    """Not a block explorer's page of an address or a transaction: those are the address and
    transaction facts again. Trace viewers and decompilers (Tenderly, Dedaub, CertiK Skylens)
    are analysis, and stay."""
    parts = urlsplit(url)
    if "rpc" in (parts.hostname or ""):
        return False  # an RPC endpoint a fork runs against ("rpc.ankr.com/bsc", "1rpc.io")
    return not (explorer_chain(url) and _EXPLORER_PAGE.search(f"{parts.path}?{parts.query}"))


def _fork_chains(text: str) -> Iterator[str]:
    constants = {m["name"]: m["value"] for m in _STRING_CONSTANT.finditer(text)}
    for line in text.splitlines():
        for match in _FORK.finditer(_code(line)):
            arg = match["arg"].strip()
            if arg.startswith('"'):
                value = arg.strip('"')
            elif env := re.search(r"\"(?P<var>[A-Z]+)_RPC_URL\"", arg):
                value = env["var"]
            else:
                value = constants.get(arg, "")
            if chain := _fork_chain(value):
                yield chain


def _code(line: str) -> str:
    """``line`` without its trailing ``//`` comment (a fork in a comment is not where the test
    runs); a ``//`` inside a string literal (an RPC URL) is code."""
    in_string = False
    for i, char in enumerate(line):
        if char == '"':
            in_string = not in_string
        elif not in_string and line.startswith("//", i):
            return line[:i]
    return line


def _fork_chain(value: str) -> str | None:
    if "://" not in value:
        return _chain_name(value)
    # An RPC URL: the first host or path word that names a chain ("bsc-mainnet.…", "/eth").
    parts = urlsplit(value)
    for word in re.split(r"[./_-]", f"{parts.hostname or ''}/{parts.path}"):
        if word != "mainnet" and (chain := _chain_name(word)):
            return chain
    return None


def _chain_name(word: str) -> str | None:
    word = word.strip().lower()
    if not word:
        return None
    if word in _FORK_ALIASES:
        return _FORK_ALIASES[word]
    try:
        return normalize_chain(word)
    except ValueError:
        return None
