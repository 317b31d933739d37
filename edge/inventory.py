"""What is in the fridge, by product code, as the agent's own events say."""

from __future__ import annotations

import sqlite3

from shared.messages import Event, ItemAdded, ItemRemoved


class Inventory:
    """Quantities per product code, kept in the agent's database."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def quantity(self, code: str) -> int:
        """Return how many units of ``code`` the fridge holds."""
        row = self._conn.execute("SELECT quantity FROM inventory WHERE code = ?", (code,)).fetchone()
        return int(row[0]) if row else 0

    def apply(self, event: Event) -> None:
        """Change the quantities as ``event`` says; call inside the event's transaction."""
        match event:
            case ItemAdded(code=code, quantity=quantity):
                delta = quantity
            case ItemRemoved(code=code, quantity=quantity):
                delta = -quantity
        if delta < 0:
            # The row's CHECK (quantity >= 0) fails the transaction if the fridge held fewer.
            self._conn.execute("UPDATE inventory SET quantity = quantity + ? WHERE code = ?", (delta, code))
            return
        self._conn.execute(
            "INSERT INTO inventory (code, quantity) VALUES (?, ?) "
            "ON CONFLICT (code) DO UPDATE SET quantity = quantity + excluded.quantity",
            (code, delta),
        )

    def snapshot(self) -> dict[str, int]:
        """Return every product the fridge holds, with its quantity."""
        rows = self._conn.execute(
            "SELECT code, quantity FROM inventory WHERE quantity > 0 ORDER BY code"
        ).fetchall()
        return {str(code): int(quantity) for code, quantity in rows}
