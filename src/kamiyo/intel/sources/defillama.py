"""DeFiLlama hacks: the ``/hacks`` JSON array (https://api.llama.fi/hacks) as source reports.

Each element is one incident: ``date`` (unix seconds), ``name``, ``classification``,
``technique``, ``amount`` (USD), ``chain`` (chain names), ``bridgeHack``, ``targetType``,
``source`` (a reference URL, empty on the live server), ``returnedFunds`` (USD or null),
``defillamaId`` (the protocol's id in ``/protocols``, or null), ``parentProtocolId``,
``language``.

Source ids: a hack has no id of its own, so ``source_id`` is formed from the two fields that
identify it, the UTC day and the name: ``YYYYMMDD-<name as a slug>`` ("20240322-super-sushi-
samurai"). A second hack of the same name on the same day gets ``-2`` (in array order). No hash
or other made-up key is used: if DeFiLlama renames a hack or corrects its date, the report comes
back under a new id and entity resolution attaches it to the same incident by name and date.

An ``amount`` of 0 or null leaves the loss unknown: DeFiLlama gives no way to tell "nothing
was taken" from "not known". The protocol registry is in ``defillama_protocols``.
"""

import datetime as dt
import logging
from typing import Any

from pydantic import ValidationError

from kamiyo.intel.reports import SourceReport
from kamiyo.intel.sources._common import (
    BadItemError,
    ChainNames,
    DocumentAdapter,
    UniqueIds,
    identifier,
    invalid_fields,
    is_url,
    json_kind,
    load_json,
    number,
    skip,
    slug,
    text,
)
from kamiyo.intel.sources.base import Collected, SourceFormatError, SourceInfo

log = logging.getLogger(__name__)

LICENCE = "No data licence published (free public API; terms of use not found)"
INFO = SourceInfo(
    name="defillama",
    title="DeFiLlama hacks",
    url="https://api.llama.fi/hacks",
    licence=LICENCE,
    attribution="Hacks data from DeFiLlama (https://defillama.com/hacks)",
)

# targetType words and the report kind they state; anything else stated is "other".
_KINDS = (
    ("bridge", "bridge"),
    ("cex", "cex"),
    ("centrali", "cex"),
    ("wallet", "wallet"),
    ("gaming", "gaming"),
    ("game", "gaming"),
    ("metaverse", "gaming"),
    ("defi", "defi"),
    ("dex", "defi"),
)


def _kind(target_type: str | None, bridge_hack: object) -> str | None:
    if bridge_hack is True:
        return "bridge"
    if target_type is None:
        return None
    lowered = target_type.lower()
    return next((kind for word, kind in _KINDS if word in lowered), "other")


def _attack(classification: str | None, technique: str | None) -> str | None:
    # The technique is the specific wording ("Private Key Compromised"); the classification
    # ("Infrastructure") is the family it belongs to.
    if technique and classification:
        return f"{technique} ({classification})"
    return technique or classification


def _day(value: object) -> dt.date:
    seconds = number(value)
    if seconds is None:
        raise BadItemError("no date")
    try:
        return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).date()
    except (OverflowError, OSError, ValueError):
        raise BadItemError("date out of range") from None


def _report(row: dict[str, Any], chains: ChainNames, ids: UniqueIds) -> SourceReport:
    name = text(row.get("name"))
    if name is None:
        raise BadItemError("no name")
    day = _day(row.get("date"))
    name_slug = slug(name)
    if not name_slug:
        raise BadItemError("the name has no letters or digits to form an id from")
    amount = number(row.get("amount"))
    loss = amount if amount is not None and amount > 0 else None
    returned = number(row.get("returnedFunds"))
    if returned is not None and returned < 0:
        returned = None
    reference = text(row.get("source"))  # a URL in DeFiLlama's docs, "" on the live server
    names = row.get("chain")
    return SourceReport(
        source=INFO.name,
        source_id=ids(f"{day:%Y%m%d}-{name_slug}"),
        date=day,
        protocol=name,
        kind=_kind(text(row.get("targetType")), row.get("bridgeHack")),
        chains=chains.slugs(names if isinstance(names, list) else []),
        loss_usd=loss,
        loss_usd_basis="usd" if loss is not None else None,
        funds_returned_usd=returned,
        funds_returned=None if returned is None else returned > 0,
        attack_type_raw=_attack(text(row.get("classification")), text(row.get("technique"))),
        references=[reference] if is_url(reference) else [],
        defillama_id=identifier(row.get("defillamaId")),
    )


def parse_hacks(body: bytes) -> Collected:
    """Every hack in a ``/hacks`` body; a bad element is counted in ``failed`` and logged."""
    rows = load_json(body, INFO.name)
    if not isinstance(rows, list):
        raise SourceFormatError(
            f"{INFO.name}: expected a JSON array of hacks, found a JSON {json_kind(rows)}"
        )
    collected = Collected(items_seen=len(rows))
    chains = ChainNames(INFO.name, log)
    ids = UniqueIds()
    for index, row in enumerate(rows):
        label = f"hack #{index}"
        try:
            if not isinstance(row, dict):
                raise BadItemError("not a JSON object")
            if isinstance(row.get("name"), str):
                label = f"hack #{index} ({row['name'][:60]})"
            collected.reports.append(_report(row, chains, ids))
        except BadItemError as bad:
            skip(collected, log, INFO.name, label, str(bad))
        except ValidationError as error:
            skip(collected, log, INFO.name, label, invalid_fields(error))
    chains.log_unknown()
    return collected


ADAPTER = DocumentAdapter(INFO, parse_hacks)
