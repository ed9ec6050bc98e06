"""What a request may name: tool and prompt names, resource URIs and prompt arguments are
bounded, and checked before anything looks them up, matches them against a template, logs them
or says them back.

A name or URI past its bound names nothing we serve; the refusal repeats only its first
``SHOWN`` characters and says the bound, so one request cannot make megabytes of answer or log.
"""

from collections.abc import Mapping
from typing import Any, Final

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, METHOD_NOT_FOUND

# Our longest tool or prompt name has 25 characters, our longest resource URI 146 (an exploit
# id has at most 128); prompt arguments feed tool arguments that are bounded at 200 or fewer.
MAX_NAME: Final = 128
MAX_URI: Final = 256
MAX_PROMPT_ARGUMENT: Final = 256
SHOWN: Final = 128


def shown(value: str) -> str:
    """``value`` as a refusal repeats it: its first ``SHOWN`` characters."""
    return value if len(value) <= SHOWN else value[:SHOWN] + "…"


def too_long(what: str, value: str, limit: int, subject: str = "this one") -> str | None:
    """The sentence (without its full stop) refusing ``value`` when it is longer than
    ``limit``, else None: ``what`` are the things bounded, ``subject`` names this one."""
    if len(value) <= limit:
        return None
    return f"{what} are at most {limit:,} characters; {subject} has {len(value):,} ({shown(value)})"


class RequestBounds:
    """Server middleware (it runs before the SDK validates or routes a request): refuses an
    oversized method with METHOD_NOT_FOUND (the SDK would send it back whole as the error's
    data), oversized resource URIs, prompt names and prompt arguments with INVALID_PARAMS, and
    unknown prompts (the caller's mistake, not a crash). Oversized tool names are answered by
    ``CatalogueServer.call_tool``, as a tool error like any unknown tool."""

    def __init__(self, server: MCPServer) -> None:
        self._server = server
        self._prompts: set[str] | None = None

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        problem = too_long("Method names", ctx.method, MAX_NAME)
        if problem is not None:
            raise MCPError(METHOD_NOT_FOUND, problem + ".")
        params = ctx.params
        if isinstance(params, Mapping):
            if ctx.method == "resources/read":
                _refuse_long(params.get("uri"), "Resource URIs", MAX_URI)
            elif ctx.method == "prompts/get":
                await self._check_prompt(params)
        return await call_next(ctx)

    async def _check_prompt(self, params: Mapping[str, Any]) -> None:
        name = params.get("name")
        _refuse_long(name, "Prompt names", MAX_NAME)
        if self._prompts is None:
            self._prompts = {prompt.name for prompt in await self._server.list_prompts()}
        if isinstance(name, str) and name not in self._prompts:
            raise MCPError(
                INVALID_PARAMS,
                f"Unknown prompt: {name}. Prompts: {', '.join(sorted(self._prompts))}.",
            )
        arguments = params.get("arguments")
        if isinstance(arguments, Mapping):
            for key, value in arguments.items():
                _refuse_long(key, "Prompt argument names", MAX_NAME)
                _refuse_long(value, "Prompt arguments", MAX_PROMPT_ARGUMENT, str(key))


def _refuse_long(value: object, what: str, limit: int, subject: str = "this one") -> None:
    if isinstance(value, str):
        problem = too_long(what, value, limit, subject)
        if problem is not None:
            raise MCPError(INVALID_PARAMS, problem + ".")
