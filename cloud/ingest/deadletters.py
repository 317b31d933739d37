"""Dead letters: the messages ingestion rejected, kept so an operator can see what was sent and why.

One row per rejection, counted under the same reason as ``frigo_ingest_rejected_total``:

- a rejection of a whole message (``invalid_topic``, ``invalid_payload``, ``unexpected_topic``)
  keeps the payload as received;
- a rejection of one event (``device_mismatch``, ``unknown_device``, ``seq_conflict``,
  ``event_id_conflict``) keeps that event as the cloud decoded it, re-encoded: the message may be a
  batch whose other events were stored, and the operator needs the one that was not.

Payloads are cut to :data:`MAX_DEAD_LETTER_BYTES` (``payload_size`` keeps the size as received), and
the table keeps the newest ``max_rows`` rows: each write deletes the rows whose id lies more than
``max_rows`` below the newest id, an index range probe instead of a count. Ids only grow (pruning
never removes the newest row), so this keeps at most ``max_rows`` rows; fewer when the id sequence
has gaps (PostgreSQL burns ids of rolled-back inserts).

A dead letter is a diagnostic, never a reason to lose events: a failing write is logged and
reported to the caller, which carries on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, delete, func, insert, select
from sqlmodel import Session

from cloud.db.tables import DEAD_LETTERS

log = logging.getLogger(__name__)

# Enough for a whole event (a few hundred bytes) or the head of a batch, while a flood of large junk
# payloads stays bounded: 10,000 rows x 4 KiB is 40 MiB at most.
MAX_DEAD_LETTER_BYTES = 4096

# Default bound of the table (CloudSettings.max_dead_letters): days of an unusually noisy fleet, and
# still a table small enough to scan without an index on every column.
DEFAULT_MAX_DEAD_LETTERS = 10_000

# The topic column is VARCHAR(300): a longer (invalid) topic is cut so that PostgreSQL accepts it.
MAX_TOPIC_CHARS = 300


@dataclass(frozen=True, slots=True)
class Rejection:
    """One message, or one event of a message, that ingestion refused."""

    reason: str
    topic: str
    device_id: str | None
    detail: str
    payload: bytes


def dead_letter_row(rejection: Rejection, received_at: datetime) -> dict[str, Any]:
    """Return the ``dead_letters`` row of ``rejection``: payload truncated, text made storable."""
    return {
        "received_at": received_at,
        "topic": _storable(rejection.topic)[:MAX_TOPIC_CHARS],
        "device_id": rejection.device_id,
        "reason": rejection.reason,
        "detail": _storable(rejection.detail),
        "payload": rejection.payload[:MAX_DEAD_LETTER_BYTES],
        "payload_size": len(rejection.payload),
    }


def _storable(text: str) -> str:
    # PostgreSQL text cannot hold NUL characters.
    return text.replace("\x00", "\\x00")


def payload_text(payload: bytes) -> str:
    """Return a stored payload as text: UTF-8, with each byte that is not valid UTF-8 as ``\\xNN``.

    Payloads are JSON in the normal case, so text is what an operator wants to read; base64 would
    hide it. The escapes are not reversible when the payload itself contains ``\\x`` sequences.
    """
    return payload.decode("utf-8", errors="backslashreplace")


class DeadLetterStore:
    """Write dead letters into a bounded table."""

    def __init__(self, engine: Engine, max_rows: int = DEFAULT_MAX_DEAD_LETTERS) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, not {max_rows}")
        self._engine = engine
        self.max_rows = max_rows
        newest = select(func.max(DEAD_LETTERS.c.id)).scalar_subquery()
        self._prune = delete(DEAD_LETTERS).where(DEAD_LETTERS.c.id <= newest - max_rows)

    def write(self, session: Session, rows: Sequence[dict[str, Any]]) -> bool:
        """Add ``rows`` to the session's transaction; return False (logged) if that failed.

        The rows go in under a savepoint, so a failure rolls back only them and the caller's
        transaction can still commit.
        """
        return self._insert(rows, session.begin_nested, session)

    def write_alone(self, rows: Sequence[dict[str, Any]]) -> bool:
        """Commit ``rows`` in a transaction of their own; return False (logged) if that failed."""
        return self._insert(rows, self._engine.begin, None)

    def _insert(
        self,
        rows: Sequence[dict[str, Any]],
        begin: Callable[[], AbstractContextManager[Any]],
        session: Session | None,
    ) -> bool:
        if not rows:
            return True
        try:
            with begin() as scope:
                target = session if session is not None else scope
                target.execute(insert(DEAD_LETTERS), list(rows))
                target.execute(self._prune)
        except Exception:
            log.exception("could not store %d dead letters; ingestion goes on without them", len(rows))
            return False
        return True


def list_dead_letters(
    session: Session,
    *,
    limit: int,
    before_id: int | None = None,
    device_id: str | None = None,
    reason: str | None = None,
) -> Sequence[Row[Any]]:
    """Return up to ``limit`` dead letters, newest first, older than ``before_id`` if given."""
    query = select(DEAD_LETTERS).order_by(DEAD_LETTERS.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(DEAD_LETTERS.c.id < before_id)
    if device_id is not None:
        query = query.where(DEAD_LETTERS.c.device_id == device_id)
    if reason is not None:
        query = query.where(DEAD_LETTERS.c.reason == reason)
    return session.execute(query).all()
