"""What the fuzz tests share: hypothesis strategies for arguments, their settings, a loaded
PostgreSQL database, and the checks every answer and the log must pass.

Arguments are what a tool's declared input schema admits (hypothesis-jsonschema), or those
with hostile values put in: huge strings, a NUL, lone surrogates (which ``st.text`` never
draws), deep nesting, wrong types (booleans, infinities, NaN, huge integers, lists, objects)
and unknown argument names, themselves hostile.

The tests are synchronous hypothesis tests that drive the server through an anyio blocking
portal (an event loop in a thread of its own, kept for the module): hypothesis runs each
example as a plain call, and the server, its database and its client stay open across them.
Bounded and reproducible: a fixed number of examples, derandomized, no example database. No
per-example deadline: a timing assertion would flake on a loaded machine (timings belong in
bench/); the number of examples bounds the time.
"""

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from kamiyo.config import DatabaseSettings, Settings
from kamiyo.runtime import open_runtime
from tests.conftest import PostgresDatabases

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    # One server for all of a test's examples, on purpose; huge strings are meant to be slow.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# What bad arguments may come to; anything else (internal_error, unavailable, a refusal) is a
# failure of the server.
EXPECTED_PROBLEMS = {"invalid_arguments", "not_found"}
# Room for the vocabularies a message may list (chains, attack types); never the input at length.
MAX_MESSAGE_CHARS = 4_000


@contextmanager
def loaded_postgres() -> Iterator[Settings]:
    """Settings on a new PostgreSQL database with the bundled dataset (dropped afterwards)."""
    databases = PostgresDatabases()

    async def create() -> Settings:
        url = await databases.create()
        loaded = Settings(database=DatabaseSettings(url=url), environment="test", _env_file=None)
        async with open_runtime(loaded, upgrade=True):
            return loaded

    try:
        yield asyncio.run(create())
    finally:
        asyncio.run(databases.drop_all())


def check_problem(problem: dict[str, Any]) -> None:
    """A refused call: an expected problem, said in one short line."""
    assert problem.get("error") in EXPECTED_PROBLEMS, problem
    message = problem["message"]
    assert "\n" not in message
    assert len(message) <= MAX_MESSAGE_CHARS, message[:200]
    message.encode("utf-8")  # nothing unencodable echoed back


def check_log(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing at ERROR, no traceback; then forget what was seen."""
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [f"{r.name}: {r.getMessage()[:200]}" for r in bad]
    caplog.clear()


# Deeper than this the MCP SDK's own client cannot serialize a request (pydantic's depth
# limit), so it never leaves the test; HTTP bodies are parsed by the SDK, not by us.
MAX_NESTING = 100

HUGE = (300, 10_000, 1_000_000)  # characters
# httpx refuses a URL over 64 kB (and a server's request head limit is its own matter).
HUGE_IN_A_URL = (300, 2_000)
_ODD = st.sampled_from(
    ["", " ", "\t\n", "%00", "'; DROP TABLE incidents; --", "\\", "..", "😀" * 8, "\u202e"]
)


def _with(characters: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Short text with one of ``characters`` somewhere in it."""
    return st.tuples(st.text(max_size=12), characters, st.text(max_size=12)).map("".join)


def _huge(sizes: tuple[int, ...]) -> st.SearchStrategy[str]:
    return st.sampled_from(sizes).flatmap(
        lambda n: st.sampled_from(["x" * n, "é" * n, "euler " * (n // 6), "0x" + "a" * n])
    )


def hostile_text(surrogates: bool = True, huge: tuple[int, ...] = HUGE) -> st.SearchStrategy[str]:
    """``surrogates``: False where the client cannot send them (a URL has no form for one)."""
    kinds = [_huge(huge), _ODD, _with(st.just("\x00")), st.text(max_size=40)]
    if surrogates:
        kinds.append(_with(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)))
    return st.one_of(*kinds)


def _nest(depth: int, as_object: bool) -> Any:
    nested: Any = "x"
    for _ in range(depth):
        nested = {"a": nested} if as_object else [nested]
    return nested


NESTED = st.builds(_nest, st.integers(1, MAX_NESTING), st.booleans())
WRONG_TYPES = st.one_of(
    st.booleans(),
    st.none(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["Infinity", "-Infinity", "NaN", "1e400", "true", "5", "-1", "0x10", "1_0"]),
    st.lists(st.integers(), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
)


def hostile_values(surrogates: bool, huge: tuple[int, ...]) -> st.SearchStrategy[Any]:
    return st.one_of(hostile_text(surrogates, huge), WRONG_TYPES, NESTED)


def arguments(
    schema: dict[str, Any], surrogates: bool = True, huge: tuple[int, ...] = HUGE
) -> st.SearchStrategy[dict[str, Any]]:
    """What ``schema`` admits, or that with one to three arguments replaced or added."""
    admitted = from_schema(schema)
    known = sorted(schema.get("properties", {}))
    names = st.one_of(
        st.sampled_from(known) if known else st.nothing(),
        st.text(max_size=20),  # unknown names
        hostile_text(surrogates, huge),
    )
    changes = st.lists(st.tuples(names, hostile_values(surrogates, huge)), min_size=1, max_size=3)
    changed = st.tuples(admitted, changes).map(lambda drawn: {**drawn[0], **dict(drawn[1])})
    return st.one_of(admitted, changed)
