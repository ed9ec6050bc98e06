"""KAMIYO's resource URIs: the one place that spells them, parses them and says which ones an
incident belongs to (resource templates, reads, subscriptions and notifications all use it).

A URI names a canonical key: protocols by their name key (``intel.names.name_key``: "Euler
Finance" is ``euler``), chains by their slug, addresses in the form incidents store them. A
client may subscribe with another spelling; it is parsed to the canonical form, and told of
updates under the URI it subscribed with.
"""

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote, unquote

from kamiyo import intel
from kamiyo.alerts import events
from kamiyo.chains import normalize_address, normalize_chain
from kamiyo.intel.names import name_key

SCHEME = "kamiyo://"
RECENT_URI = "kamiyo://exploits/recent"
EXPLOIT_TEMPLATE = "kamiyo://exploits/{exploit_id}"
PROTOCOL_TEMPLATE = "kamiyo://protocols/{protocol}/incidents"
CHAIN_TEMPLATE = "kamiyo://chains/{chain}/incidents"
ADDRESS_TEMPLATE = "kamiyo://addresses/{address}/incidents"
# One account's alert rule: its matches, for the account's sessions only.
ALERT_TEMPLATE = events.RESOURCE_TEMPLATE


class Kind(StrEnum):
    RECENT = "recent"
    EXPLOIT = "exploit"
    PROTOCOL = "protocol"
    CHAIN = "chain"
    ADDRESS = "address"
    ALERT = "alert"


@dataclass(frozen=True, slots=True)
class ResourceRef:
    kind: Kind
    key: str = ""  # the canonical key ("" for recent)

    @property
    def uri(self) -> str:
        """The canonical URI."""
        match self.kind:
            case Kind.RECENT:
                return RECENT_URI
            case Kind.EXPLOIT:
                return f"kamiyo://exploits/{quote(self.key, safe='')}"
            case Kind.PROTOCOL:
                return f"kamiyo://protocols/{self.key}/incidents"
            case Kind.CHAIN:
                return f"kamiyo://chains/{self.key}/incidents"
            case Kind.ADDRESS:
                return f"kamiyo://addresses/{self.key}/incidents"
            case Kind.ALERT:
                return f"kamiyo://alerts/{quote(self.key, safe='')}"


def parse(uri: str) -> ResourceRef | None:
    """The resource a URI names, in canonical form; None for anything else (including a
    chain, protocol or address that does not parse)."""
    if not uri.startswith(SCHEME):
        return None
    parts = uri[len(SCHEME) :].split("/")
    try:
        match parts:
            case ["exploits", "recent"]:
                return ResourceRef(Kind.RECENT)
            case ["exploits", exploit_id] if exploit_id:
                return ResourceRef(Kind.EXPLOIT, unquote(exploit_id))
            case ["protocols", protocol, "incidents"]:
                key = name_key(unquote(protocol))
                return ResourceRef(Kind.PROTOCOL, key) if key else None
            case ["chains", chain, "incidents"]:
                return ResourceRef(Kind.CHAIN, normalize_chain(unquote(chain)))
            case ["addresses", address, "incidents"]:
                return ResourceRef(Kind.ADDRESS, normalize_address(unquote(address)))
            case ["alerts", alert_id] if alert_id:
                return ResourceRef(Kind.ALERT, unquote(alert_id))
    except ValueError:
        return None
    return None


def alert_ref(alert_id: str) -> ResourceRef:
    return ResourceRef(Kind.ALERT, alert_id)


def refs_of(incident: intel.Incident) -> set[ResourceRef]:
    """Every resource whose contents an incident's creation or change may alter."""
    refs = {ResourceRef(Kind.RECENT), ResourceRef(Kind.EXPLOIT, incident.id)}
    for name in (incident.protocol, *incident.aliases):
        if key := name_key(name):
            refs.add(ResourceRef(Kind.PROTOCOL, key))
    refs.update(ResourceRef(Kind.CHAIN, chain) for chain in incident.chains)
    for fact in incident.addresses:
        try:
            refs.add(ResourceRef(Kind.ADDRESS, normalize_address(fact.address)))
        except ValueError:
            continue
    return refs
