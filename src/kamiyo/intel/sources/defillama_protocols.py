"""DeFiLlama's protocol registry: the ``/protocols`` JSON array as protocol records.

A module of its own, next to ``defillama`` (hacks), because it is a source of its own: another
document, another ``--source`` name, records of another kind (``ProtocolRecord``, no incidents)
and its own freshness. Licence and attribution are DeFiLlama's, declared once in ``defillama``.

Read per element: ``slug`` (the registry's key), ``name``, ``id`` (what hacks carry as
``defillamaId``), ``parentProtocol`` ("parent#balancer", kept as "balancer"), ``category``,
``chains``, ``url``, ``audits``, ``audit_links``, ``audit_note``, ``forkedFrom`` (names),
``oracles`` together with the names in ``oraclesBreakdown`` and ``oraclesByChain`` (DeFiLlama
deprecated the plain list in their favour), ``listedAt`` (unix seconds) and ``tvl``.

``audits`` is DeFiLlama's audit status code, given as a string: "0" no audit, "1" part of the
code may be unaudited, "2" audited, "3" a fork of an audited protocol. It is kept as that
number; it is not a count of audits. An element without a slug or a name is counted as failed:
the registry's own key is never made up.
"""

import datetime as dt
import logging
from typing import Any

from pydantic import ValidationError

from kamiyo.intel.reports import ProtocolRecord
from kamiyo.intel.sources import defillama
from kamiyo.intel.sources._common import (
    BadItemError,
    ChainNames,
    DocumentAdapter,
    identifier,
    invalid_fields,
    is_url,
    json_kind,
    load_json,
    number,
    skip,
    text,
)
from kamiyo.intel.sources.base import Collected, SourceFormatError, SourceInfo

log = logging.getLogger(__name__)

INFO = SourceInfo(
    name="defillama_protocols",
    title="DeFiLlama protocols",
    url="https://api.llama.fi/protocols",
    licence=defillama.INFO.licence,
    attribution="Protocol data from DeFiLlama (https://defillama.com)",
)
_PARENT_PREFIX = "parent#"


def _texts(value: object) -> list[str]:
    """The non-blank strings of a JSON list, stripped, in order, without repeats."""
    if not isinstance(value, list):
        return []
    return list(dict.fromkeys(t for t in (text(v) for v in value) if t is not None))


def _oracles(row: dict[str, Any]) -> list[str]:
    names = _texts(row.get("oracles"))
    breakdown = row.get("oraclesBreakdown")
    if isinstance(breakdown, list):
        names += _texts([entry.get("name") for entry in breakdown if isinstance(entry, dict)])
    by_chain = row.get("oraclesByChain")
    if isinstance(by_chain, dict):
        for chain_oracles in by_chain.values():
            names += _texts(chain_oracles)
    return list(dict.fromkeys(names))


def _audits(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    written = text(value)
    return int(written) if written is not None and written.isdigit() else None


def _listed_at(value: object) -> dt.datetime | None:
    seconds = number(value)
    if seconds is None:
        return None
    try:
        return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _parent(value: object) -> str | None:
    parent = text(value)
    if parent is not None and parent.startswith(_PARENT_PREFIX):
        parent = parent.removeprefix(_PARENT_PREFIX) or None
    return parent


def _record(row: dict[str, Any], chains: ChainNames) -> ProtocolRecord:
    slug = text(row.get("slug"))
    if slug is None:
        raise BadItemError("no slug")
    name = text(row.get("name"))
    if name is None:
        raise BadItemError("no name")
    url = text(row.get("url"))
    tvl = number(row.get("tvl"))
    names = row.get("chains")
    return ProtocolRecord(
        source=INFO.name,
        slug=slug,
        name=name,
        defillama_id=identifier(row.get("id")),
        parent=_parent(row.get("parentProtocol")),
        category=text(row.get("category")),
        chains=chains.slugs(names if isinstance(names, list) else []),
        url=url if is_url(url) else None,
        audits=_audits(row.get("audits")),
        audit_links=_texts(row.get("audit_links")),
        audit_note=text(row.get("audit_note")),
        forked_from=_texts(row.get("forkedFrom")),
        oracles=_oracles(row),
        listed_at=_listed_at(row.get("listedAt")),
        tvl_usd=tvl if tvl is not None and tvl >= 0 else None,
    )


def parse_protocols(body: bytes) -> Collected:
    """Every protocol in a ``/protocols`` body; a bad element is counted and logged."""
    rows = load_json(body, INFO.name)
    if not isinstance(rows, list):
        raise SourceFormatError(
            f"{INFO.name}: expected a JSON array of protocols, found a JSON {json_kind(rows)}"
        )
    collected = Collected(items_seen=len(rows))
    chains = ChainNames(INFO.name, log)
    for index, row in enumerate(rows):
        label = f"protocol #{index}"
        try:
            if not isinstance(row, dict):
                raise BadItemError("not a JSON object")
            if isinstance(row.get("name"), str):
                label = f"protocol #{index} ({row['name'][:60]})"
            collected.protocols.append(_record(row, chains))
        except BadItemError as bad:
            skip(collected, log, INFO.name, label, str(bad))
        except ValidationError as error:
            skip(collected, log, INFO.name, label, invalid_fields(error))
    # The registry names hundreds of chains: one line for all that KAMIYO does not know.
    chains.log_unknown(one_line=True)
    return collected


ADAPTER = DocumentAdapter(INFO, parse_protocols)
