"""Catalogue operations run from a dashboard page, as the signed-in account.

The page is one more face of the same pipeline as the MCP tools and the REST API: it mints a
short-lived access token for the session's account (never stored, never logged) and calls
``pipeline.execute`` with it, so the gate checks the tier, counts the limits and meters the call
exactly as it does for an agent holding a key.
"""

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from kamiyo.access.gate import Refusal
from kamiyo.access.tokens import issue_token
from kamiyo.service.answers import Answer, Outcome
from kamiyo.service.arguments import parse_query
from kamiyo.service.catalogue import CATALOGUE, ToolName
from kamiyo.service.pipeline import Caller, execute
from kamiyo.web.dashboard.viewer import Dashboard, Viewer
from kamiyo.web.rest import FAILURE_STATUS, REFUSAL_STATUS

# Long enough for one call, short enough that a leaked token is soon worthless.
TOKEN_TTL_S = 300


async def run_as(
    dashboard: Dashboard,
    request: Request,
    viewer: Viewer,
    tool: ToolName,
    arguments: Mapping[str, Any] | None = None,
) -> Outcome:
    """``tool`` with ``arguments`` (parsed as every surface parses them) for the viewer."""
    operation = CATALOGUE[tool]
    async with dashboard.database() as session:
        token = await issue_token(
            session, dashboard.settings.auth, viewer.account, ttl_s=TOKEN_TTL_S
        )
    query = parse_query(tool.value, operation.query, dict(arguments or {}))
    peer = request.client.host if request.client else "dashboard"
    return await execute(dashboard.state, operation, query, Caller(credential=token, peer=peer))


def status_of(outcome: Outcome) -> int:
    """The HTTP status a page showing ``outcome`` answers with (the REST API's, for the same
    refusal or failure)."""
    if isinstance(outcome, Answer):
        return 200
    if isinstance(outcome, Refusal):
        return REFUSAL_STATUS[outcome.reason]
    return FAILURE_STATUS[outcome.kind]
