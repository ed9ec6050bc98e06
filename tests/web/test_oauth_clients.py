"""Redirect URIs of native clients (RFC 8252): private-use schemes and loopback ports are let
in, at registration and in Client ID Metadata Documents; dangerous ones are refused with their
reason."""

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import AnyUrl

from kamiyo.web.oauth_clients import redirect_problem, returns_to
from tests.web.client_documents import DocumentServer
from tests.web.oauth_helpers import Host, hidden_fields, pkce, query_of, serving_host

pytestmark = pytest.mark.anyio

CURSOR = "cursor://anysphere.cursor-retrieval/oauth/user-kamiyo/callback"
NATIVE = [
    CURSOR,
    "vscode://vscode.github-authentication/did-authenticate",
    "com.example.app:/oauth2redirect",
    "http://127.0.0.1/callback",
    "http://[::1]:5000/cb",
    "http://localhost:8080/cb",
    "https://claude.ai/api/mcp/auth_callback",
]
REFUSED = {
    "javascript:alert(1)": "javascript: scheme is never a redirect target",
    "JavaScript://x/%0aalert(1)": "javascript: scheme is never a redirect target",
    "data:text/html,<script>x</script>": "data: scheme is never a redirect target",
    "file:///etc/passwd": "file: scheme is never a redirect target",
    "vbscript:msgbox": "vbscript: scheme is never a redirect target",
    "ws://127.0.0.1/cb": "ws: scheme cannot receive an authorization code",
    "http://evil.example/cb": "http:// is only for localhost or a loopback address",
    "http://10.0.0.1/cb": "http:// is only for localhost or a loopback address",
    "cursor://x/cb#frag": "has a fragment",
    "https://ok.example/cb#": "has a fragment",
    "myapp://user:pw@host/cb": "has a user name or password",
}


@pytest.mark.parametrize("uri", NATIVE)
def test_native_and_web_redirect_uris_are_accepted(uri: str) -> None:
    assert redirect_problem(AnyUrl(uri)) is None


@pytest.mark.parametrize(("uri", "reason"), REFUSED.items())
def test_dangerous_redirect_uris_are_refused_with_their_reason(uri: str, reason: str) -> None:
    assert reason in (redirect_problem(AnyUrl(uri)) or "")


def test_the_consent_page_names_where_a_native_client_returns() -> None:
    assert returns_to(CURSOR) == "cursor://anysphere.cursor-retrieval"
    assert returns_to("com.example.app:/oauth2redirect") == "com.example.app:"
    assert returns_to("https://claude.ai/api/mcp/auth_callback") == "claude.ai"


@pytest.fixture(scope="module")
async def host(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Host]:
    folder: Path = tmp_path_factory.mktemp("oauth-native")
    async with serving_host(
        f"sqlite+aiosqlite:///{folder}/native.db", oauth_allow_loopback_clients=True
    ) as served:
        yield served


@pytest.fixture(scope="module")
def documents() -> Iterator[DocumentServer]:
    with DocumentServer() as server:
        yield server


async def _code_back_to(host: Host, client_id: str, redirect: str, challenge: str) -> str:
    sent = await host.authorize(client_id, challenge, redirect_uri=redirect)
    assert sent.status_code == 302, sent.text
    page = await host.http.get(sent.headers["location"])
    assert page.status_code == 200
    assert returns_to(redirect) in page.text
    back = await host.http.post(
        "/oauth/authorize",
        data=hidden_fields(page.text) | {"decision": "approve", "api_key": host.key},
    )
    assert back.status_code == 302, back.text
    location = back.headers["location"]
    assert location.startswith(redirect + "?"), location
    return query_of(location)["code"]


async def test_a_registered_native_client_gets_its_code_at_its_own_scheme(host: Host) -> None:
    client_id = (await host.register(redirect_uris=[CURSOR], client_name="Cursor"))["client_id"]
    verifier, challenge = pkce()
    code = await _code_back_to(host, client_id, CURSOR, challenge)
    issued = await host.token(
        grant_type="authorization_code",
        code=code,
        redirect_uri=CURSOR,
        client_id=client_id,
        code_verifier=verifier,
    )
    assert issued.status_code == 200, issued.text
    # Another scheme's URI, or the same one with another path, is not that client's.
    for unlike in ("vscode://anysphere.cursor-retrieval/oauth/user-kamiyo/callback", CURSOR + "x"):
        refused = await host.authorize(client_id, challenge, redirect_uri=unlike)
        assert refused.status_code == 400, unlike


async def test_registration_refuses_a_dangerous_redirect_uri_with_its_reason(host: Host) -> None:
    for uri, reason in REFUSED.items():
        refused = await host.http.post(
            "/oauth/register", json={"redirect_uris": [CURSOR, uri], "client_name": "Bad"}
        )
        assert refused.status_code == 400, uri
        answer = refused.json()
        assert answer["error"] in ("invalid_redirect_uri", "invalid_client_metadata"), answer
        if answer["error"] == "invalid_redirect_uri":  # the rest fail the SDK's URL model
            assert reason in answer["error_description"], answer


async def test_a_metadata_document_may_name_a_private_use_scheme(
    host: Host, documents: DocumentServer
) -> None:
    url = documents.url("/vscode/client.json")
    redirect = "vscode://vscode.kamiyo/callback"
    document = {"client_id": url, "client_name": "VS Code", "redirect_uris": [redirect]}
    documents.documents["/vscode/client.json"] = (200, json.dumps(document).encode(), {})
    _, challenge = pkce()
    assert await _code_back_to(host, url, redirect, challenge)
    hostile = {"client_id": "", "client_name": "Bad", "redirect_uris": ["javascript:alert(1)"]}
    bad_url = documents.url("/bad/client.json")
    hostile["client_id"] = bad_url
    documents.documents["/bad/client.json"] = (200, json.dumps(hostile).encode(), {})
    refused = await host.authorize(bad_url, challenge, redirect_uri="javascript:alert(1)")
    assert refused.status_code == 400
    assert "javascript: scheme is never a redirect target" in refused.json()["error_description"]
