"""The catalogue is the one declaration of each operation: every face is derived from it."""

import pytest
from starlette.routing import Route

from kamiyo.cli_lazy import COMMAND_MODULES, commands_of
from kamiyo.service.catalogue import CATALOGUE, OPERATIONS, ToolName, priced, target, unlocked_by
from kamiyo.tiers import Tier


def test_every_name_has_exactly_one_operation() -> None:
    assert [op.name for op in OPERATIONS] == list(ToolName)
    assert set(CATALOGUE) == set(ToolName)


def test_a_misspelt_name_is_refused() -> None:
    with pytest.raises(ValueError, match="search_exploit"):
        target("search_exploit")


def test_query_models_are_frozen_and_strict_so_they_can_key_the_cache() -> None:
    for op in OPERATIONS:
        assert op.query.model_config.get("frozen") is True, op.name
        assert op.query.model_config.get("extra") == "forbid", op.name
    first = CATALOGUE[ToolName.SEARCH_EXPLOITS].query(query="euler", chain="eth")
    again = CATALOGUE[ToolName.SEARCH_EXPLOITS].query(query="euler", chain="ethereum")
    assert hash(first) == hash(again)  # the same question, however it was spelt


def test_what_each_tier_unlocks_is_read_from_the_catalogue() -> None:
    free = set(unlocked_by(Tier.FREE))
    assert ToolName.SEARCH_EXPLOITS in free
    assert ToolName.FIND_EXPLOIT_BY_TX in free
    assert ToolName.ASSESS_PROTOCOL_RISK not in free
    assert ToolName.ASSESS_PROTOCOL_RISK in unlocked_by(Tier.PERSONAL)
    assert ToolName.CHECK_WALLET_INTERACTIONS not in unlocked_by(Tier.PERSONAL)
    assert set(unlocked_by(Tier.ENTERPRISE)) == set(ToolName)
    for lower, higher in zip(list(Tier), list(Tier)[1:], strict=False):
        assert set(unlocked_by(lower)) <= set(unlocked_by(higher))


def test_prices_are_declared_with_their_operations() -> None:
    prices = dict(priced())
    assert prices["check_wallet_interactions"].amount == 100_000
    assert prices["search_exploits"].for_size(50) == 20_000
    assert set(prices) == {op.name.value for op in OPERATIONS if op.price is not None}
    assert {"health_check", "get_usage", "get_pricing"}.isdisjoint(prices)


def test_rest_routes_are_the_catalogue_s() -> None:
    from kamiyo.config import Settings
    from kamiyo.mcpserver.server import build_server
    from kamiyo.web.app import create_app

    app = create_app(Settings(_env_file=None), build_server)
    paths = {r.path for r in app.routes if isinstance(r, Route) and r.path.startswith("/api/v1/")}
    declared = {op.rest.path for op in OPERATIONS if op.rest is not None}
    assert declared <= paths
    assert "/api/v1/transactions/{tx_hash}" in declared
    # A route's path parameters are fields of its query model.
    for op in OPERATIONS:
        if op.rest is not None:
            names = {part[1:-1] for part in op.rest.path.split("/") if part.startswith("{")}
            assert names <= set(op.query.model_fields), op.name


def test_commands_are_the_catalogue_s() -> None:
    for op in OPERATIONS:
        if op.command is not None:
            assert op.command.name in commands_of(COMMAND_MODULES[op.command.name]), op.name
            for field in op.command.arguments:
                assert field in op.query.model_fields
