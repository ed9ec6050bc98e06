"""What an alert is about: one incident that was created or changed by an ingest.

The outbox row names the incident; the worker reads its current record and hands this event
to the rules (webhooks) and to the change bus (MCP sessions on every instance).
"""

import datetime as dt
import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from kamiyo import intel


class ChangeKind(StrEnum):
    CREATED = "created"
    UPDATED = "updated"


class IncidentChange(BaseModel):
    """An incident as it stands after the change, and whether the change created it."""

    model_config = ConfigDict(frozen=True)

    change: ChangeKind
    incident: intel.Incident

    @property
    def event(self) -> str:
        """The webhook event type, e.g. ``incident.created``."""
        return f"incident.{self.change.value}"

    def webhook_data(self, alert_id: str) -> dict[str, Any]:
        """What a rule's webhook is told: which rule matched, the change, the incident."""
        return {
            "alert_id": alert_id,
            "change": self.change.value,
            "incident": self.incident.model_dump(mode="json"),
        }


# The event type of test_alert's deliveries (incident changes are incident.created|updated).
TEST_EVENT = "alert.test"


def webhook_body(event: str, data: dict[str, Any], timestamp: dt.datetime) -> str:
    """A webhook's JSON body, in the Standard Webhooks payload shape (``type``, ``timestamp``,
    ``data``). Written once, when the delivery is made: every retry sends (and signs) the same
    bytes."""
    payload = {"type": event, "timestamp": timestamp.isoformat(), "data": data}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)
