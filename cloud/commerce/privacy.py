"""What a household may see of its data, and how it is erased (GDPR Art. 15, 17 and 20).

**Export** (:func:`export`): every row tied to the household, table by table, machine-readable.
Secrets are left out (the hashes of device secrets and tokens), nothing else.

**Transparency** (:func:`transparency`): what was shared with whom and when (orders sent to each
retailer under the ordering consent), which offers were shown and why, which experiments the
household was in, and the consent ledger.

**Erasure** (:func:`erase`), in one transaction: every row tied to the household is deleted, except
what :data:`RETENTION` documents: orders (and their lines and history) stay for the retailers'
bookkeeping, anonymised to the ``erased`` household; the household's fridges stay as revoked
tombstones, so their credentials remain refused and a fridge cannot enrol itself again. Each fridge
gets a ``wipe_requested`` command; when it confirms with ``data_wiped`` (``cloud/commerce/answers.py``), its
broker credential is revoked and what it sent meanwhile is deleted. An erasure record keeps the
SHA-256 of the household id, the devices and when each confirmed: proof that it was done.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, delete, insert, or_, select, update

from cloud.db.engine import as_utc
from cloud.db.tables import (
    ACCESS_TOKENS,
    CAMPAIGN_ASSIGNMENTS,
    CAMPAIGNS,
    CONSENTS,
    DEAD_LETTERS,
    DEVICE_COMMANDS,
    DEVICES,
    ERASURES,
    EVENTS,
    HOUSEHOLDS,
    IDEMPOTENCY_KEYS,
    OFFER_SUPPRESSIONS,
    OFFERS,
    ORDER_HISTORY,
    ORDER_LINES,
    ORDERS,
    PLANNED_ORDER_LINES,
    PLANNED_ORDERS,
    RETAILERS,
    WEB_SESSIONS,
    WEBHOOK_DELIVERIES,
)
from shared.messages import WipeRequested

# The household every erased household's retained rows move to.
ERASED = "erased"
# What is kept after an erasure, and why.
RETENTION = {
    "orders": "kept anonymised (household: erased) for the retailers' books, with their lines and history",
    "devices": "kept as revoked tombstones (household: erased), so the credential stays refused",
    "erasures": "the record of the erasure, naming the household only by the SHA-256 of its id",
}
# Columns never exported: secrets' hashes.
SECRET_COLUMNS = {"secret_hash", "broker_hash", "token_hash"}


def household_hash(household_id: str) -> str:
    """Return how an erasure record names the household."""
    return hashlib.sha256(household_id.encode()).hexdigest()


def _rows(connection: Connection, household_id: str) -> dict[str, list[dict[str, Any]]]:
    """Return every row tied to the household, by table (secrets included)."""
    devices = [
        r._asdict() for r in connection.execute(select(DEVICES).where(DEVICES.c.household_id == household_id))
    ]
    device_ids = [d["id"] for d in devices]
    orders = [
        r._asdict() for r in connection.execute(select(ORDERS).where(ORDERS.c.household_id == household_id))
    ]
    order_ids = [o["id"] for o in orders]
    baskets = [
        r._asdict()
        for r in connection.execute(
            select(PLANNED_ORDERS).where(PLANNED_ORDERS.c.household_id == household_id)
        )
    ]
    basket_ids = [b["id"] for b in baskets]

    def where(table: Table, *conditions: Any) -> list[dict[str, Any]]:
        return [r._asdict() for r in connection.execute(select(table).where(*conditions))]

    return {
        "households": where(HOUSEHOLDS, HOUSEHOLDS.c.id == household_id),
        "devices": devices,
        "events": where(EVENTS, EVENTS.c.household_id == household_id),
        "device_commands": where(DEVICE_COMMANDS, DEVICE_COMMANDS.c.device_id.in_(device_ids)),
        "dead_letters": where(DEAD_LETTERS, DEAD_LETTERS.c.device_id.in_(device_ids)),
        "planned_orders": baskets,
        "planned_order_lines": where(PLANNED_ORDER_LINES, PLANNED_ORDER_LINES.c.order_id.in_(basket_ids)),
        "orders": orders,
        "order_lines": where(ORDER_LINES, ORDER_LINES.c.order_id.in_(order_ids)),
        "order_history": where(ORDER_HISTORY, ORDER_HISTORY.c.order_id.in_(order_ids)),
        "consents": where(CONSENTS, CONSENTS.c.household_id == household_id),
        "offers": where(OFFERS, OFFERS.c.household_id == household_id),
        "offer_suppressions": where(OFFER_SUPPRESSIONS, OFFER_SUPPRESSIONS.c.household_id == household_id),
        "campaign_assignments": where(
            CAMPAIGN_ASSIGNMENTS, CAMPAIGN_ASSIGNMENTS.c.household_id == household_id
        ),
        "access_tokens": where(ACCESS_TOKENS, ACCESS_TOKENS.c.household_id == household_id),
    }


def counts(connection: Connection, household_id: str) -> dict[str, int]:
    """Return how many rows of each table are tied to the household."""
    return {table: len(rows) for table, rows in _rows(connection, household_id).items()}


def export(connection: Connection, household_id: str) -> dict[str, Any]:
    """Return every row tied to the household, by table, without secrets' hashes."""
    tables = {
        table: [{k: _plain(v) for k, v in row.items() if k not in SECRET_COLUMNS} for row in rows]
        for table, rows in _rows(connection, household_id).items()
    }
    return {
        "household_id": household_id,
        "format": "frigo-export-1",
        "tables": tables,
        "counts": {table: len(rows) for table, rows in tables.items()},
        "left_out": sorted(SECRET_COLUMNS),
    }


