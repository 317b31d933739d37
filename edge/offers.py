"""Offers the cloud sent to this fridge, kept until the household answers or they expire."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from shared.messages import OfferSent


@dataclass(frozen=True, slots=True)
class StoredOffer:
    """An offer and the household's answer, if any."""

    offer: OfferSent
    received_at: datetime
    answer: str | None


class Offers:
    """The fridge's offers, in the agent's database."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def store(self, offer: OfferSent, received_at: datetime) -> None:
        """Keep an offer; a repeat of the same offer changes nothing."""
        self._conn.execute(
            "INSERT OR IGNORE INTO offers (offer_id, payload, received_at) VALUES (?, ?, ?)",
            (str(offer.offer_id), offer.model_dump_json(), received_at.isoformat()),
        )

    def get(self, offer_id: UUID) -> StoredOffer | None:
        """Return one offer, or None."""
        row = self._conn.execute(
            "SELECT payload, received_at, answer FROM offers WHERE offer_id = ?", (str(offer_id),)
        ).fetchone()
        return _stored(row) if row else None

    def answer(self, offer_id: UUID, answer: str) -> None:
        """Record the household's answer."""
        self._conn.execute("UPDATE offers SET answer = ? WHERE offer_id = ?", (answer, str(offer_id)))

    def current(self, now: datetime) -> list[StoredOffer]:
        """Return offers not yet expired, newest first."""
        rows = self._conn.execute("SELECT payload, received_at, answer FROM offers ORDER BY received_at DESC")
        return [o for o in map(_stored, rows) if o.offer.expires_at > now]

    def clear(self) -> None:
        """Forget every offer (a wipe)."""
        self._conn.execute("DELETE FROM offers")


def _stored(row: tuple[str, str, str | None]) -> StoredOffer:
    return StoredOffer(OfferSent.model_validate_json(row[0]), datetime.fromisoformat(row[1]), row[2])
