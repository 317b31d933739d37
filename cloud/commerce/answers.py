"""What households answer on their fridges: baskets approved, cancelled or skipped; orders
cancelled; substitutions accepted or rejected; consents granted or withdrawn; offers accepted,
dismissed or turned off by category; wipes confirmed after an erasure.

The fridge sends an ``order_answered``, ``consent_changed`` or ``offer_answered`` event, stored like every
event (so it is never lost) and applied here afterwards, in the order stored, by whichever worker
gets to it first: a cursor in ``event_cursors`` says how far the answers are applied, and on
PostgreSQL its row is locked while a worker applies the next ones. An answer the order's state
no longer allows (the household cancelled on the web page a moment before) is logged and
skipped, as the API would answer 409.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import Connection, Engine, select, update

from cloud.commerce import baskets, consents, offers, orders, privacy
from cloud.commerce.withdrawal import withdraw_consent
from cloud.db.engine import insert_ignoring_duplicates
from cloud.db.tables import EVENT_CURSORS, EVENTS, ORDERS, PLANNED_ORDERS
from cloud.errors import OrderInputError, OrderStateError, VersionMismatch
from shared.messages import ConsentChanged, DataWiped, Event, OfferAnswered, OrderAnswered, decode_event

CURSOR = "fridge_answers"
TYPES = ("order_answered", "consent_changed", "offer_answered", "data_wiped")
BATCH = 200

log = logging.getLogger(__name__)


def apply_answers(engine: Engine, now: datetime) -> int:
    """Apply the fridges' answers stored since the last call; return how many were read."""
    with engine.begin() as connection:
        cursor = select(EVENT_CURSORS.c.position).where(EVENT_CURSORS.c.name == CURSOR)
        if connection.execute(cursor).first() is None:  # once: a write on every tick would contend
            connection.execute(
                insert_ignoring_duplicates(engine, EVENT_CURSORS).values(name=CURSOR, position=0)
            )
        if connection.dialect.name == "postgresql":
            cursor = cursor.with_for_update()
        position = int(connection.execute(cursor).scalar_one())
        rows = connection.execute(
            select(EVENTS.c.id, EVENTS.c.household_id, EVENTS.c.device_id, EVENTS.c.type, EVENTS.c.payload)
            .where(EVENTS.c.type.in_(TYPES), EVENTS.c.id > position)
            .order_by(EVENTS.c.id)
            .limit(BATCH)
        ).all()
        if rows:
            # Write first: on SQLite a transaction that reads before its first write cannot take the
            # write lock once another connection has written meanwhile ("database is locked" at once).
            connection.execute(
                update(EVENT_CURSORS)
                .where(EVENT_CURSORS.c.name == CURSOR)
                .values(position=EVENT_CURSORS.c.position)
            )
        for row in rows:
            with connection.begin_nested():
                _answer(connection, str(row.household_id), str(row.device_id), decode_event(row.payload), now)
        if rows:
            connection.execute(
                update(EVENT_CURSORS).where(EVENT_CURSORS.c.name == CURSOR).values(position=rows[-1].id)
            )
    return len(rows)


def _answer(connection: Connection, household_id: str, device_id: str, event: Event, now: datetime) -> None:
    match event:
        case ConsentChanged():
            _consent(connection, household_id, event, now)
        case OfferAnswered():
            _offer(connection, household_id, event, now)
        case DataWiped():
            # A fridge confirming the wipe of an erasure: its credential is revoked now.
            privacy.confirm_wipe(connection, device_id, str(event.request_id), now)
        case OrderAnswered():
            _apply(connection, household_id, str(event.order_id), event.answer, now)
        case _:
            log.warning("not a fridge answer: %s event %s", event.type, event.event_id)


def _apply(connection: Connection, household_id: str, order_id: str, answer: str, now: datetime) -> None:
    try:
        if _is_basket(connection, household_id, order_id):
            action = {
                "approve": baskets.approve_order,
                "cancel": baskets.cancel_order,
                "skip": baskets.skip_order,
            }
            if answer in action:
                action[answer](connection, household_id, order_id, now)
                return
        elif _is_order(connection, household_id, order_id):
            if answer in ("cancel", "skip"):
                orders.cancel(connection, household_id, order_id, now, actor="fridge")
                return
            if answer in ("accept_substitutions", "reject_substitutions"):
                approve = answer == "accept_substitutions"
                orders.decide_substitutions(connection, household_id, order_id, approve, now, actor="fridge")
                return
        log.warning(
            "household %s answered %s to order %s, which it has not got that way",
            household_id,
            answer,
            order_id,
        )
    except (OrderStateError, VersionMismatch, OrderInputError) as exc:
        log.info(
            "household %s's fridge answer %s to %s came too late: %s", household_id, answer, order_id, exc
        )


def _consent(connection: Connection, household_id: str, change: ConsentChanged, now: datetime) -> None:
    recipient, purpose = change.recipient, change.purpose
    if change.action == "withdraw":
        withdraw_consent(connection, household_id, recipient, purpose, now)
        return
    try:
        consents.grant(connection, household_id, recipient, purpose, now, channel="fridge")
    except consents.ConsentError as exc:
        log.warning(
            "household %s's fridge granted %s to %s, which cannot be: %s",
            household_id,
            purpose,
            recipient,
            exc,
        )


def _offer(connection: Connection, household_id: str, answered: OfferAnswered, now: datetime) -> None:
    try:
        offers.answer(connection, household_id, str(answered.offer_id), answered.answer, now)
    except (LookupError, offers.OfferError) as exc:
        log.info("household %s's fridge answer to offer %s: %s", household_id, answered.offer_id, exc)


def _is_basket(connection: Connection, household_id: str, order_id: str) -> bool:
    table = PLANNED_ORDERS.c
    found = connection.execute(
        select(table.id).where(table.id == order_id, table.household_id == household_id)
    ).first()
    return found is not None


def _is_order(connection: Connection, household_id: str, order_id: str) -> bool:
    found = connection.execute(
        select(ORDERS.c.id).where(ORDERS.c.id == order_id, ORDERS.c.household_id == household_id)
    ).first()
    return found is not None
