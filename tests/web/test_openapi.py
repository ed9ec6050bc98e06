"""The OpenAPI document is valid OpenAPI 3.1, lists every REST route of the catalogue and the
account routes, and the docs page runs only the vendored, pinned Redoc bundle."""

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from kamiyo.config import DatabaseSettings, Settings
from kamiyo.mcpserver.server import build_server
from kamiyo.service.catalogue import OPERATIONS
from kamiyo.web import docs
from kamiyo.web.app import create_app
from kamiyo.web.openapi import ACCOUNT_ROUTES

pytestmark = pytest.mark.anyio

VENDOR = Path(docs.__file__).parent / "static" / "vendor"


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx2.AsyncClient]:
    # These routes need no database: the app is not started.
    url = f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"
    settings = Settings(database=DatabaseSettings(url=url), environment="test", _env_file=None)
    app = create_app(settings, build_server)
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def _document(http: httpx2.AsyncClient) -> dict[str, Any]:
    response = await http.get(docs.OPENAPI_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document: dict[str, Any] = response.json()
    return document


async def test_the_document_is_valid_openapi_3_1(http: httpx2.AsyncClient) -> None:
    document = await _document(http)
    assert document["openapi"].startswith("3.1.")
    errors = [str(e).splitlines()[0] for e in OpenAPIV31SpecValidator(document).iter_errors()]
    assert errors == []


async def test_it_lists_every_rest_operation_and_only_those(http: httpx2.AsyncClient) -> None:
    document = await _document(http)
    listed = {
        (path, method.upper()): operation["operationId"]
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    expected = {(op.rest.path, op.rest.method): op.name.value for op in OPERATIONS if op.rest}
    expected |= {(route.path, "POST"): route.operation_id for route in ACCOUNT_ROUTES}
    assert listed == expected


async def test_each_operation_says_its_price_tier_and_errors(http: httpx2.AsyncClient) -> None:
    paths = (await _document(http))["paths"]
    for op in OPERATIONS:
        if op.rest is None:
            continue
        described = paths[op.rest.path][op.rest.method.lower()]
        assert described["x-kamiyo-tier"] == op.tier.value
        assert f"Tier: {op.tier.value} and up." in described["description"]
        responses = described["responses"]
        assert {"200", "400", "401", "403", "404", "429", "503"} <= set(responses)
        if op.price is None:
            assert described["x-kamiyo-price"] is None
            assert "402" not in responses
        else:
            assert described["x-kamiyo-price"]["atomic_usdc"] == op.price.amount
            assert op.price.describe() in described["description"]
            assert "402" in responses
        error = responses["404"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorEnvelope"}
        # Path parameters are the braces of the route; nothing is left unnamed.
        in_path = {p["name"] for p in described["parameters"] if p["in"] == "path"}
        assert in_path == set(re.findall(r"{(\w+)}", op.rest.path))


async def test_refs_all_resolve(http: httpx2.AsyncClient) -> None:
    document = await _document(http)
    text = str(document)
    names = set(re.findall(r"#/components/schemas/(\w+)", text))
    assert names
    assert names <= set(document["components"]["schemas"])


async def test_the_docs_page_runs_only_the_vendored_bundle(http: httpx2.AsyncClient) -> None:
    page = await http.get(docs.DOCS_PATH)
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "default-src 'none'" in csp
    assert "unsafe-eval" not in csp
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts == [(f' src="{docs.SCRIPT_PATH}"', "")]  # no inline script
    assert f'spec-url="{docs.OPENAPI_PATH}"' in page.text
    bundle = await http.get(docs.SCRIPT_PATH)
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith("text/javascript")
    digest = hashlib.sha256(bundle.content).hexdigest()
    # The checksum the vendor README records is the file served.
    assert digest in (VENDOR / "README.md").read_text()
    assert "2.5.2" in (VENDOR / "README.md").read_text()
    again = await http.get(docs.SCRIPT_PATH, headers={"If-None-Match": bundle.headers["etag"]})
    assert again.status_code == 304


def test_the_bundle_and_its_licences_are_package_data() -> None:
    for name in ("redoc.standalone.js", "redoc.LICENSE", "redoc.standalone.js.LICENSE.txt"):
        assert (VENDOR / name).stat().st_size > 0
    assert "MIT License" in (VENDOR / "redoc.LICENSE").read_text()
