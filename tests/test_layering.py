"""The floors of DESIGN.md: intel imports nothing from the floors above it, nor their libraries."""

import grimp
import pytest

INTEL = "kamiyo.intel"
# Our packages above intel, and the libraries that belong to them.
FORBIDDEN_FOR_INTEL = (
    "kamiyo.access",
    "kamiyo.billing",
    "kamiyo.payments",
    "kamiyo.mcpserver",
    "kamiyo.web",
    "kamiyo.cli",
    "kamiyo.runtime",
    "kamiyo.config",
    "mcp",
    "starlette",
    "fastapi",
    "uvicorn",
    "stripe",
    "x402",
    "typer",
    "rich",
)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("kamiyo", include_external_packages=True)


def test_intel_imports_none_of_the_floors_above(graph: grimp.ImportGraph) -> None:
    present = [m for m in FORBIDDEN_FOR_INTEL if m in graph.modules]
    assert "kamiyo.cli" in present  # the check sees real modules, so it can fail
    for module in present:
        chain = graph.find_shortest_chain(importer=INTEL, imported=module, as_packages=True)
        assert chain is None, f"{INTEL} reaches {module}: {' -> '.join(chain or ())}"


def test_the_check_catches_a_forbidden_import(graph: grimp.ImportGraph) -> None:
    graph.add_import(importer="kamiyo.intel.search", imported="kamiyo.cli")
    chain = graph.find_shortest_chain(importer=INTEL, imported="kamiyo.cli", as_packages=True)
    assert chain is not None


def test_access_knows_nothing_of_the_surfaces(graph: grimp.ImportGraph) -> None:
    for module in ("kamiyo.mcpserver", "kamiyo.web", "kamiyo.cli", "mcp", "starlette"):
        chain = graph.find_shortest_chain(
            importer="kamiyo.access", imported=module, as_packages=True
        )
        assert chain is None, f"kamiyo.access reaches {module}: {' -> '.join(chain or ())}"
