"""Which explorer each chain gets (the defaults, the operator's URLs, the key), and the URLs and
chains refused, each with a sentence saying what to change; the settings they come from."""

import pytest
from pydantic import SecretStr, ValidationError

from kamiyo.config import ExplorerSettings, Settings, describe_settings_error
from kamiyo.explorers import (
    BLOCKSCOUT,
    ETHERSCAN_FREE,
    ExplorerNotConfiguredError,
    deadline_in,
    open_explorers,
)
from tests.explorers.explorer_server import Options

pytestmark = pytest.mark.anyio


async def test_without_a_key_the_defaults_are_blockscout_instances() -> None:
    async with open_explorers(Options(defaults=True, allow_private=False)) as explorers:
        assert explorers.chains == ("base", "ethereum", "optimism")
        assert explorers.provider("eth") == "eth.blockscout.com"
        assert explorers.provider("base") == "base.blockscout.com"
        assert not explorers.supports("bsc")


async def test_with_a_key_etherscan_serves_the_chains_its_free_tier_serves() -> None:
    options = Options(defaults=True, etherscan_api_key=SecretStr("k"), allow_private=False)
    async with open_explorers(options) as explorers:
        assert set(explorers.chains) == ETHERSCAN_FREE | set(BLOCKSCOUT)
        assert explorers.provider("ethereum") == "api.etherscan.io"
        assert explorers.provider("arbitrum") == "api.etherscan.io"
        assert explorers.provider("base") == "base.blockscout.com"  # not free on Etherscan


async def test_without_defaults_only_the_named_urls_are_read() -> None:
    options = Options(defaults=False, urls={"bsc": "https://bsc.example/api"})
    async with open_explorers(options) as explorers:
        assert explorers.chains == ("bsc",)


async def test_the_operators_urls_add_chains_and_turn_defaults_off() -> None:
    options = Options(
        defaults=True,
        urls={"bnb": "https://bsc.example/api", "base": "", "optimism": " "},
        allow_private=False,
    )
    async with open_explorers(options) as explorers:
        assert explorers.chains == ("bsc", "ethereum")
        assert explorers.provider("bsc") == "bsc.example"


async def test_a_chain_without_an_explorer_says_how_to_configure_one() -> None:
    async with open_explorers(Options(urls={"ethereum": "", "base": "", "optimism": ""})) as ex:
        assert ex.chains == ()
        with pytest.raises(ExplorerNotConfiguredError, match="no explorer is configured for bsc"):
            await ex.history("0x" + "1" * 40, "bsc", deadline=deadline_in(1))
        with pytest.raises(ExplorerNotConfiguredError, match="KAMIYO_SOLANA_RPC_URLS"):
            await ex.history("11111111111111111111111111111112", "solana", deadline=deadline_in(1))


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (Options(urls={"ethereum": "http://127.0.0.1:8/api"}, allow_private=False),
         "the explorer URL for 127.0.0.1:8 points at a loopback or private address; set "
         "KAMIYO_EXPLORER_ALLOW_PRIVATE=true"),
        (Options(urls={"base": "http://10.0.0.1/api"}, allow_private=False), "private address"),
        (Options(solana_rpc_urls=["http://localhost:8899"], allow_private=False),
         "the Solana RPC URL for localhost:8899 points at a local name"),
        (Options(urls={"solana": "https://x.example/api"}), "solana is not an EVM chain"),
        (Options(urls={"atlantis": "https://x.example/api"}), "not a chain name KAMIYO knows"),
        (Options(urls={"base": "ftp://x.example/api"}), "explorer URLs must be http"),
    ],
)  # fmt: skip
def test_unusable_urls_and_chains_are_refused(options: Options, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        open_explorers(options)


async def test_the_settings_section_is_what_open_explorers_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAMIYO_EXPLORER_URLS", '{"bsc": "https://bsc.example/api"}')
    monkeypatch.setenv("KAMIYO_ETHERSCAN_API_KEY", "secret-key")
    monkeypatch.setenv("KAMIYO_EXPLORER_DEFAULTS", "true")  # the tests turn them off
    section = Settings(_env_file=None).explorers
    assert isinstance(section, ExplorerSettings)
    assert "secret-key" not in repr(section)
    async with open_explorers(section) as explorers:
        assert "bsc" in explorers.chains
        assert explorers.provider("polygon") == "api.etherscan.io"


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("KAMIYO_EXPLORER_URLS", '{"base": "base.blockscout.com"}',
         "KAMIYO_EXPLORER_URLS is not an http(s) URL for base"),
        ("KAMIYO_EXPLORER_URLS", "{base: 1}", "KAMIYO_EXPLORER_URLS is not valid JSON"),
        ("KAMIYO_EXPLORER_URLS", '{"atlantis": "https://a.example/api"}',
         "KAMIYO_EXPLORER_URLS: names 'atlantis', which is not a chain KAMIYO knows"),
        ("KAMIYO_EXPLORER_URLS", '{"sol": "https://a.example/api"}',
         "KAMIYO_EXPLORER_URLS: names solana, which is not an EVM chain"),
        ("KAMIYO_SOLANA_RPC_URLS", '["nope"]', "KAMIYO_SOLANA_RPC_URLS is not an http(s) URL"),
        ("KAMIYO_EXPLORER_MAX_PAGES", "11", "KAMIYO_EXPLORER_MAX_PAGES"),
    ],
)  # fmt: skip
def test_settings_mistakes_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        ExplorerSettings(_env_file=None)
    assert describe_settings_error(caught.value).startswith(says)
