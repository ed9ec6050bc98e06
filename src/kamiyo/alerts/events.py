"""What an alert is about: one incident that was created or changed by an ingest, and one
account's rule that a new incident matched.

The outbox row names the incident; the worker reads its current record and hands the change
to the rules (webhooks) and to the change bus (MCP sessions on every instance); each rule it
matches is a second event on the bus, for the sessions of the rule's account that subscribed
to the rule's resource.
"""

import datetime as dt
import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from kamiyo import intel


class ChangeKind(StrEnum):
    CREATED = "created"
    UPDATED = "updated"


class IncidentChange(BaseModel):
    """An incident as it stands after the change, and whether the change created it."""

    model_config = ConfigDict(frozen=True)

    type: Literal["incident"] = "incident"
    change: ChangeKind
    incident: intel.Incident

    @property
    def adds_resource(self) -> bool:
        """A new incident is a new resource (kamiyo://exploits/<id>): lists changed."""
        return self.change is ChangeKind.CREATED

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


# A rule's MCP resource, for its account's sessions (mcpserver/uris.py parses it).
RESOURCE_TEMPLATE = "kamiyo://alerts/{alert_id}"


class AlertMatch(BaseModel):
    """A new incident that one account's rule matched (told only to that account's sessions)."""

    model_config = ConfigDict(frozen=True)

    type: Literal["alert"] = "alert"
    alert_id: str
    account_pk: int
    incident_id: str

    @property
    def adds_resource(self) -> bool:
        return False


# What the change bus carries, and how it reads one back from the wire (Redis).
BusEvent = Annotated[IncidentChange | AlertMatch, Field(discriminator="type")]
BUS_EVENT: TypeAdapter[IncidentChange | AlertMatch] = TypeAdapter(BusEvent)


# The event type of test_alert's deliveries (incident changes are incident.created|updated).
TEST_EVENT = "alert.test"


def webhook_body(event: str, data: dict[str, Any], timestamp: dt.datetime) -> str:
    """A webhook's JSON body, in the Standard Webhooks payload shape (``type``, ``timestamp``,
    ``data``). Written once, when the delivery is made: every retry sends (and signs) the same
    bytes."""
    payload = {"type": event, "timestamp": timestamp.isoformat(), "data": data}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)
