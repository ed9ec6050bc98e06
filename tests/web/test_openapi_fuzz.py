"""The REST API fuzzed from its own OpenAPI document with schemathesis, in process.

The document is the one the app serves (``/api/v1/openapi.json``; checked below to be the same
as the generator's, which the tests are parametrized with at collection, before any app runs);
the app runs in process on SQLite with the bundled data. Every operation is called with
generated parameters, anonymously and with an enterprise key, and each answer must not be a
5xx, must have a documented status code, content type and headers, and must conform to the
documented schema. Few examples per operation and derandomized, so it stays short and the same
on every run.
"""

import ipaddress
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from kamiyo.access import accounts, keys
from kamiyo.config import DatabaseSettings, Settings
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.mcpserver.server import build_server
from kamiyo.tiers import Tier
from kamiyo.web.app import create_app
from kamiyo.web.docs import OPENAPI_PATH
from kamiyo.web.openapi import document

EXAMPLES_PER_OPERATION = 6
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Starting a subscription asks Stripe, which these tests do not reach (a 503 by design, tested
# with a local Stripe in tests/billing/test_api.py); without a key it is fuzzed with the rest.
NEEDS_STRIPE = {"billing_checkout"}


async def _enterprise_key(url: str, email: str) -> str:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            account = await accounts.create_account(session, email, Tier.ENTERPRISE)
            key = (await keys.create_key(session, account, "fuzz")).key
            await session.commit()
    finally:
        await engine.dispose()
    return key


class Served:
    """The app under test, started once for the module, and an enterprise key."""

    def __init__(self, app: Starlette, key: str, new_key: Callable[[str], str]) -> None:
        self.app = app
        self.key = key
        self.new_key = new_key  # an enterprise key for another account (its own limits)
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app without its lifespan, which the fixture runs: refusing the lifespan scope
        before reading from it tells schemathesis there is none to run, so its pytest plugin
        does not start (and end) the app around every test."""
        if scope["type"] == "lifespan":
            raise RuntimeError("the lifespan runs once, in the fixture")
        # Each request from its own address: anonymous callers are limited per peer (10 a
        # minute), and past that every answer would be a 429 (tested in test_rest.py).
        self.requests += 1
        peer = str(ipaddress.ip_address("198.18.0.0") + self.requests)
        await self.app({**scope, "client": (peer, 1)}, receive, send)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('openapi') / 'kamiyo.db'}"
    settings = Settings(
        database=DatabaseSettings(url=url),
        explorers={"defaults": False},
        site={"public_url": "http://testserver"},  # sign-up needs it to link back
        environment="test",
        _env_file=None,
    )
    app = create_app(settings, build_server)
    # The event loop thread schemathesis sends every request on: the app must start on it.
    portal = asgi._get_portal()
    with portal.wrap_async_context_manager(app.router.lifespan_context(app)):
        yield Served(
            app,
            portal.call(_enterprise_key, url, "fuzz@example.com"),
            lambda email: portal.call(_enterprise_key, url, email),
        )


# schemathesis' lazy loader (from_fixture) reads a pytest private that pytest 9.2 no longer has.
schema = schemathesis.openapi.from_dict(document())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_anonymous_callers_get_only_documented_answers(case: Any, served: Served) -> None:
    case.call_and_validate(app=served, checks=CHECKS)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_key_holders_get_only_documented_answers(case: Any, served: Served) -> None:
    if case.operation.definition.raw.get("operationId") in NEEDS_STRIPE:
        pytest.skip("starting a subscription needs Stripe (tests/billing/test_api.py)")
    headers = {"Authorization": f"Bearer {served.key}"}
    case.call_and_validate(app=served, headers=headers, checks=CHECKS)


def test_the_app_serves_the_document_fuzzed(served: Served) -> None:
    loaded = schemathesis.openapi.from_asgi(OPENAPI_PATH, served)
    assert loaded.raw_schema == schema.raw_schema
    operations = [result.ok() for result in loaded.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) == sum(len(item) for item in loaded.raw_schema["paths"].values())


def _example_request(path: str, operation: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    query = {}
    for parameter in operation["parameters"]:
        if "example" not in parameter:
            continue
        if parameter["in"] == "path":
            path = path.replace(f"{{{parameter['name']}}}", str(parameter["example"]))
        else:
            query[parameter["name"]] = parameter["example"]
    return path, query


def test_the_documented_examples_answer(served: Served) -> None:
    """Each example is a call that works: pasted as it is, it answers 200 (the alert ones
    name a rule that is not there, and creating one is tested in test_rest_alerts.py)."""
    headers = {"Authorization": f"Bearer {served.new_key('examples@example.com')}"}
    client = asgi.get_client(cast(Any, served))  # schemathesis types ASGI scopes as plain dicts
    tried = 0
    for path, item in schema.raw_schema["paths"].items():
        operation = item.get("get")
        if operation is None or not path.startswith("/api/v1/") or "alerts" in path:
            continue
        url, query = _example_request(path, operation)
        assert "{" not in url, f"{path} has no example for a path parameter"
        response = client.get(url, params=query, headers=headers)
        assert response.status_code == 200, (url, query, response.text[:300])
        tried += 1
    assert tried == 9
