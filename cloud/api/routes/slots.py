"""Delivery slots: a retailer publishes them, a household sees those of its retailer with room."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cloud.api.dependencies import (
    BAD_BODY,
    HOUSEHOLD_ERRORS,
    INVALID_REQUEST,
    MAX_PAGE,
    OWN,
    RETAILER_ERRORS,
    ClockDep,
    RetailerDep,
    SessionDep,
    household_or_404,
)
from cloud.api.schemas.retail import SlotPublic, SlotsUpload
from cloud.db.tables import DELIVERY_SLOTS

__all__ = ["router"]

router = APIRouter()
# Most slots a household is shown at once: about a month of hourly windows.
HOUSEHOLD_SLOTS = 200


@router.get("/households/{household_id}/slots", tags=["orders"], dependencies=OWN, responses=HOUSEHOLD_ERRORS)
def household_slots(household_id: str, session: SessionDep, clock: ClockDep) -> list[SlotPublic]:
    """Return the future delivery slots with room of the household's retailer."""
    household = household_or_404(session, household_id)
    if household.retailer_id is None:
        return []
    slots = DELIVERY_SLOTS.c
    rows = session.execute(
        select(DELIVERY_SLOTS)
        .where(
            slots.retailer_id == household.retailer_id,
            slots.starts_at > clock.now(),
            slots.booked < slots.capacity,
        )
        .order_by(slots.starts_at)
        .limit(HOUSEHOLD_SLOTS)
    ).all()
    return [SlotPublic.model_validate(row, from_attributes=True) for row in rows]


@router.put(
    "/retailer/slots", tags=["retailer"], responses={**RETAILER_ERRORS, **BAD_BODY, **INVALID_REQUEST}
)
def put_slots(upload: SlotsUpload, retailer: RetailerDep, session: SessionDep) -> list[SlotPublic]:
    """Publish delivery slots, keyed by their start; a capacity below a slot's bookings keeps them
    booked and takes no more."""
    connection = session.connection()
    for slot in upload.slots:
        if slot.ends_at <= slot.starts_at:
            raise HTTPException(
                422, f"the slot starting {slot.starts_at.isoformat()} must end after it starts"
            )
    insert_ = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    slots = DELIVERY_SLOTS.c
    for slot in upload.slots:
        statement = insert_(DELIVERY_SLOTS).values(
            id=str(uuid.uuid4()),
            retailer_id=retailer,
            starts_at=slot.starts_at,
            ends_at=slot.ends_at,
            capacity=slot.capacity,
            booked=0,
        )
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=["retailer_id", "starts_at"],
                set_={
                    "ends_at": statement.excluded.ends_at,
                    # As asked, even below the bookings: those stay booked, no more are taken.
                    "capacity": statement.excluded.capacity,
                },
            )
        )
    session.commit()
    starts = [slot.starts_at for slot in upload.slots]
    rows = session.execute(
        select(DELIVERY_SLOTS)
        .where(slots.retailer_id == retailer, slots.starts_at.in_(starts))
        .order_by(slots.starts_at)
    ).all()
    return [SlotPublic.model_validate(row, from_attributes=True) for row in rows]


@router.get("/retailer/slots", tags=["retailer"], responses=RETAILER_ERRORS)
def get_slots(
    retailer: RetailerDep,
    session: SessionDep,
    clock: ClockDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 200,
) -> list[SlotPublic]:
    """Return the retailer's future slots and their bookings, soonest first."""
    slots = DELIVERY_SLOTS.c
    rows = session.execute(
        select(DELIVERY_SLOTS)
        .where(slots.retailer_id == retailer, slots.ends_at > clock.now())
        .order_by(slots.starts_at)
        .limit(limit)
    ).all()
    return [SlotPublic.model_validate(row, from_attributes=True) for row in rows]
