"""Orders on their way to this fridge: expected items, reconciled when they are scanned in."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from shared.messages import OrderUpdated

# Statuses whose lines the household can scan in: the goods are on their way or have arrived.
_RECEIVABLE = ("dispatched", "delivered")


class Orders:
    """Order states and expected lines, in the agent's database."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def update(self, order: OrderUpdated, now: datetime) -> None:
        """Store an order's new state; lines, when given, replace the expected ones."""
        self._conn.execute(
            "INSERT INTO orders (order_id, status, expected_delivery, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, "
            "expected_delivery = excluded.expected_delivery, updated_at = excluded.updated_at",
            (
                str(order.order_id),
                order.status,
                order.expected_delivery.isoformat() if order.expected_delivery else None,
                now.isoformat(),
            ),
        )
        if order.lines:
            placeholders = ", ".join("?" for _ in order.lines)
            self._conn.execute(
                f"DELETE FROM order_lines WHERE order_id = ? AND code NOT IN ({placeholders})",
                (str(order.order_id), *(line.code for line in order.lines)),
            )
        for line in order.lines:
            self._conn.execute(
                "INSERT INTO order_lines (order_id, code, quantity) VALUES (?, ?, ?) "
                "ON CONFLICT (order_id, code) DO UPDATE SET quantity = excluded.quantity",
                (str(order.order_id), line.code, line.quantity),
            )

    def receive(self, code: str) -> str | None:
        """Match one scanned-in unit of ``code`` to an expected line; return its order id, if any."""
        placeholders = ", ".join("?" for _ in _RECEIVABLE)
        row = self._conn.execute(
            "SELECT l.order_id FROM order_lines l JOIN orders o USING (order_id) "
            f"WHERE l.code = ? AND l.received < l.quantity AND o.status IN ({placeholders}) "
            "ORDER BY o.expected_delivery IS NULL, o.expected_delivery, o.updated_at LIMIT 1",
            (code, *_RECEIVABLE),
        ).fetchone()
        if row is None:
            return None
        self._conn.execute(
            "UPDATE order_lines SET received = received + 1 WHERE order_id = ? AND code = ?", (row[0], code)
        )
        return str(row[0])

    def expected(self) -> list[tuple[str, str, int, int]]:
        """Return (order id, code, quantity, received) for lines still expected."""
        rows = self._conn.execute(
            "SELECT l.order_id, l.code, l.quantity, l.received FROM order_lines l JOIN orders o "
            "USING (order_id) WHERE l.received < l.quantity AND o.status NOT IN ('rejected', 'cancelled') "
            "ORDER BY l.order_id, l.code"
        ).fetchall()
        return [(str(a), str(b), int(c), int(d)) for a, b, c, d in rows]

    def clear(self) -> None:
        """Forget every order (a wipe)."""
        self._conn.execute("DELETE FROM order_lines")
        self._conn.execute("DELETE FROM orders")
