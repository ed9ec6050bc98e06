"""The OFAC SDN digital-currency addresses, as 0xB10C's nightly extraction publishes them.

One plain-text document per asset (``sanctioned_addresses_<ASSET>.txt``: one address a line,
under the asset code OFAC wrote next to it), for the assets in :data:`ASSETS`. The adapter
reads all of them into one :class:`SanctionsList`, which replaces the stored list whole; so it
hands a list over only when every document was read: a failed fetch raises, a document that is
not an address list (an error page, a cut-off body) is a :class:`SourceFormatError`, and the
run then changes nothing. An address in a format KAMIYO cannot read is counted as failed and
left out. The list carries no date of its own: a fetched copy is dated the day it was fetched
(upstream regenerates it daily); a snapshot (the packaged one, or a folder read with
``--from``) carries its date in ``snapshot.json``.
"""

import datetime as dt
import json
import logging
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from kamiyo.chains import normalize_address
from kamiyo.intel.sources.base import (
    Collected,
    Fetch,
    FetchError,
    SanctionsList,
    SourceFormatError,
    SourceInfo,
)

log = logging.getLogger(__name__)

LIST_NAME = "ofac_sdn"
INFO = SourceInfo(
    name="ofac",
    title="OFAC SDN digital-currency addresses",
    url="https://raw.githubusercontent.com/0xB10C/ofac-sanctioned-digital-currency-addresses/lists",
    licence="Public domain (a work of the US government); extracted by 0xB10C's MIT-licensed tool",
    attribution="Sanctioned addresses from the US Treasury OFAC SDN list "
    "(https://ofac.treasury.gov), as extracted by "
    "https://github.com/0xB10C/ofac-sanctioned-digital-currency-addresses",
    bundled=True,
)
# The assets whose lists are read: the seven the packaged snapshot holds. A list for another
# asset (XMR, ZEC...) would hold addresses KAMIYO cannot read yet.
ASSETS = ("ETH", "XBT", "USDT", "TRX", "USDC", "ARB", "BSC")
SNAPSHOT_FILE = "snapshot.json"  # the packaged copy's provenance: its list name and date
_LONGEST = 128  # the stored address column's width


def file_name(asset: str) -> str:
    return f"sanctioned_addresses_{asset}.txt"


def parse_asset(body: bytes, asset: str, location: str, collected: Collected) -> list[str]:
    """The addresses of one asset's document, in their stored form.

    SourceFormatError for a document that is not such a list; an address KAMIYO cannot read is
    counted in ``collected.failed`` and logged.
    """
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise SourceFormatError(f"{location}: not an address list (not ASCII text)") from None
    if text and not text.endswith("\n"):
        # The generator ends every line, the last one too: without it the body was cut short.
        raise SourceFormatError(f"{location}: the list does not end with a line break (cut off?)")
    addresses = []
    for number, line in enumerate(text.splitlines(), start=1):
        token = line.strip()
        if not token:
            continue
        if len(token) > _LONGEST or not token.isalnum():
            raise SourceFormatError(
                f"{location}: line {number} is not an address: not an address list "
                "(an error page, or a changed format?)"
            )
        collected.items_seen += 1
        try:
            addresses.append(normalize_address(token))
        except ValueError:
            # Logged here, not through _common's helper: that module loads the feed parsers,
            # and this one is read on every start (the packaged snapshot).
            collected.failed += 1
            log.warning(
                "%s: %s line %d skipped: not an address KAMIYO reads", INFO.name, asset, number
            )
    return addresses


def _add(entries: dict[str, set[str]], addresses: list[str], asset: str) -> None:
    for address in addresses:
        entries.setdefault(address, set()).add(asset)


def _frozen(entries: dict[str, set[str]]) -> dict[str, frozenset[str]]:
    return {address: frozenset(assets) for address, assets in sorted(entries.items())}


def read_folder(folder: Path) -> tuple[SanctionsList, dict[str, list[str]]]:
    """The list in a folder of asset files and its ``snapshot.json`` (the repository's
    ``data/ofac``), and each asset's lines as written (what the packaged snapshot keeps)."""
    provenance = json.loads((folder / SNAPSHOT_FILE).read_text(encoding="utf-8"))
    collected = Collected()
    entries: dict[str, set[str]] = {}
    lines: dict[str, list[str]] = {}
    for asset in ASSETS:
        path = folder / file_name(asset)
        body = path.read_bytes()
        _add(entries, parse_asset(body, asset, str(path), collected), asset)
        lines[asset] = [line.strip() for line in body.decode("ascii").splitlines() if line.strip()]
    listed = SanctionsList(
        provenance["list"], dt.date.fromisoformat(provenance["date"]), _frozen(entries)
    )
    return listed, lines


def from_lines(name: str, date: dt.date, lines: dict[str, list[str]]) -> SanctionsList:
    """The list of a packaged snapshot: each asset's addresses as written."""
    collected = Collected()
    entries: dict[str, set[str]] = {}
    for asset, written in lines.items():
        body = "".join(f"{line}\n" for line in written).encode("ascii")
        _add(entries, parse_asset(body, asset, f"snapshot {asset}", collected), asset)
    return SanctionsList(name, date, _frozen(entries))


class OfacAdapter:
    """Fetches every asset's document under ``base`` (a URL or, with ``--from``, a folder)."""

    info = INFO

    async def collect(
        self,
        fetch: Fetch,
        base: str,
        *,
        since: dt.date | None = None,  # a list has no dates: always read whole
        seen: Callable[[str], bool] = lambda source_id: False,
    ) -> Collected:
        collected = Collected()
        entries: dict[str, set[str]] = {}
        unchanged: set[str] = set()
        for asset in ASSETS:
            document = await fetch(f"{base.rstrip('/')}/{file_name(asset)}")
            if document is None:
                unchanged.add(asset)
                collected.unchanged_documents += 1
                continue
            _add(entries, parse_asset(document.body, asset, document.location, collected), asset)
        if len(unchanged) == len(ASSETS):
            return collected  # nothing changed anywhere: nothing to replace
        if not entries and not unchanged:
            raise SourceFormatError(
                f"{INFO.name}: none of the {len(ASSETS)} lists holds an address"
            )
        date = await _snapshot_date(fetch, base) or dt.datetime.now(dt.UTC).date()
        collected.sanctions = SanctionsList(LIST_NAME, date, _frozen(entries), frozenset(unchanged))
        return collected


async def _snapshot_date(fetch: Fetch, base: str) -> dt.date | None:
    """The date a local snapshot folder's ``snapshot.json`` gives (a copy of ``data/ofac`` read
    with ``--from`` is as old as that, not as old as today); None for a URL or a folder without
    one."""
    if urllib.parse.urlsplit(base).scheme in ("http", "https"):
        return None  # upstream publishes no date: the list is as of its fetch
    location = f"{base.rstrip('/')}/{SNAPSHOT_FILE}"
    try:
        document = await fetch(location)
    except FetchError:
        return None
    if document is None:
        return None
    try:
        return dt.date.fromisoformat(json.loads(document.body)["date"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SourceFormatError(f'{location}: no date as YYYY-MM-DD under "date"') from exc


ADAPTER = OfacAdapter()
