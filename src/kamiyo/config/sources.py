"""How KAMIYO reads the public sources it refreshes: the fetch layer's limits, which sources
run, where they live, and how often a running server refreshes them."""

import json
import re
from typing import Annotated

from pydantic import AnyHttpUrl, BeforeValidator, Field, field_validator
from pydantic_settings import NoDecode

from kamiyo.config.base import Section, json_setting, section_config

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")
_DURATION_USE = "write a duration such as 90s, 15m, 1h or 1h30m (s, m, h, d), or nothing for none"


def parse_duration(text: str) -> float | None:
    """Seconds in a duration such as ``15m``, ``1h30m`` or ``90s``; None for an empty one.

    A bare number is seconds. Raises ValueError (a message that says what to write) otherwise.
    """
    compact = text.strip().lower().replace(" ", "")
    if not compact:
        return None
    if re.fullmatch(r"\d+(?:\.\d+)?", compact):
        seconds = float(compact)
    elif _DURATION.fullmatch(compact):
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(compact))
    else:
        raise ValueError(f"is not a duration: {_DURATION_USE}")
    if seconds <= 0:
        raise ValueError(f"is not longer than zero: {_DURATION_USE}")
    return seconds


def _duration(value: object) -> object:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and value <= 0:
        raise ValueError(f"is not longer than zero: {_DURATION_USE}")
    return value


def _names(value: object) -> object:
    """A JSON list, or names separated by commas (``rekt,slowmist``)."""
    if isinstance(value, str) and not value.lstrip().startswith("["):
        return [name.strip() for name in value.split(",") if name.strip()]
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(
                'is not a JSON list: write it as ["rekt", "slowmist"] or rekt,slowmist'
            ) from None
    return value


class SourceSettings(Section):
    """The public sources ``kamiyo ingest`` and the refresh read, and how politely."""

    model_config = section_config("KAMIYO_SOURCES_")

    timeout_s: float = Field(
        default=20, gt=0, description="Seconds to connect, and between bytes of an answer."
    )
    attempts: int = Field(
        default=4, ge=1, le=20, description="Tries per document on 429, 5xx and network errors."
    )
    backoff_s: float = Field(
        default=1.0, ge=0, description="First backoff between tries; it doubles, with jitter."
    )
    backoff_cap_s: float = Field(default=30, ge=0, description="The longest backoff.")
    retry_after_cap_s: float = Field(
        default=120,
        ge=0,
        description="The longest Retry-After honoured; a source asking for more fails at once.",
    )
    min_interval_s: float = Field(
        default=1.0, ge=0, description="Seconds between two requests to one host."
    )
    # DeFiLlama's /protocols, the largest document read, is some megabytes: room to grow, while
    # a broken or hostile source cannot fill the memory.
    max_document_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="The largest document read (bytes)."
    )
    allow_private: bool = Field(
        default=False,
        description="Fetch from loopback, private and link-local addresses (mirrors on the "
        "local network, tests); off, such URLs are refused.",
    )
    disabled: Annotated[list[str], NoDecode, BeforeValidator(_names)] = Field(
        default_factory=list, description="Sources the refresh leaves out, e.g. rekt,slowmist."
    )
    urls: Annotated[
        dict[str, str], NoDecode, json_setting('{"rekt": "https://mirror.example/rekt.xml"}')
    ] = Field(default_factory=dict, description="Another URL per source name (a mirror).")
    refresh_every: Annotated[float | None, BeforeValidator(_duration)] = Field(
        default=None,
        description="How often a running server refreshes every source (15m, 1h, …); unset: "
        "never (run `kamiyo ingest`).",
    )
    stale_after: Annotated[float | None, BeforeValidator(_duration)] = Field(
        default=None,
        description="/readyz fails when no source has refreshed successfully for this long "
        "(6h, 1d, …); unset: data age is reported, never failed.",
    )

    @field_validator("urls")
    @classmethod
    def _http_urls(cls, urls: dict[str, str]) -> dict[str, str]:
        for name, url in urls.items():
            try:
                AnyHttpUrl(url)
            except ValueError:
                raise ValueError(
                    f"is not an http(s) URL for {name}: write "
                    '{"rekt": "https://mirror.example/rekt.xml"}'
                ) from None
        return urls