def transparency(connection: Connection, household_id: str) -> dict[str, Any]:
    """Return what was shared with whom and when, the offers shown and why, and the experiments."""
    names = dict(connection.execute(select(RETAILERS.c.id, RETAILERS.c.name)).all())
    shared = []
    orders = connection.execute(
        select(ORDERS.c.retailer_id, ORDERS.c.created_at).where(ORDERS.c.household_id == household_id)
    ).all()
    by_retailer: dict[str, list[datetime]] = {}
    for retailer, created in orders:
        by_retailer.setdefault(str(retailer), []).append(as_utc(created))
    for retailer, moments in sorted(by_retailer.items()):
        shared.append(
            {
                "recipient": retailer,
                "recipient_name": names.get(retailer, retailer),
                "purpose": "ordering",
                "data": ["orders"],
                "what": f"{len(moments)} orders: their lines, delivery slot and substitutions",
                "first": min(moments).isoformat(),
                "last": max(moments).isoformat(),
            }
        )
    offers = [
        {
            "offer_id": row.id,
            "from": names.get(row.retailer_id, row.retailer_id),
            "item": row.name,
            "why": row.reason,
            "data_used": [c for c in row.data_categories.split(",") if c],
            "consent_id": row.consent_id,
            "shown_at": as_utc(row.created_at).isoformat(),
            "answer": row.status,
        }
        for row in connection.execute(
            select(OFFERS).where(OFFERS.c.household_id == household_id).order_by(OFFERS.c.created_at)
        ).all()
    ]
    experiments = [
        {
            "campaign_id": row.campaign_id,
            "campaign": row.name,
            "by": names.get(row.retailer_id, row.retailer_id),
            "arm": row.arm,
            "since": as_utc(row.assigned_at).isoformat(),
        }
        for row in connection.execute(
            select(
                CAMPAIGN_ASSIGNMENTS.c.campaign_id,
                CAMPAIGN_ASSIGNMENTS.c.arm,
                CAMPAIGN_ASSIGNMENTS.c.assigned_at,
                CAMPAIGNS.c.name,
                CAMPAIGNS.c.retailer_id,
            )
            .join(CAMPAIGNS, CAMPAIGNS.c.id == CAMPAIGN_ASSIGNMENTS.c.campaign_id)
            .where(CAMPAIGN_ASSIGNMENTS.c.household_id == household_id)
        ).all()
    ]
    ledger = [
        {
            "recipient": row.recipient,
            "purpose": row.purpose,
            "data": [c for c in row.data_categories.split(",") if c],
            "text_version": row.text_version,
            "channel": row.channel,
            "granted_at": as_utc(row.granted_at).isoformat(),
            "withdrawn_at": None if row.withdrawn_at is None else as_utc(row.withdrawn_at).isoformat(),
            "expires_at": None if row.expires_at is None else as_utc(row.expires_at).isoformat(),
        }
        for row in connection.execute(
            select(CONSENTS).where(CONSENTS.c.household_id == household_id).order_by(CONSENTS.c.granted_at)
        ).all()
    ]
    return {
        "household_id": household_id,
        "shared": shared,
        "offers": offers,
        "experiments": experiments,
        "consents": ledger,
    }


