"""DeFiHackLabs loss wording (``Lost: ~$1.5M``, ``~52 BNB``, ``3,008 USDT``) read as USD.

The rules are the ones the bundled CSV states (``data/defihacklabs/README.md``): a figure
marked as dollars counts as ``usd``; otherwise a stablecoin amount counts 1:1 as
``stablecoin``; otherwise a bare number with no unit at all (``~65K``) is taken as
``assumed_usd``; a loss given only in other tokens (``~52 BNB``) has no USD figure. Where a
text holds several figures the first of the best kind wins (``~8.8 WBNB (~5.3K USD)`` is
5,300 usd; ``53.2445 WBTC and 99,976.29 USDT`` is 99,976.29 stablecoin). Token prices are
never looked up: unknown stays unknown.
"""

import re
from dataclasses import dataclass

from kamiyo.intel.reports import LossBasis

# Tokens pegged to one US dollar. USDs (Sperax) and algorithmic or depegged coins are left
# out on purpose: their amounts are not dollars at the time of most attacks.
STABLECOINS = frozenset(
    {
        "usdt",
        "usdc",
        "usdc.e",
        "usdbc",
        "busd",
        "busdt",
        "bsc-usd",
        "dai",
        "tusd",
        "usdp",
        "fdusd",
        "frax",
        "lusd",
        "gusd",
        "pyusd",
        "usde",
        "crvusd",
        "usdt0",
    }
)
_DOLLAR_UNITS = frozenset({"usd", "us$", "usd$", "dollar", "dollars", "$"})
_MULTIPLIERS = {
    "k": 1e3,
    "thousand": 1e3,
    "m": 1e6,
    "mm": 1e6,
    "million": 1e6,
    "millions": 1e6,
    "b": 1e9,
    "bn": 1e9,
    "billion": 1e9,
}

# One figure: an optional dollar sign (``$``, ``US$``, ``$~``), the number (thousands commas,
# or a decimal comma as in ``~6,5M``), an optional multiplier, then the unit if one follows.
_FIGURE = re.compile(
    r"(?P<dollar>(?:US)?\$\s*[~≈]?\s*)?"
    r"(?<![\w.,])(?P<number>\d+,(?:\d{1,2}|\d{4,})(?!\d)|\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)"
    r"(?:\s*(?P<mult>thousand|millions?|billion|bn|mm|[kmb])(?![a-z]))?\+?"
    r"\s*(?P<unit>US\$|\$(?![\w.~≈])|\$?[A-Za-z][A-Za-z0-9.\-]*\$?)?",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class _Figure:
    amount: float
    kind: str  # "usd", "stablecoin", "bare" or "token"


def _figures(text: str) -> list[_Figure]:
    figures = []
    for match in _FIGURE.finditer(text):
        number = match["number"]
        if re.fullmatch(r"\d+,\d+", number) and not re.fullmatch(r"\d+,\d{3}", number):
            number = number.replace(",", ".")  # a decimal comma: "~6,5M"
        amount = float(number.replace(",", ""))
        if match["mult"]:
            amount *= _MULTIPLIERS[match["mult"].lower()]
        unit = (match["unit"] or "").lower()
        bare_unit = unit.strip("$")
        if match["dollar"] or unit in _DOLLAR_UNITS or bare_unit in _DOLLAR_UNITS:
            kind = "usd"
        elif bare_unit in STABLECOINS:
            kind = "stablecoin"
        elif not unit:
            kind = "bare"
        else:
            kind = "token"
        figures.append(_Figure(amount, kind))
    return figures


def parse_loss(text: str | None) -> tuple[float | None, LossBasis | None]:
    """The USD loss ``text`` states and how it was read, or ``(None, None)``."""
    if not text:
        return None, None
    figures = [f for f in _figures(text) if f.amount > 0]
    for kind in ("usd", "stablecoin"):
        found = next((f for f in figures if f.kind == kind), None)
        if found is not None:
            return round(found.amount, 2), kind
    # A bare number is a dollar figure only when nothing in the text names a token: in
    # "~95.5 K (1.14 WBTC)" the bare figure is the token's value in an unknown unit.
    if figures and all(f.kind == "bare" for f in figures) and not _NAMES_TOKEN.search(text):
        return round(figures[0].amount, 2), "assumed_usd"
    return None, None


_NAMES_TOKEN = re.compile(r"\btokens?\b|\bNFTs?\b", re.IGNORECASE)
