"""Fixtures for tests that read histories: loopback explorers in both flavours, and options for
``open_explorers`` pointing at them (the screening tests use these too)."""

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from pydantic import SecretStr

from kamiyo.explorers import BLOCKSCOUT
from tests.explorers.explorer_server import ExplorerServer

# Real attacker addresses of the bundled dataset (src/kamiyo/intel/data/bundle.json.gz).
RONIN_ATTACKER = "0x098b716b8aaf21512996dc57eb0615e2383e2f96"  # Ronin Network, 2022-03-29
EULER_ATTACKER = "0x5f259d0b76665c337c6104145894f4d1d2758b8c"  # Euler Finance, 2023-03-13
EULER_ATTACK_TX = "0xc310a0affe2169d1f6feec1c63dbc7f7c62a887fa48795d327d4d2da2d6b111d"
# The Parity multisig library of the 2017-07-19 incident (role vulnerable_contract).
PARITY_WALLET = "0xbec591de75b8699a3ba52f073428822d0bfc0d7e"
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
TEST_KEY = "test-etherscan-key-0123456789"
# KAMIYO_EXPLORER_URLS turning every default explorer off: a test reads only its own servers.
NO_DEFAULTS = dict.fromkeys(BLOCKSCOUT, "")


@dataclass(frozen=True)
class Options:
    """What ``open_explorers`` reads, as ``settings.explorers`` has it (tests' own values)."""

    urls: Mapping[str, str] = field(default_factory=dict)
    etherscan_api_key: SecretStr | None = None
    solana_rpc_urls: Sequence[str] = ()
    timeout_s: float = 2.0
    calls_per_second: float = 200.0
    max_pages: int = 10
    allow_private: bool = True


@pytest.fixture
def explorer() -> Iterator[ExplorerServer]:
    """A local Etherscan V2 (``/v2/api``, chainid required, the key ``TEST_KEY`` checked)."""
    with ExplorerServer("etherscan", api_key=TEST_KEY) as server:
        yield server


@pytest.fixture
def blockscout() -> Iterator[ExplorerServer]:
    """A local Blockscout instance (``/api``, no proxy module, JSON-RPC at ``/api/eth-rpc``)."""
    with ExplorerServer("blockscout") as server:
        yield server