def erase(connection: Connection, household_id: str, now: datetime) -> str:
    """Erase the household (see the module docstring); return the erasure record's id."""
    _ensure_erased_household(connection, now)
    devices = [
        str(d)
        for d in connection.execute(
            select(DEVICES.c.id).where(DEVICES.c.household_id == household_id)
        ).scalars()
    ]
    orders = [
        str(o)
        for o in connection.execute(
            select(ORDERS.c.id).where(ORDERS.c.household_id == household_id)
        ).scalars()
    ]
    baskets = select(PLANNED_ORDERS.c.id).where(PLANNED_ORDERS.c.household_id == household_id)
    tokens = select(ACCESS_TOKENS.c.token_hash).where(ACCESS_TOKENS.c.household_id == household_id)
    # Stored responses of the household's requests, and webhooks that named it.
    connection.execute(delete(IDEMPOTENCY_KEYS).where(IDEMPOTENCY_KEYS.c.principal.in_(tokens)))
    # By equality: matching the payload (LIKE '%hh-kitchen%') also erased hh-kitchen-2's webhooks.
    connection.execute(
        delete(WEBHOOK_DELIVERIES).where(
            or_(WEBHOOK_DELIVERIES.c.household_id == household_id, WEBHOOK_DELIVERIES.c.order_id.in_(orders))
        )
    )
    connection.execute(delete(OFFERS).where(OFFERS.c.household_id == household_id))
    connection.execute(delete(OFFER_SUPPRESSIONS).where(OFFER_SUPPRESSIONS.c.household_id == household_id))
    connection.execute(
        delete(CAMPAIGN_ASSIGNMENTS).where(CAMPAIGN_ASSIGNMENTS.c.household_id == household_id)
    )
    connection.execute(delete(CONSENTS).where(CONSENTS.c.household_id == household_id))
    connection.execute(
        update(ORDERS).where(ORDERS.c.id.in_(orders)).values(household_id=ERASED, planned_order_id=None)
    )
    connection.execute(delete(PLANNED_ORDER_LINES).where(PLANNED_ORDER_LINES.c.order_id.in_(baskets)))
    connection.execute(delete(PLANNED_ORDERS).where(PLANNED_ORDERS.c.household_id == household_id))
    connection.execute(delete(EVENTS).where(EVENTS.c.household_id == household_id))
    # Its web sign-ins go with its tokens (they point at them), and operators' sign-ins to it too.
    household_tokens = select(ACCESS_TOKENS.c.id).where(ACCESS_TOKENS.c.household_id == household_id)
    connection.execute(
        delete(WEB_SESSIONS).where(
            or_(WEB_SESSIONS.c.token_id.in_(household_tokens), WEB_SESSIONS.c.household_id == household_id)
        )
    )
    connection.execute(delete(ACCESS_TOKENS).where(ACCESS_TOKENS.c.household_id == household_id))
    connection.execute(delete(DEAD_LETTERS).where(DEAD_LETTERS.c.device_id.in_(devices)))
    connection.execute(delete(DEVICE_COMMANDS).where(DEVICE_COMMANDS.c.device_id.in_(devices)))
    connection.execute(update(DEVICES).where(DEVICES.c.id.in_(devices)).values(household_id=ERASED))
    connection.execute(delete(HOUSEHOLDS).where(HOUSEHOLDS.c.id == household_id))
    wipes = {device: str(uuid.uuid4()) for device in devices}
    for device, request in wipes.items():
        payload = WipeRequested(device_id=device, request_id=uuid.UUID(request))
        connection.execute(
            insert(DEVICE_COMMANDS).values(
                device_id=device, payload=payload.model_dump_json(), created_at=now
            )
        )
    erasure_id = str(uuid.uuid4())
    connection.execute(
        insert(ERASURES).values(
            id=erasure_id,
            household_hash=household_hash(household_id),
            requested_at=now,
            wipes=json.dumps(wipes),
            confirmed="[]",
            completed_at=now if not wipes else None,
        )
    )
    return erasure_id


def confirm_wipe(connection: Connection, device_id: str, request_id: str, now: datetime) -> bool:
    """Take a fridge's confirmation that it wiped itself: revoke its credential, delete what it sent
    meanwhile; return whether the request was one of an erasure."""
    for row in connection.execute(select(ERASURES).where(ERASURES.c.completed_at.is_(None))).all():
        wipes: dict[str, str] = json.loads(row.wipes)
        if wipes.get(device_id) != request_id:
            continue
        confirmed = sorted(set(json.loads(row.confirmed)) | {device_id})
        connection.execute(
            update(DEVICES)
            .where(DEVICES.c.id == device_id)
            .values(revoked_at=now, secret_hash=None, broker_hash=None)
        )
        connection.execute(delete(EVENTS).where(EVENTS.c.device_id == device_id))
        connection.execute(delete(DEVICE_COMMANDS).where(DEVICE_COMMANDS.c.device_id == device_id))
        connection.execute(
            update(ERASURES)
            .where(ERASURES.c.id == row.id)
            .values(
                confirmed=json.dumps(confirmed), completed_at=now if set(confirmed) >= set(wipes) else None
            )
        )
        return True
    return False


def _ensure_erased_household(connection: Connection, now: datetime) -> None:
    exists = connection.execute(select(HOUSEHOLDS.c.id).where(HOUSEHOLDS.c.id == ERASED)).first()
    if exists is None:
        connection.execute(insert(HOUSEHOLDS).values(id=ERASED, name="Erased households", created_at=now))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value
