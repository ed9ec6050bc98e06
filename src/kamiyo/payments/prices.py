"""The price list: what one call of each tool costs in USDC, the one place that says so.

Amounts are atomic USDC units (6 decimals: 10_000 is $0.01) and the same on every network.
A price is fixed, or banded by the size of the answer asked for (the ``limit`` argument), the
way the tiers are banded by max results. Tools not listed here are free.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from kamiyo.payments.networks import USDC_DECIMALS

# A paid call sees at most this many records (DESIGN.md, "x402 per call").
PAID_MAX_RESULTS = 50
# Where a priced tool's ``_meta`` states its price.
PRICE_META_KEY = "kamiyo/price"


@dataclass(frozen=True, slots=True)
class Band:
    up_to: int  # the largest ``limit`` this band covers
    amount: int


@dataclass(frozen=True, slots=True)
class Price:
    amount: int  # for a call without a size, or the smallest band
    bands: tuple[Band, ...] = ()
    size_argument: str = "limit"
    default_size: int = 10

    def for_arguments(self, arguments: Mapping[str, Any]) -> int:
        if not self.bands:
            return self.amount
        size = arguments.get(self.size_argument)
        size = size if isinstance(size, int) and size > 0 else self.default_size
        size = min(size, PAID_MAX_RESULTS)
        return next((band.amount for band in self.bands if size <= band.up_to), self.amount)


PRICES: dict[str, Price] = {
    "search_exploits": Price(10_000, bands=(Band(10, 10_000), Band(PAID_MAX_RESULTS, 20_000))),
    "get_exploit": Price(5_000),
    "get_exploit_stats": Price(5_000),
    "assess_protocol_risk": Price(50_000),
    "check_wallet_interactions": Price(100_000),
}


def price_of(tool: str, arguments: Mapping[str, Any]) -> int | None:
    """The call's price in atomic USDC, or None when the tool is free."""
    price = PRICES.get(tool)
    return price.for_arguments(arguments) if price is not None else None


def usd(amount: int) -> str:
    """Atomic USDC as dollars for people: 10000 -> "$0.01", 5000 -> "$0.005"."""
    dollars = Decimal(amount).scaleb(-USDC_DECIMALS).normalize()
    text = f"{dollars:f}"
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


def describe(tool: str) -> str | None:
    """The price in words, for tool descriptions: "$0.05", "$0.01 for up to 10 results, ..."."""
    price = PRICES.get(tool)
    if price is None:
        return None
    if not price.bands:
        return usd(price.amount)
    return ", ".join(f"{usd(band.amount)} for up to {band.up_to} results" for band in price.bands)


class PricedBand(BaseModel):
    up_to_results: int
    amount: str = Field(description="Atomic USDC units (6 decimals).")
    usd: str


class ToolPrice(BaseModel):
    tool: str
    amount: str = Field(description="Atomic USDC units for a call of the default size.")
    usd: str
    bands: list[PricedBand] = Field(
        default_factory=list, description="Prices by the `limit` asked for, when they vary."
    )


def tool_prices() -> list[ToolPrice]:
    return [
        ToolPrice(
            tool=tool,
            amount=str(price.for_arguments({})),
            usd=usd(price.for_arguments({})),
            bands=[
                PricedBand(up_to_results=band.up_to, amount=str(band.amount), usd=usd(band.amount))
                for band in price.bands
            ],
        )
        for tool, price in PRICES.items()
    ]


def price_meta(tool: str) -> dict[str, Any] | None:
    """A tool's ``_meta`` price entry, so an agent knows the cost before it calls."""
    price = PRICES.get(tool)
    if price is None:
        return None
    entry = next(p for p in tool_prices() if p.tool == tool)
    return {PRICE_META_KEY: entry.model_dump(mode="json") | {"asset": "USDC", "decimals": 6}}


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
