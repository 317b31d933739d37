"""Telemetry samples waiting to be published: bounded, thinned when room runs out.

Telemetry is a stream of snapshots, so losing every other old sample loses little; that is how
the outbox makes room (coalescing) before it would ever have to drop an inventory event. Samples
leave this buffer when the broker acknowledges them (PUBACK): unlike inventory events, a sample
lost in a broker crash is replaced by the next one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime

from edge.database import transaction


class TelemetryBuffer:
    """Samples in the agent's database, oldest first."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def add(self, payload: bytes, created_at: datetime) -> None:
        """Keep one encoded sample."""
        self._conn.execute(
            "INSERT INTO telemetry (payload, created_at) VALUES (?, ?)", (payload, created_at.isoformat())
        )

    def pending(self, limit: int) -> list[tuple[int, bytes]]:
        """Return up to ``limit`` samples, oldest first."""
        rows = self._conn.execute(
            "SELECT id, payload FROM telemetry ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [(int(i), bytes(p)) for i, p in rows]

    def remove(self, ids: Iterable[int]) -> None:
        """Forget samples the broker has acknowledged, in a transaction of its own."""
        with transaction(self._conn):
            self._conn.executemany("DELETE FROM telemetry WHERE id = ?", [(i,) for i in ids])

    def thin(self) -> int:
        """Drop every other sample of the older half; return how many went."""
        half = max(self.depth() // 2, 1)
        # Every other row by position (1st, 3rd, ...) of the older half: ids have gaps.
        cursor = self._conn.execute(
            "DELETE FROM telemetry WHERE id IN (SELECT id FROM "
            "(SELECT id, row_number() OVER (ORDER BY id) AS n FROM telemetry ORDER BY id LIMIT ?) "
            "WHERE n % 2 = 1)",
            (half,),
        )
        return cursor.rowcount

    def depth(self) -> int:
        """Return how many samples wait."""
        return int(self._conn.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0])
