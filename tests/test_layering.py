"""The floors of DESIGN.md, checked on the real import graph: no arrow points up.

surfaces (mcpserver, web, cli*) -> service -> access, billing, payments (alerts) -> intel ->
db, chains, outbound, config, tiers. Packages on one floor may import each other; chains and
outbound import nothing else of KAMIYO; the MCP and HTTP libraries stay with the surfaces.
Every top-level module must sit on a floor, so a new package has to be placed to pass.
"""

import copy

import grimp
import pytest

# Plus every cli* module (see _floors): the command line may grow more of them.
SURFACES = {"mcpserver", "web", "cli", "bundle", "__main__"}  # bundle builds the .mcpb
# runtime.py opens the database and loads the bundle for the surfaces: the service floor's job
# (it may move into kamiyo.service; the service package is checked once it exists).
SERVICE = {"service", "runtime"}
DOMAIN = {"access", "billing", "payments", "alerts"}
INTEL = {"intel"}
# clients.py writes MCP clients' configuration (plain JSON, no MCP library): the CLI installs it
# and billing mails it, so it sits below both.
BOTTOM = {
    "db",
    "chains",
    "outbound",
    "explorers",
    "config",
    "tiers",
    "errors",
    "observability",
    "clients",
    "outages",
    "metrics",
    "closing",  # bounds the closing steps of a stop: the meter (access) and runtime use it
}
FLOORS = (SURFACES, SERVICE, DOMAIN, INTEL, BOTTOM)
# Knows nothing of its neighbours on the floor: imports only the standard library and others'.
STANDALONE = ("kamiyo.chains", "kamiyo.outbound")
SURFACE_LIBRARIES = ("mcp", "starlette", "uvicorn", "fastapi", "typer")
# DESIGN.md: intel "knows nothing of MCP, HTTP, tiers or money", and receives its settings.
INTEL_FORBIDDEN = (
    *SURFACE_LIBRARIES,
    "stripe",
    "x402",
    "rich",
    "kamiyo.config",
    "kamiyo.tiers",
)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("kamiyo", include_external_packages=True)


def _top_level(graph: grimp.ImportGraph) -> set[str]:
    return {m.removeprefix("kamiyo.") for m in graph.find_children("kamiyo")}


def _floors(graph: grimp.ImportGraph) -> list[set[str]]:
    present = _top_level(graph)
    cli = {m for m in present if m.startswith("cli_")}
    return [(floor | cli if floor is SURFACES else floor) & present for floor in FLOORS]


def _layers(graph: grimp.ImportGraph) -> list[grimp.Layer]:
    return [grimp.Layer(*sorted(f), independent=False) for f in _floors(graph) if f]


def _upward(graph: grimp.ImportGraph) -> list[str]:
    """One line per pair of floors with an arrow pointing up, with an example route."""
    illegal = graph.find_illegal_dependencies_for_layers(
        layers=_layers(graph), containers={"kamiyo"}
    )
    found = []
    for dep in illegal:
        route = min(dep.routes, key=lambda r: len(r.middle))
        example = " -> ".join([min(route.heads), *route.middle, min(route.tails)])
        found.append(f"{dep.importer} -> {dep.imported} ({example})")
    return sorted(found)


def _chain(graph: grimp.ImportGraph, importer: str, imported: str) -> str | None:
    if imported not in graph.modules:
        return None
    chain = graph.find_shortest_chain(importer=importer, imported=imported, as_packages=True)
    return " -> ".join(chain) if chain else None


def test_every_module_sits_on_a_floor(graph: grimp.ImportGraph) -> None:
    assert sorted(_top_level(graph) - set().union(*_floors(graph))) == []


def test_no_floor_imports_a_floor_above_it(graph: grimp.ImportGraph) -> None:
    assert _upward(graph) == []


def test_the_check_catches_an_upward_import(graph: grimp.ImportGraph) -> None:
    for importer, imported in [
        ("kamiyo.intel.search", "kamiyo.cli"),
        ("kamiyo.config", "kamiyo.payments.prices"),
        ("kamiyo.payments.journal", "kamiyo.runtime"),
        ("kamiyo.db.tables", "kamiyo.intel.models"),
    ]:
        changed = copy.deepcopy(graph)
        changed.add_import(importer=importer, imported=imported)
        found = _upward(changed)
        assert len(found) == 1, (importer, imported, found)
        assert importer in found[0]


@pytest.mark.parametrize("package", STANDALONE)
def test_standalone_packages_import_nothing_else_of_kamiyo(
    graph: grimp.ImportGraph, package: str
) -> None:
    assert package in graph.modules
    outside = sorted(
        f"{module} -> {imported}"
        for module in graph.find_descendants(package) | {package}
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.startswith("kamiyo.") and not imported.startswith(package)
    )
    assert outside == []


def test_the_standalone_check_can_fail(graph: grimp.ImportGraph) -> None:
    changed = copy.deepcopy(graph)
    changed.add_import(importer="kamiyo.chains.registry", imported="kamiyo.config")
    assert "kamiyo.config" in changed.find_modules_directly_imported_by("kamiyo.chains.registry")


@pytest.mark.parametrize("package", ["kamiyo.access", "kamiyo.billing", "kamiyo.payments"])
@pytest.mark.parametrize("library", SURFACE_LIBRARIES)
def test_mcp_and_http_libraries_stay_with_the_surfaces(
    graph: grimp.ImportGraph, package: str, library: str
) -> None:
    assert _chain(graph, package, library) is None


@pytest.mark.parametrize("module", INTEL_FORBIDDEN)
def test_intel_knows_nothing_of_mcp_http_tiers_or_money(
    graph: grimp.ImportGraph, module: str
) -> None:
    assert "mcp" in graph.modules  # the check sees external packages, so it can fail
    assert _chain(graph, "kamiyo.intel", module) is None


def test_the_library_check_can_fail(graph: grimp.ImportGraph) -> None:
    changed = copy.deepcopy(graph)
    changed.add_import(importer="kamiyo.intel.search", imported="mcp")
    assert _chain(changed, "kamiyo.intel", "mcp") == "kamiyo.intel.search -> mcp"


def test_web_does_not_import_mcpserver(graph: grimp.ImportGraph) -> None:
    assert _chain(graph, "kamiyo.web", "kamiyo.mcpserver") is None
