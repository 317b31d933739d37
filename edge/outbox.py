"""The durable outbox: every event waits here until the cloud says it has committed it.

A broker's PUBACK is not enough to forget an event: a broker killed with SIGKILL loses messages it
already acknowledged. Rows leave only through :meth:`Outbox.acknowledge`, on the cloud's ack.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime

from edge.database import transaction
from shared.messages import SeqRange


class Outbox:
    """Events not yet acknowledged by the cloud, in sequence order."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def next_seq(self) -> int:
        """Allocate the next sequence number; call inside the transaction that appends the event."""
        row = self._conn.execute(
            "INSERT INTO meta (key, value) VALUES ('last_seq', 1) "
            "ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value"
        ).fetchone()
        return int(row[0])

    def last_seq(self) -> int:
        """Return the sequence number of the newest event ever recorded (0 if none)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        return int(row[0]) if row else 0

    def append(self, seq: int, payload: bytes, created_at: datetime) -> None:
        """Store an encoded event under its sequence number."""
        self._conn.execute(
            "INSERT INTO outbox (seq, payload, created_at) VALUES (?, ?, ?)",
            (seq, payload, created_at.isoformat()),
        )

    def pending(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """Return up to ``limit`` events with a sequence number above ``after``, oldest first."""
        rows = self._conn.execute(
            "SELECT seq, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        ).fetchall()
        return [(int(seq), bytes(payload)) for seq, payload in rows]

    def acknowledge(self, ranges: Iterable[SeqRange]) -> int:
        """Forget the events the cloud has committed; return how many rows went."""
        removed = 0
        with transaction(self._conn):
            for first, last in ranges:
                cursor = self._conn.execute("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (first, last))
                removed += cursor.rowcount
        return removed

    def span(self) -> int:
        """Return an upper bound of the depth, cheap at any size: newest minus oldest seq, plus one."""
        low, high = self._conn.execute("SELECT MIN(seq), MAX(seq) FROM outbox").fetchone()
        return 0 if low is None else int(high) - int(low) + 1

    def clear(self) -> list[int]:
        """Erase every waiting event (a wipe) and return their sequence numbers."""
        seqs = [int(r[0]) for r in self._conn.execute("SELECT seq FROM outbox ORDER BY seq")]
        self._conn.execute("DELETE FROM outbox")
        return seqs

    def depth(self) -> int:
        """Return how many events wait for the cloud's acknowledgement."""
        return int(self._conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
