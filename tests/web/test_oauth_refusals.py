"""What the OAuth authorization server refuses, and how it says so: PKCE, redirect URIs, codes,
consent forms, hostile client metadata URLs, oversized and garbage bodies."""

import json
from collections.abc import AsyncIterator, Iterator

import pytest

from kamiyo.web.oauth_clients import DOCUMENT_CACHE_S
from tests.conftest import BACKENDS, PostgresDatabases
from tests.web.client_documents import DocumentServer
from tests.web.oauth_helpers import BASE, REDIRECT, Host, hidden_fields, module_host, pkce, query_of

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module", params=BACKENDS)
async def host(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_databases: PostgresDatabases,
) -> AsyncIterator[Host]:
    folder = tmp_path_factory.mktemp("oauth-refusals")
    async with module_host(
        request.param, folder, postgres_databases, oauth_allow_loopback_clients=True
    ) as served:
        yield served


@pytest.fixture(scope="module")
def documents() -> Iterator[DocumentServer]:
    with DocumentServer() as server:
        yield server


async def test_pkce_must_be_s256_and_the_verifier_must_match(host: Host) -> None:
    client_id = (await host.register())["client_id"]
    _verifier, challenge = pkce()
    for params in (
        {"code_challenge_method": "plain"},
        {"code_challenge": ""},
        {"code_challenge": "short"},
    ):
        sent = await host.authorize(client_id, challenge, **params)
        # The client and its redirect URI are trusted: the error goes back there (§4.1.2.1).
        assert sent.status_code == 302
        answer = query_of(sent.headers["location"])
        assert sent.headers["location"].startswith(REDIRECT)
        assert (answer["error"], answer["state"]) == ("invalid_request", "st-123")
        assert answer["iss"] == BASE  # RFC 9207, in error responses too
    code = await host.code(client_id, challenge)
    wrong = await host.exchange(client_id, code, pkce()[0])
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    assert "code_verifier" in wrong.json()["error_description"]


async def test_a_code_is_used_once_and_its_replay_revokes_the_tokens(host: Host) -> None:
    client_id = (await host.register())["client_id"]
    verifier, challenge = pkce()
    code = await host.code(client_id, challenge)
    first = await host.exchange(client_id, code, verifier)
    assert first.status_code == 200
    again = await host.exchange(client_id, code, verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert await host.mcp_status(first.json()["access_token"]) == 401
    other = (await host.register())["client_id"]  # a code is bound to its client
    code = await host.code(client_id, challenge)
    stolen = await host.exchange(other, code, verifier)
    assert stolen.json()["error"] == "invalid_grant"


async def test_redirect_uris_are_checked_at_registration_authorize_and_token(host: Host) -> None:
    for uri in ("http://evil.example/cb", "javascript:alert(1)", "https://ok.example/cb#frag"):
        refused = await host.http.post(
            "/oauth/register", json={"redirect_uris": [uri], "token_endpoint_auth_method": "none"}
        )
        assert refused.status_code == 400, uri
        assert refused.json()["error"] in ("invalid_redirect_uri", "invalid_client_metadata")
    client_id = (await host.register())["client_id"]
    verifier, challenge = pkce()
    # An unregistered redirect URI is not trusted: the answer stays here, as a 400.
    sent = await host.authorize(client_id, challenge, redirect_uri="https://evil.example/cb")
    assert sent.status_code == 400
    assert "not registered" in sent.json()["error_description"]
    code = await host.code(client_id, challenge)
    moved = await host.token(
        grant_type="authorization_code",
        code=code,
        redirect_uri="http://127.0.0.1:33418/other",
        client_id=client_id,
        code_verifier=verifier,
    )
    assert moved.status_code == 400
    assert moved.json()["error"] == "invalid_request"


async def test_a_loopback_redirect_uri_may_name_any_port(host: Host) -> None:
    client_id = (await host.register())["client_id"]
    verifier, challenge = pkce()
    other_port = "http://127.0.0.1:45001/callback"
    sent = await host.authorize(client_id, challenge, redirect_uri=other_port)
    assert sent.status_code == 302
    assert "consent=" in sent.headers["location"]
    for unlike in ("http://127.0.0.1:45001/elsewhere", "http://192.0.2.1:33418/callback"):
        refused = await host.authorize(client_id, challenge, redirect_uri=unlike)
        assert refused.status_code == 400, unlike
    page = await host.http.get(sent.headers["location"])
    back = await host.approve(page)
    assert back.headers["location"].startswith(other_port + "?")
    code = query_of(back.headers["location"])["code"]
    issued = await host.token(
        grant_type="authorization_code",
        code=code,
        redirect_uri=other_port,
        client_id=client_id,
        code_verifier=verifier,
    )
    assert issued.status_code == 200, issued.text


async def test_the_resource_must_be_this_servers_mcp_url(host: Host) -> None:
    client_id = (await host.register())["client_id"]
    _, challenge = pkce()
    sent = await host.authorize(client_id, challenge, resource="https://other.example/mcp")
    assert query_of(sent.headers["location"])["error"] == "invalid_target"
    defaulted = await host.http.get(
        "/oauth/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "code_challenge": challenge,
        },
    )
    assert defaulted.status_code == 302
    assert "consent=" in defaulted.headers["location"]


