"""``completion/complete``: what an argument of a resource template or prompt can be.

Arguments complete by their name, wherever they appear: ``protocol`` to protocol names from the
incidents, ``chain`` to chain slugs, ``exploit_id`` to incident ids (newest first); ``address``
and arguments of refs we do not serve complete to nothing (an empty list, as the SDK answers a
server without completions, and as the conformance suite expects for its fixture prompt).

Completion is not a metered call and asks nobody who is calling, so it offers only what every
caller may see: incidents past the longest data delay of any tier (the free tier's feed is a day
behind; a completion must not tell it what happened today). A database that cannot be reached
completes to nothing, as one outage in the log.
"""

import datetime as dt
import re
from collections.abc import Awaitable, Callable

from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
)
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo import outages
from kamiyo.chains import CHAINS
from kamiyo.intel.completions import Matches, incident_ids, protocol_names
from kamiyo.mcpserver.bounds import MAX_PROMPT_ARGUMENT, too_long
from kamiyo.service.state import ServerState
from kamiyo.tiers import TIERS

# The spec's cap on values in one completion.
MAX_VALUES = 100

_TEMPLATE_PARAMETER = re.compile(r"\{(\w+)\}")

Lookup = Callable[[AsyncSession, str, dt.date | None, int], Awaitable[Matches]]
FROM_DATA: dict[str, Lookup] = {"protocol": protocol_names, "exploit_id": incident_ids}
FROM_VOCABULARY = {"chain"}


def register(server: MCPServer, state: ServerState) -> None:
    completer = _Completer(server, state)

    @server.completion()  # type: ignore[untyped-decorator, no-untyped-call]  # the SDK's is untyped
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion:
        return await completer.complete(ref, argument)


def chain_slugs(prefix: str) -> Matches:
    """Chain slugs whose slug, name or an alias starts with ``prefix`` (any case), sorted."""
    typed = prefix.lower()
    slugs = sorted(
        chain.slug
        for chain in CHAINS.values()
        if any(n.lower().startswith(typed) for n in (chain.slug, chain.name, *chain.aliases))
    )
    return Matches(slugs[:MAX_VALUES], len(slugs))


def shown_to_everyone() -> dt.date | None:
    """The newest incident date every tier may see; None when no tier is delayed."""
    now = dt.datetime.now(dt.UTC)
    dates = [day for policy in TIERS.values() if (day := policy.hide_after(now)) is not None]
    return min(dates, default=None)


class _Completer:
    def __init__(self, server: MCPServer, state: ServerState) -> None:
        self._server = server
        self._state = state
        # Which arguments each ref has: our templates and prompts are fixed once registered.
        self._arguments: dict[tuple[str, str], set[str]] | None = None

    async def complete(
        self, ref: PromptReference | ResourceTemplateReference, argument: CompletionArgument
    ) -> Completion:
        problem = too_long("Completion values", argument.value, MAX_PROMPT_ARGUMENT)
        if problem is not None:
            raise MCPError(INVALID_PARAMS, problem + ".")
        named = ref.name if isinstance(ref, PromptReference) else ref.uri
        if argument.name not in (await self._arguments_of()).get((ref.type, named), set()):
            return Completion(values=[], total=0, has_more=False)
        matches = await self._matches(argument.name, argument.value)
        return Completion(
            values=matches.values,
            total=matches.total,
            has_more=matches.total > len(matches.values),
        )

    async def _matches(self, name: str, prefix: str) -> Matches:
        if name in FROM_VOCABULARY:
            return chain_slugs(prefix)
        lookup = FROM_DATA.get(name)
        if lookup is None:
            return Matches([], 0)
        try:
            async with self._state.require_runtime().sessions() as session:
                return await lookup(session, prefix, shown_to_everyone(), MAX_VALUES)
        except Exception as exc:
            if not outages.is_unreachable(exc):
                raise
            outages.DATABASE.failed(exc)
            return Matches([], 0)

    async def _arguments_of(self) -> dict[tuple[str, str], set[str]]:
        if self._arguments is None:
            arguments: dict[tuple[str, str], set[str]] = {}
            for prompt in await self._server.list_prompts():
                names = {a.name for a in prompt.arguments or []}
                arguments[("ref/prompt", prompt.name)] = names
            for template in await self._server.list_resource_templates():
                names = set(_TEMPLATE_PARAMETER.findall(template.uri_template))
                arguments[("ref/resource", template.uri_template)] = names
            self._arguments = arguments
        return self._arguments
