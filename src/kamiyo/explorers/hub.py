"""The explorers the service holds: one client per configured chain, built from plain options.

``open_explorers(options)`` takes anything with the fields of ``settings.explorers`` (the
:class:`ExplorerOptions` protocol), so this package never imports the settings (intel, which
the screening lives in, may not reach them) and tests can pass a small dataclass. One endpoint
pool per provider URL: Etherscan V2 serves every chain it serves from one URL, so its rate
limit (per key) counts all of them together.
"""

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Protocol, Self

import httpx2
from cachetools import TTLCache
from pydantic import SecretStr

from kamiyo.chains import AddressFamily, get_chain, normalize_address, normalize_tx_hash
from kamiyo.explorers.etherscan import EtherscanClient
from kamiyo.explorers.models import History, TransactionView
from kamiyo.explorers.providers import default_urls, native_symbol, speaks_etherscan_v2
from kamiyo.explorers.scan import Progress, Scan
from kamiyo.explorers.solana import SolanaClient
from kamiyo.outbound import EndpointPool, http_endpoints, parse_url, redact

ATTEMPTS = 4  # tries per request: rate-limit answers, 5xx and network errors are retried
COOLDOWN_S = 1.0
CACHED_HISTORIES = 1024  # a history of 10,000 transactions is a few MB: bounded by count
SOLANA_CHAIN = "solana"


class ExplorerOptions(Protocol):
    """What :func:`open_explorers` reads (``kamiyo.config.ExplorerSettings`` has it all)."""

    @property
    def defaults(self) -> bool: ...
    @property
    def urls(self) -> Mapping[str, str]: ...
    @property
    def etherscan_api_key(self) -> SecretStr | None: ...
    @property
    def solana_rpc_urls(self) -> Sequence[str]: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def calls_per_second(self) -> float: ...
    @property
    def max_pages(self) -> int: ...
    @property
    def allow_private(self) -> bool: ...
    @property
    def cache_ttl_s(self) -> float: ...


class ExplorerNotConfiguredError(ValueError):
    """No explorer is configured for the chain asked about."""


def _refusal(url: httpx2.URL) -> str | None:
    """Why ``url`` points off the public internet (None: it does not, as far as its name
    shows). The URLs come from the operator's settings, not from callers, so a name that
    resolves to a private address is the operator's choice and is not looked up."""
    host = url.host.lower().strip("[]")
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return "a local name"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return None if address.is_global else "a loopback or private address"


class Explorers:
    """History and transaction reads per chain; ``async with`` closes every client."""

    def __init__(
        self,
        evm: Mapping[str, EtherscanClient],
        solana: SolanaClient | None,
        pools: Sequence[EndpointPool[httpx2.AsyncClient]],
        *,
        max_pages: int,
        cache_ttl_s: float = 0,
    ) -> None:
        self._max_pages = max_pages
        # Histories read whole or up to a page cap (no failure, no budget cut), by address,
        # chain and cap: a screen repeated or continued with a cursor reads nothing again.
        self._cache: TTLCache[tuple[str, str, int], History] | None = (
            TTLCache(maxsize=CACHED_HISTORIES, ttl=cache_ttl_s) if cache_ttl_s > 0 else None
        )
        self._evm = dict(evm)
        self._solana = solana
        self._pools = list(pools)

    @property
    def chains(self) -> tuple[str, ...]:
        """The chain slugs whose history can be read, sorted."""
        return tuple(sorted([*self._evm, *([SOLANA_CHAIN] if self._solana else [])]))

    def supports(self, chain: str) -> bool:
        return get_chain(chain).slug in self.chains

    def provider(self, chain: str) -> str:
        """The provider a chain is read from (``host[:port]``)."""
        return self._client(get_chain(chain).slug).provider

    async def history(
        self,
        address: str,
        chain: str,
        *,
        deadline: float,
        max_pages: int | None = None,
        progress: Progress | None = None,
    ) -> History:
        """``address``'s transfers and approvals on ``chain`` until ``deadline`` (a
        :func:`time.monotonic` instant; see :func:`kamiyo.explorers.deadline_in`).

        ``max_pages`` lowers the configured cap of pages per list for this call (a tier's
        share of work); ``progress`` is called with the records read so far after each page.
        ValueError for an address of another family or an unknown chain;
        :class:`ExplorerNotConfiguredError` for a chain with no explorer.
        """
        slug = get_chain(chain).slug
        normal = normalize_address(address, slug)
        client = self._client(slug)
        pages = self._max_pages if max_pages is None else min(max_pages, self._max_pages)
        key = (normal, slug, pages)
        if self._cache is not None and (kept := self._cache.get(key)) is not None:
            return kept
        history = await client.history(normal, Scan(deadline, pages, progress))
        if self._cache is not None and not history.failed:
            self._cache[key] = history
        return history

    async def transaction(self, tx_hash: str, chain: str, *, deadline: float) -> TransactionView:
        """One transaction on ``chain``; ValueError for a hash of the other family."""
        known = get_chain(chain)
        normal = normalize_tx_hash(tx_hash)
        if normal.startswith("0x") != (known.family is AddressFamily.EVM):
            raise ValueError(
                f"not a transaction hash on {known.slug}: "
                + (
                    "expected 0x and 64 hex digits"
                    if known.family is AddressFamily.EVM
                    else "expected a base58 transaction signature"
                )
            )
        return await self._client(known.slug).transaction(normal, Scan(deadline, 1))

    def _client(self, slug: str) -> EtherscanClient | SolanaClient:
        if slug == SOLANA_CHAIN and self._solana is not None:
            return self._solana
        client = self._evm.get(slug)
        if client is None:
            configured = ", ".join(self.chains) or "none"
            raise ExplorerNotConfiguredError(
                f"no explorer is configured for {slug} (configured: {configured}); set "
                "KAMIYO_EXPLORER_URLS (EVM chains) or KAMIYO_SOLANA_RPC_URLS (Solana)"
            )
        return client

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _pool(url: str, options: ExplorerOptions, service: str) -> EndpointPool[httpx2.AsyncClient]:
    return EndpointPool(
        http_endpoints([url], timeout_s=options.timeout_s, kind="explorer"),
        service=service,
        requests_per_second=options.calls_per_second,
        timeout_s=options.timeout_s * ATTEMPTS,
        attempts=ATTEMPTS,
        cooldown_s=COOLDOWN_S,
    )


