"""Sending an offer: its row, traced to the consent that allowed it, and the message to the
household's fridges with the reason in words and the data it used."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection, insert, select

from cloud.db.tables import OFFERS, RETAILERS
from cloud.outbox import commands
from shared.messages import OfferSent

__all__ = ["Offer", "send"]


class Offer(Protocol):
    """What an offer to send says (``cloud.commerce.offers.Candidate`` is one)."""

    @property
    def gtin(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def category(self) -> str | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def data(self) -> tuple[str, ...]: ...
    @property
    def score(self) -> float: ...
    @property
    def campaign_id(self) -> str | None: ...
    @property
    def arm(self) -> str | None: ...


def send(
    connection: Connection,
    household: str,
    retailer: str,
    consent_id: str,
    candidate: Offer,
    expires: datetime,
    now: datetime,
) -> None:
    """Record the offer under the consent that allows it, and tell the household's fridges, with
    the reason in words and the data it used."""
    offer_id = str(uuid.uuid4())
    connection.execute(
        insert(OFFERS).values(
            id=offer_id,
            household_id=household,
            retailer_id=retailer,
            consent_id=consent_id,
            gtin=candidate.gtin,
            name=candidate.name[:200],
            category=candidate.category,
            kind=candidate.kind,
            reason=candidate.reason[:500],
            data_categories=",".join(candidate.data),
            score=round(candidate.score, 4),
            campaign_id=candidate.campaign_id,
            arm=candidate.arm,
            created_at=now,
            expires_at=expires,
            status="sent",
        )
    )
    shop = connection.execute(select(RETAILERS.c.name).where(RETAILERS.c.id == retailer)).scalar() or retailer
    used = f"your {' and '.join(candidate.data)} data" if candidate.data else "none of your data"
    explanation = (
        f"{candidate.reason[:1].upper()}{candidate.reason[1:]}. "
        f"It uses {used}, under the consent you gave {shop} for offers."
    )

    def message(device_id: str) -> OfferSent:
        return OfferSent(
            offer_id=uuid.UUID(offer_id),
            device_id=device_id,
            title=f"{candidate.name} from {shop}"[:200],
            body=f"{candidate.name}: add it to your next order?",
            explanation=explanation[:2000],
            expires_at=expires,
        )

    commands.enqueue_for_household(connection, household, message, now)
