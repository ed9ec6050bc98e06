"""Which tests start processes (``kamiyo serve``, node clients, anvil, the x402 client's venv).

Such a test gets the ``process`` marker at collection, so ``make test-fast`` (``-m "not
process"``) runs only the in-process tests. Nobody has to mark a test by hand: a test is a
process test when its function or a fixture it uses reaches, through the helpers of this
``tests`` package, something that starts a process (``subprocess``, asyncio's or anyio's
subprocesses, the mcp SDK's stdio client). A module-scoped fixture that starts processes also
puts its module's tests in one pytest-xdist group (``--dist loadgroup``), so the fixture's
server starts once instead of once per worker, and under xdist the slow tests are handed out
first, so that the quick ones fill the end of the run.

The reading of the code can miss a process started in a way it does not follow (a fixture
looked up by name at run time, a helper outside ``tests``), so every process start is also
watched as the tests run: one that comes from a test without the marker is listed at the end
of the run, and fails the test when processes were deselected (``-m "not process"``).
"""

import asyncio
import functools
import inspect
import os
import subprocess
import types
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from _pytest.nodeid import NodeId
from mcp import StdioServerParameters
from mcp.client.stdio import stdio_client

MARKER = "process"
UNMARKED = "kamiyo_unmarked_process"

# What starts a process. Functions of this package that reach one of these start one too.
_STARTERS: frozenset[object] = frozenset(
    {
        subprocess,
        subprocess.Popen,
        subprocess.run,
        subprocess.call,
        subprocess.check_call,
        subprocess.check_output,
        asyncio.create_subprocess_exec,
        asyncio.create_subprocess_shell,
        anyio.open_process,
        anyio.run_process,
        StdioServerParameters,
        stdio_client,
        os.system,
        os.posix_spawn,
        os.posix_spawnp,
    }
)
_OWN_PACKAGE = __name__.split(".")[0] + "."


