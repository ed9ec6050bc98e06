"""What an alert is about: one incident that was created or changed by an ingest.

The outbox row names the incident; the worker reads its current record and hands this event
to the rules (webhooks) and to the change bus (MCP sessions on every instance).
"""

from enum import StrEnum

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
