"""Prices: what one call costs in USDC, and how a price is put in words.

Each operation declares its own price in the catalogue (service/catalogue.py); this module says
what a price is. Amounts are atomic USDC units (6 decimals: 10_000 is $0.01) and the same on
every network. A price is fixed, or banded by the size of the answer asked for (the ``limit``
argument), the way the tiers are banded by max results. A price may also offer packs: one
payment for a number of calls of the tool, redeemed with a bundle token (payments/bundles.py).
"""

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from pydantic import BaseModel, Field

from kamiyo.payments.networks import USDC_DECIMALS

# A paid call sees at most this many records (DESIGN.md, "x402 per call").
PAID_MAX_RESULTS = 50
# How long a bundle's calls stay usable after it is bought.
BUNDLE_LIFETIME = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Band:
    up_to: int  # the largest ``limit`` this band covers
    amount: int


@dataclass(frozen=True, slots=True)
class Pack:
    calls: int
    amount: int  # for all the calls together


@dataclass(frozen=True, slots=True)
class Price:
    amount: int  # for a call without a size, or the smallest band
    bands: tuple[Band, ...] = ()
    packs: tuple[Pack, ...] = ()

    def pack(self, calls: int) -> Pack | None:
        return next((pack for pack in self.packs if pack.calls == calls), None)

    @property
    def pack_max_results(self) -> int:
        """The records a call paid from a pack may ask for: the smallest band's, if banded."""
        return self.bands[0].up_to if self.bands else PAID_MAX_RESULTS

    def for_size(self, size: int | None) -> int:
        """The price of a call asking for ``size`` records (None: the query's default)."""
        if not self.bands or size is None:
            return self.amount
        size = min(max(size, 1), PAID_MAX_RESULTS)
        return next((band.amount for band in self.bands if size <= band.up_to), self.amount)

    def describe(self) -> str:
        """In words, for tool descriptions: "$0.05", "$0.01 for up to 10 results, ..."."""
        if not self.bands:
            return usd(self.amount)
        return ", ".join(
            f"{usd(band.amount)} for up to {band.up_to} results" for band in self.bands
        )


def usd(amount: int) -> str:
    """Atomic USDC as dollars for people: 10000 -> "$0.01", 5000 -> "$0.005"."""
    dollars = Decimal(amount).scaleb(-USDC_DECIMALS).normalize()
    text = f"{dollars:f}"
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


class PricedBand(BaseModel):
    up_to_results: int
    amount: str = Field(description="Atomic USDC units (6 decimals).")
    usd: str


class PricedPack(BaseModel):
    calls: int
    amount: str = Field(description="Atomic USDC units for all the calls together.")
    usd: str
    usd_per_call: str
    max_results: int = Field(description="The most records each of these calls returns.")
    valid_days: int


class ToolPrice(BaseModel):
    tool: str
    amount: str = Field(description="Atomic USDC units for a call of the default size.")
    usd: str
    bands: list[PricedBand] = Field(
        default_factory=list, description="Prices by the `limit` asked for, when they vary."
    )
    packs: list[PricedPack] = Field(
        default_factory=list,
        description="Bundles: one payment for several calls of this tool, redeemed with the "
        "bundle token the paid answer returns.",
    )


def tool_price(tool: str, price: Price) -> ToolPrice:
    return ToolPrice(
        tool=tool,
        amount=str(price.amount),
        usd=usd(price.amount),
        bands=[
            PricedBand(up_to_results=band.up_to, amount=str(band.amount), usd=usd(band.amount))
            for band in price.bands
        ],
        packs=[
            PricedPack(
                calls=pack.calls,
                amount=str(pack.amount),
                usd=usd(pack.amount),
                usd_per_call=usd(pack.amount // pack.calls),
                max_results=price.pack_max_results,
                valid_days=BUNDLE_LIFETIME.days,
            )
            for pack in price.packs
        ],
    )


class AcceptedPayment(BaseModel):
    scheme: str
    network: str = Field(description="CAIP-2 id.")
    label: str
    asset: str = Field(description="USDC contract (EVM) or mint (Solana).")
    pay_to: str


class PriceList(BaseModel):
    """What get_pricing answers: every priced tool and how to pay."""

    enabled: bool = Field(description="Whether this server takes x402 payments at all.")
    currency: str = "USDC"
    decimals: int = USDC_DECIMALS
    tools: list[ToolPrice]
    free_tools: list[str] = Field(description="Tools that never ask for a payment.")
    accepts: list[AcceptedPayment]
    paid_max_results: int = PAID_MAX_RESULTS
    how_to_pay: str