async def test_the_consent_form_needs_its_csrf_token_and_a_valid_key(host: Host) -> None:
    client_id = (await host.register())["client_id"]
    _, challenge = pkce()
    page = await host.consent_page(client_id, challenge)
    fields = hidden_fields(page.text)
    forged = await host.http.post(
        "/oauth/authorize",
        data={"consent": fields["consent"], "decision": "approve", "api_key": host.key},
    )
    assert forged.status_code == 403
    tampered = await host.http.post(
        "/oauth/authorize",
        data=fields | {"csrf": "0" * 64, "decision": "approve", "api_key": host.key},
    )
    assert tampered.status_code == 403
    bad_key = await host.approve(page, key="kmy_live_" + "x" * 43)
    assert bad_key.status_code == 401
    assert "unknown, revoked or disabled" in bad_key.text
    denied = await host.approve(page, decision="deny")
    answer = query_of(denied.headers["location"])
    assert (answer["error"], answer["state"]) == ("access_denied", "st-123")
    expired = await host.http.get("/oauth/authorize", params={"consent": "not.a.request"})
    assert expired.status_code == 400


async def test_a_metadata_document_client_is_fetched_and_shown(
    host: Host, documents: DocumentServer
) -> None:
    url = documents.url("/host/client.json")
    document = {"client_id": url, "client_name": "Doc Host", "redirect_uris": [REDIRECT]}
    documents.documents["/host/client.json"] = (200, json.dumps(document).encode(), {})
    verifier, challenge = pkce()
    before = documents.fetched.count("/host/client.json")
    page = await host.consent_page(url, challenge)
    assert page.status_code == 200
    assert "Doc Host" in page.text
    back = await host.approve(page)
    code = query_of(back.headers["location"])["code"]
    issued = await host.exchange(url, code, verifier)
    assert issued.status_code == 200, issued.text
    # Fetched once, then remembered for a while.
    assert documents.fetched.count("/host/client.json") == before + 1
    assert DOCUMENT_CACHE_S >= 60


async def test_hostile_client_metadata_urls_are_refused_with_the_reason(
    host: Host, documents: DocumentServer
) -> None:
    _, challenge = pkce()
    documents.documents["/big.json"] = (200, b'{"x": "' + b"a" * 40_000 + b'"}', {})
    documents.documents["/moved.json"] = (302, b"", {"location": "http://10.0.0.1/x"})
    documents.documents["/garbage.json"] = (200, b"<html>not json", {})
    documents.documents["/other.json"] = (
        200,
        json.dumps({"client_id": "https://else.example/c", "redirect_uris": [REDIRECT]}).encode(),
        {},
    )
    cases = {
        "https://10.0.0.1/client.json": "private address",
        "https://169.254.169.254/latest/meta-data": "link-local address",
        "https://[::ffff:192.168.1.1]/c.json": "private address",
        "http://example.com/client.json": "must be an https:// URL",
        "https://example.com/": "with a path",
        documents.url("/big.json"): "larger than",
        documents.url("/moved.json"): "HTTP 302",
        documents.url("/garbage.json"): "not JSON",
        documents.url("/other.json"): "another client_id",
        documents.url("/missing.json"): "HTTP 404",
    }
    for client_id, reason in cases.items():
        sent = await host.authorize(client_id, challenge)
        assert sent.status_code == 400, client_id
        assert reason in sent.json()["error_description"], (client_id, sent.json())


async def test_oversized_and_garbage_bodies_get_clear_errors(host: Host) -> None:
    huge = await host.http.post("/oauth/register", content=b"{" + b" " * 100_000 + b"}")
    assert huge.status_code == 413
    garbage = await host.http.post("/oauth/register", content=b"\xff\x00not json")
    assert garbage.status_code == 400
    assert garbage.json()["error"] == "invalid_client_metadata"
    token = await host.http.post(
        "/oauth/token",
        content=b"\xff\xfe",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert token.status_code in (400, 401)
    assert token.json()["error"] in ("invalid_request", "invalid_client")
    for nobody in ("nobody", "nul\x00byte", "x" * 5000):
        unknown = await host.token(grant_type="password", client_id=nobody)
        assert unknown.status_code == 401
        assert unknown.json()["error"] == "invalid_client"
    nul = await host.authorize("nul\x00byte", pkce()[1])
    assert nul.status_code == 400
    for name in ("nul\x00name", "n" * 201):
        named = await host.http.post(
            "/oauth/register", json={"redirect_uris": [REDIRECT], "client_name": name}
        )
        assert named.status_code == 400
        assert named.json()["error"] == "invalid_client_metadata"
    client_id = (await host.register())["client_id"]
    grant = await host.token(grant_type="password", client_id=client_id, username="a")
    assert grant.status_code == 400
    assert grant.json()["error"] in ("invalid_request", "unsupported_grant_type")
