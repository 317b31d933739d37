"""Commands for fridges, kept in the database until the broker has taken them.

An order's change, or a basket the planner proposes, must reach the household's fridges even if
the worker restarts before it publishes: the change and its commands commit together, and the
dispatcher (``cloud/dispatcher.py``) publishes what is pending at QoS 1, marking each sent once
the broker has acknowledged it. A fridge applies a command idempotently (an order's state is
replaced, not added to), so one published twice after a crash does no harm.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from cloud.db.tables import DEVICE_COMMANDS, DEVICES
from shared.messages import Message, encode


def enqueue_for_household(
    connection: Connection, household_id: str, build: Callable[[str], Message], now: datetime
) -> int:
    """Queue ``build(device_id)`` for every fridge of the household; return how many."""
    devices = connection.execute(
        select(DEVICES.c.id).where(DEVICES.c.household_id == household_id, DEVICES.c.revoked_at.is_(None))
    ).scalars()
    rows = [
        {"device_id": device, "payload": encode(build(device)).decode(), "created_at": now}
        for device in devices
    ]
    if rows:
        connection.execute(insert(DEVICE_COMMANDS), rows)
    return len(rows)


def pending(connection: Connection, limit: int = 200) -> list[tuple[int, str, str]]:
    """Return (id, device id, payload) of commands not yet taken by the broker, oldest first."""
    table = DEVICE_COMMANDS.c
    rows = connection.execute(
        select(table.id, table.device_id, table.payload)
        .where(table.sent_at.is_(None))
        .order_by(table.id)
        .limit(limit)
    ).all()
    return [(int(r.id), str(r.device_id), str(r.payload)) for r in rows]


def mark_sent(connection: Connection, ids: Sequence[int], now: datetime) -> None:
    """Record that the broker took these commands."""
    if ids:
        connection.execute(update(DEVICE_COMMANDS).where(DEVICE_COMMANDS.c.id.in_(ids)).values(sent_at=now))