def _check_url(url: str, what: str, allow_private: bool) -> httpx2.URL:
    parsed = parse_url(url, kind=what)
    refusal = None if allow_private else _refusal(parsed)
    if refusal is not None:
        raise ValueError(
            f"the {what} URL for {redact(parsed)} points at {refusal}; set "
            "KAMIYO_EXPLORER_ALLOW_PRIVATE=true to read from it"
        )
    return parsed


def check_explorers(options: ExplorerOptions) -> None:
    """The ValueError :func:`open_explorers` would raise, without opening a client (which
    loads httpcore2 and the CA bundle): a server that opens them on first use still refuses
    a wrong URL at start."""
    _checked_urls(options)


def _checked_urls(options: ExplorerOptions) -> tuple[dict[str, str], dict[str, httpx2.URL]]:
    """The URL per chain and each URL parsed, every one checked."""
    key = options.etherscan_api_key.get_secret_value() if options.etherscan_api_key else ""
    chosen = default_urls(etherscan_key=bool(key)) if options.defaults else {}
    for name, url in options.urls.items():
        chain = get_chain(name)
        if chain.family is not AddressFamily.EVM:
            raise ValueError(
                f"{chain.slug} is not an EVM chain: explorer URLs are for EVM chains "
                "(Solana is read through KAMIYO_SOLANA_RPC_URLS)"
            )
        if url.strip():
            chosen[chain.slug] = url.strip()
        else:
            chosen.pop(chain.slug, None)
    # Every URL is checked before any client opens, so a refusal leaves nothing to close.
    parsed_urls = {
        url: _check_url(url, "explorer", options.allow_private) for url in chosen.values()
    }
    for url in options.solana_rpc_urls:
        _check_url(url, "Solana RPC", options.allow_private)
    return chosen, parsed_urls


def open_explorers(options: ExplorerOptions) -> Explorers:
    """Clients for every chain with an explorer: the defaults (see ``providers.py``) under the
    operator's ``urls`` (an empty URL turns a default off). ValueError naming the chain for
    an unknown or non-EVM chain, a URL that is not http(s), or a private one not allowed."""
    chosen, parsed_urls = _checked_urls(options)
    key = options.etherscan_api_key.get_secret_value() if options.etherscan_api_key else ""
    pools: dict[str, EndpointPool[httpx2.AsyncClient]] = {}
    clients: dict[str, EtherscanClient] = {}

    def redact_key(text: str) -> str:
        return text.replace(key, "[key]") if key else text

    for slug, url in sorted(chosen.items()):
        parsed = parsed_urls[url]
        etherscan = speaks_etherscan_v2(url)
        if url not in pools:
            full = parsed.copy_merge_params({"apikey": key}) if etherscan and key else parsed
            pools[url] = _pool(str(full), options, "explorer")
        chain = get_chain(slug)
        clients[slug] = EtherscanClient(
            pools[url],
            chain=chain,
            provider=redact(parsed),
            native_symbol=native_symbol(slug),
            chain_id=chain.evm_chain_id if etherscan else None,
            redact=redact_key,
        )
    solana = None
    all_pools = list(pools.values())
    if options.solana_rpc_urls:
        rpc = EndpointPool(
            http_endpoints(list(options.solana_rpc_urls), timeout_s=options.timeout_s, kind="RPC"),
            service="Solana RPC",
            requests_per_second=options.calls_per_second,
            timeout_s=options.timeout_s * ATTEMPTS,
            attempts=ATTEMPTS,
            cooldown_s=COOLDOWN_S,
        )
        all_pools.append(rpc)
        solana = SolanaClient(rpc, chain=SOLANA_CHAIN)
    return Explorers(
        clients,
        solana,
        all_pools,
        max_pages=options.max_pages,
        cache_ttl_s=options.cache_ttl_s,
    )
