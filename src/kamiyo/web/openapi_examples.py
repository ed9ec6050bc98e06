"""One short example call per REST operation, for the OpenAPI document and its docs page.

The query models carry no examples of their own; these name real records of the bundled data
(the Euler Finance incident of March 2023 and its attacker) so a reader can paste them.
"""

from collections.abc import Mapping
from typing import Any

from kamiyo.service.catalogue import ToolName

EULER = "20230313_eulerfinance"
EULER_ATTACK_TX = "0xc310a0affe2169d1f6feec1c63dbc7f7c62a887fa48795d327d4d2da2d6b111d"
EULER_ATTACKER = "0x5f259d0b76665c337c6104145894f4d1d2758b8c"

EXAMPLES: Mapping[ToolName, Mapping[str, Any]] = {
    ToolName.SEARCH_EXPLOITS: {"query": "flash loan", "chain": "ethereum", "limit": 5},
    ToolName.GET_EXPLOIT: {"exploit_id": EULER},
    ToolName.FIND_EXPLOIT_BY_TX: {"tx_hash": EULER_ATTACK_TX},
    ToolName.GET_EXPLOIT_STATS: {"group_by": "chain", "since": "2024-01-01"},
    ToolName.ASSESS_PROTOCOL_RISK: {"protocol_name": "Euler", "limit": 5},
    ToolName.CHECK_WALLET_INTERACTIONS: {"wallet_address": EULER_ATTACKER, "chain": "ethereum"},
    ToolName.SCREEN_TRANSACTION: {"tx_hash": EULER_ATTACK_TX, "chain": "ethereum"},
    ToolName.CREATE_ALERT: {
        "filters": {"chains": ["ethereum"], "min_loss_usd": 1000000},
        "webhook_url": "https://hooks.example.com/kamiyo",
        "name": "Big Ethereum losses",
    },
    ToolName.DELETE_ALERT: {"alert_id": "alr_6fJ2kQ9xWb3LmR8tYc1NzA"},
    ToolName.TEST_ALERT: {"alert_id": "alr_6fJ2kQ9xWb3LmR8tYc1NzA"},
}
