"""Consent at the edge: which categories of data may leave the fridge.

What the household has not allowed is never published: such events are not even written to the
outbox. Data minimisation happens here, before anything reaches the network:

- ``inventory``: what is in the fridge — lots added, used up, moved, thrown away; expiry alerts.
- ``consumption_detail``: how and when things are used — openings, the time of each use and
  partial amounts from the weight shelves. Without it, a use is reported only by the day, and
  partial amounts are held back until the lot is finished.
- ``telemetry``: temperatures, the door, the agent's health; food-safety and door alerts.

Acknowledgements the household gives itself (offer and order answers), configuration reports, wipe
confirmations and outbox warnings are always sent: they carry no household data beyond what the
household chose to send.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.messages import (
    AlertCleared,
    AlertRaised,
    Event,
    ItemAdded,
    ItemConsumed,
    ItemDiscarded,
    ItemMoved,
    ItemOpened,
)

Category = Literal["inventory", "consumption_detail", "telemetry"]
ALL_CATEGORIES: frozenset[Category] = frozenset({"inventory", "consumption_detail", "telemetry"})


class ConsentSettings(BaseModel):
    """The data categories this household lets leave the fridge."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Privacy by default: the detail of how food is used stays home unless the household opts in.
    share: frozenset[Category] = Field(
        default=frozenset({"inventory", "telemetry"}),
        description="Categories that may leave the device: inventory, consumption_detail, telemetry.",
    )

    def allows(self, category: Category | None) -> bool:
        """Return whether data of ``category`` may be published (None: always)."""
        return category is None or category in self.share


def category_of(event: Event) -> Category | None:
    """Return the consent category an event belongs to; None for events always sent."""
    match event:
        case ItemAdded() | ItemConsumed() | ItemMoved() | ItemDiscarded():
            return "inventory"
        case ItemOpened():
            return "consumption_detail"
        case AlertRaised(kind=kind) | AlertCleared(kind=kind):
            return "inventory" if kind in ("expiring", "expired") else "telemetry"
        case _:
            return None
