"""Orders on their way to this fridge: expected items, reconciled when they are scanned in."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from shared.messages import OrderUpdated

# Statuses whose lines the household can scan in: the goods are on their way or have arrived.
_RECEIVABLE = ("dispatched", "delivered")
# Statuses whose lines are not on their way: the planner's baskets (an approved basket's lines come
# with the order placed for it), and orders that ended without goods.
_NOT_COMING = ("proposed", "approved", "skipped", "rejected", "cancelled")


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
        placeholders = ", ".join("?" for _ in _NOT_COMING)
        rows = self._conn.execute(
            "SELECT l.order_id, l.code, l.quantity, l.received FROM order_lines l JOIN orders o "
            f"USING (order_id) WHERE l.received < l.quantity AND o.status NOT IN ({placeholders}) "
            "ORDER BY l.order_id, l.code",
            _NOT_COMING,
        ).fetchall()
        return [(str(a), str(b), int(c), int(d)) for a, b, c, d in rows]

    def status(self, order_id: object) -> str | None:
        """Return the status the fridge last heard for an order or basket; None if unknown."""
        row = self._conn.execute("SELECT status FROM orders WHERE order_id = ?", (str(order_id),)).fetchone()
        return None if row is None else str(row[0])

    def listed(self) -> list[tuple[str, str, str]]:
        """Return (order id, status, lines as 'code×quantity, ...') of every order, newest first."""
        rows = self._conn.execute(
            "SELECT o.order_id, o.status, group_concat(l.code || '×' || l.quantity, ', ') FROM orders o "
            "LEFT JOIN order_lines l USING (order_id) GROUP BY o.order_id ORDER BY o.updated_at DESC"
        ).fetchall()
        return [(str(a), str(b), str(c or "")) for a, b, c in rows]

    def clear(self) -> None:
        """Forget every order (a wipe)."""
        self._conn.execute("DELETE FROM order_lines")
        self._conn.execute("DELETE FROM orders")
