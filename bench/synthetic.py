"""Synthetic incidents for the search benchmark (``bench/search.py``) and the bulk loader's test:
reports shaped like the real data's (chain shares, attack texts, about five incidents per
name, more in later years), and the corpus the query shapes draw their arguments from."""

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass

from kamiyo.intel.bundled import read_bundle
from kamiyo.intel.models import AddressFact
from kamiyo.intel.reports import SourceReport
from kamiyo.intel.vocabulary import AddressRole

# Chain shares of the real data, so synthetic filters are as selective as real ones.
CHAIN_WEIGHTS = {
    "bsc": 44, "ethereum": 39, "arbitrum": 5, "base": 4, "polygon": 2.5, "avalanche": 1.5,
    "optimism": 1.4, "fantom": 0.7, "linea": 0.3, "blast": 0.3, "gnosis": 0.3, "sei": 0.1,
}  # fmt: skip
SYLLABLES = [
    "ka",
    "mi",
    "yo",
    "ra",
    "fi",
    "na",
    "swa",
    "pe",
    "lo",
    "ve",
    "ne",
    "tu",
    "zo",
    "xi",
    "qua",
    "lum",
    "bit",
    "cor",
    "dex",
    "vol",
]
SUFFIXES = ["", "", "Finance", "Swap", "DAO", "Protocol", "V2", "Bridge", "Lend", "Token"]


@dataclass(frozen=True)
class Corpus:
    """What the query shapes draw their arguments from."""

    protocol_words: list[str]
    addresses: list[str]
    ids: list[str]


def synthetic_records(rows: int, seed: int) -> tuple[Iterator[SourceReport], Corpus]:
    rng = random.Random(seed)
    _, sources = read_bundle()
    attack_texts = [r.attack_type_raw for rs in sources.values() for r in rs if r.attack_type_raw]
    names = sorted(
        {
            "".join(rng.choice(SYLLABLES).capitalize() for _ in range(rng.randint(2, 4)))
            + rng.choice(SUFFIXES)
            # About five incidents per name: in the real data no name has more than six.
            for _ in range(max(rows // 5, 100))
        }
    )
    chains, weights = list(CHAIN_WEIGHTS), list(CHAIN_WEIGHTS.values())
    start = dt.date(2016, 1, 1).toordinal()
    span = dt.date(2026, 11, 1).toordinal() - start
    sample_addresses: list[str] = []
    sample_ids: list[str] = []

    def records() -> Iterator[SourceReport]:
        for n in range(rows):
            # Later years have more incidents, as in the real data.
            day = dt.date.fromordinal(start + int(span * rng.random() ** 0.6))
            protocol = rng.choice(names)
            address = f"0x{rng.getrandbits(160):040x}"
            if n % 997 == 0:
                sample_addresses.append(address)
                sample_ids.append(f"{day:%Y%m%d}_syn{n}")
            loss = round(rng.lognormvariate(12, 2.2), 2) if rng.random() < 0.8 else None
            yield SourceReport(
                source="synthetic",
                source_id=f"{day:%Y%m%d}_syn{n}",
                date=day,
                protocol=protocol,
                chains=rng.choices(chains, weights) if rng.random() < 0.98 else chains[:2],
                loss_usd=loss,
                loss_usd_basis="usd" if loss is not None else None,
                loss_text=f"~${loss:,.0f}" if loss is not None else "unknown",
                attack_type_raw=rng.choice(attack_texts),
                addresses=[
                    AddressFact(role=AddressRole.ATTACKER, chain=None, address=address),
                    AddressFact(
                        role=AddressRole.ATTACK_CONTRACT,
                        chain=None,
                        address=f"0x{rng.getrandbits(160):040x}",
                    ),
                ],
            )

    words = sorted(
        name.lower() for name in random.Random(seed).sample(names, min(2000, len(names)))
    )
    return records(), Corpus(words, sample_addresses, sample_ids)