def _is_starter(value: object) -> bool:
    try:
        return value in _STARTERS
    except TypeError:  # unhashable
        return False


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """A code object and those nested in it (inner functions, lambdas, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _functions_of(value: object) -> list[Callable[..., Any]]:
    """The functions of this package that ``value`` stands for (itself, or a class's methods)."""
    if inspect.isclass(value):
        if not value.__module__.startswith(_OWN_PACKAGE):
            return []
        return [f for v in vars(value).values() for f in _functions_of(v)]
    if isinstance(value, staticmethod | classmethod | property):
        inner = value.fget if isinstance(value, property) else value.__func__
        return _functions_of(inner)
    if not callable(value):
        return []
    unwrapped = inspect.unwrap(value)  # through @contextmanager, @functools.cache, @fixture
    module = getattr(unwrapped, "__module__", None) or ""
    if inspect.isfunction(unwrapped) and module.startswith(_OWN_PACKAGE):
        return [unwrapped]
    return []


@functools.cache
def _starts_process(function: Callable[..., Any]) -> bool:
    # A helper that calls itself (or a cycle of them) counts as not starting one while it is
    # being read; whether it does is decided by the rest of its code.
    _reading.add(function)
    try:
        return any(_code_starts_process(code, function) for code in _codes(function.__code__))
    finally:
        _reading.discard(function)


def _code_starts_process(code: types.CodeType, function: Callable[..., Any]) -> bool:
    scope = getattr(function, "__globals__", {})
    for value in (scope[name] for name in code.co_names if name in scope):
        if _is_starter(value):
            return True
        # ``asyncio.create_subprocess_exec``: the attribute's name is in co_names too.
        if isinstance(value, types.ModuleType) and any(
            _is_starter(getattr(value, name, None)) for name in code.co_names
        ):
            return True
        for helper in _functions_of(value):
            if helper not in _reading and _starts_process(helper):
                return True
    return False


_reading: set[Callable[..., Any]] = set()


def _fixture_functions(item: pytest.Item) -> Iterator[tuple[str, Callable[..., Any]]]:
    """(scope, function) of every fixture the test uses, directly or through other fixtures."""
    info = getattr(item, "_fixtureinfo", None)
    for definitions in getattr(info, "name2fixturedefs", {}).values():
        for definition in definitions:
            yield definition.scope, definition.func


def classify(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests that start processes; group those sharing a module fixture that does."""
    for item in items:
        own = getattr(item, "function", None)
        starts = own is not None and bool(_functions_of(own)) and _starts_process(own)
        group = None
        for scope, fixture in _fixture_functions(item):
            if not any(_starts_process(f) for f in _functions_of(fixture)):
                continue
            starts = True
            if scope == "module":
                group = item.nodeid.split("::")[0]
        if starts:
            item.add_marker(MARKER)
        if group is not None and config.pluginmanager.hasplugin("xdist"):
            item.add_marker(pytest.mark.xdist_group(group))  # a marker only xdist declares
            if getattr(config.option, "loadgroup", False):  # set in xdist's workers
                _rename_into_group(item, group)
    if getattr(config.option, "loadgroup", False):
        # xdist hands out tests in this order: the slow ones (groups, then other process tests)
        # first, so the many quick in-process tests fill the end and no worker finishes long
        # after the others.
        items.sort(key=_slowness)


def own_node_ids(items: list[pytest.Item]) -> None:
    """Give every test a node id of its own, and refuse a collection where two share one.

    schemathesis names each API operation's test ``test_x[GET /path]`` but, under pytest 9.2,
    leaves all of them the function's node id; pytest-xdist keys the tests it hands out by node
    id, so with ``--dist loadgroup`` only the first operation of each such test ever ran.
    """
    for item in items:
        named = f"{item.parent.nodeid}::{item.name}" if item.parent is not None else item.nodeid
        if item.nodeid != named and not item.nodeid.startswith(f"{named}@"):
            item._id = NodeId.parse(named)  # pytest's own attribute, private (see below)
    shared = [nodeid for nodeid, n in Counter(item.nodeid for item in items).items() if n > 1]
    if shared:
        raise pytest.UsageError(f"tests sharing a node id (xdist would run one): {shared}")


def _slowness(item: pytest.Item) -> int:
    if item.get_closest_marker("xdist_group") is not None:
        return 0
    return 1 if item.get_closest_marker(MARKER) is not None else 2


def _rename_into_group(item: pytest.Item, group: str) -> None:
    """What pytest-xdist 3.8 does for ``--dist loadgroup``, in a way pytest 9.2 sees.

    xdist's controller sends the tests whose node id ends in the same ``@group`` to one worker;
    xdist appends it by setting ``item._nodeid``, which pytest 9.2 no longer reads (the node id
    comes from ``item._id``), so without this no group is kept together.
    """
    if item.nodeid.endswith(f"@{group}"):
        return  # an xdist that renames in a way pytest reads
    renamed = NodeId.parse(f"{item.nodeid}@{group}")
    item._id = renamed  # pytest's own attribute, private
    assert item.nodeid == str(renamed), f"pytest reads node ids differently: {item.nodeid}"


class Watch:
    """Notes each process a test without the marker starts (see the module's docstring)."""

    def __init__(self, config: pytest.Config) -> None:
        self.strict = "not " + MARKER in (config.getoption("markexpr", "") or "")
        self.current: pytest.Item | None = None
        self.unmarked: dict[str, str] = {}
        original = subprocess.Popen.__init__
        watch = self

        @functools.wraps(original)
        def init(popen: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
            item = watch.current
            if item is not None and item.get_closest_marker(MARKER) is None:
                command = args[0] if args else kwargs.get("args")
                item.user_properties.append((UNMARKED, str(command)[:200]))
            original(popen, *args, **kwargs)

        # asyncio's and anyio's subprocesses are made with Popen too.
        subprocess.Popen.__init__ = init  # type: ignore[method-assign,assignment]

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        self.current = item
        try:
            return (yield)
        finally:
            self.current = None

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        started = [value for name, value in item.user_properties if name == UNMARKED]
        if started and self.strict:
            pytest.fail(
                f"this test started a process ({started[0]}) but is not marked {MARKER!r}: "
                f"mark it @pytest.mark.{MARKER} (tests/processes.py did not see it)",
                pytrace=False,
            )

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Runs in the controller under xdist, which receives the workers' user_properties.
        for name, value in report.user_properties:
            if name == UNMARKED:
                self.unmarked.setdefault(report.nodeid, str(value))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.unmarked:
            return
        terminalreporter.section(f"tests that start processes without the {MARKER!r} marker")
        for nodeid, command in sorted(self.unmarked.items()):
            terminalreporter.write_line(f"{nodeid}: {command}")
