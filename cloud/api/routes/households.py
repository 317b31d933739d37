"""A household's routes: its fridges, inventory, stored events, forecast and planning mode."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select

from cloud.api.dependencies import (
    BAD_BODY,
    HOUSEHOLD_ERRORS,
    MAX_ID,
    MAX_PAGE,
    OPERATOR_ERRORS,
    OWN,
    ClockDep,
    SessionDep,
    admin_only,
    household_or_404,
)
from cloud.api.schemas.households import (
    DaysLeftPublic,
    DevicePublic,
    EventPublic,
    ForecastItemPublic,
    ForecastPublic,
    HouseholdPublic,
    InventoryItemPublic,
    InventoryPublic,
    PlanningModePublic,
    PlanningModeUpdate,
)
from cloud.db.tables import EVENTS, Device, Household
from cloud.planning.planner import ItemPlan, plan_households

__all__ = ["router"]

router = APIRouter(tags=["households"])


@router.get("/households", dependencies=[Depends(admin_only)], responses=OPERATOR_ERRORS)
def list_households(session: SessionDep) -> list[HouseholdPublic]:
    """List every household with its fridges."""
    households = session.execute(select(Household).order_by(Household.id)).scalars().all()
    devices = session.execute(select(Device).order_by(Device.id)).scalars().all()
    by_household: dict[str, list[DevicePublic]] = {}
    for device in devices:
        by_household.setdefault(device.household_id, []).append(
            DevicePublic.model_validate(device, from_attributes=True)
        )
    return [HouseholdPublic(id=h.id, name=h.name, devices=by_household.get(h.id, [])) for h in households]


@router.get("/households/{household_id}/inventory", dependencies=OWN, responses=HOUSEHOLD_ERRORS)
def get_inventory(household_id: str, session: SessionDep) -> InventoryPublic:
    """Return what the household's fridges hold, by product code."""
    household_or_404(session, household_id)
    table = EVENTS
    total = func.sum(table.c.quantity_delta)
    rows = session.execute(
        select(table.c.code, total)
        .where(table.c.household_id == household_id, table.c.code.is_not(None))
        .group_by(table.c.code)
        .having(total > 1e-9)
        .order_by(table.c.code)
    ).all()
    count = session.execute(
        select(func.count()).select_from(table).where(table.c.household_id == household_id)
    ).scalar_one()
    return InventoryPublic(
        household_id=household_id,
        items=[InventoryItemPublic(code=code, quantity=round(float(quantity), 6)) for code, quantity in rows],
        event_count=int(count),
    )


@router.get("/households/{household_id}/events", dependencies=OWN, responses=HOUSEHOLD_ERRORS)
def list_events(
    household_id: str,
    session: SessionDep,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="Return events with an id above this.")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[EventPublic]:
    """Return the household's stored events in the order they were stored, a page at a time."""
    household_or_404(session, household_id)
    table = EVENTS
    rows = session.execute(
        select(table)
        .where(table.c.household_id == household_id, table.c.id > after)
        .order_by(table.c.id)
        .limit(limit)
    ).all()
    return [EventPublic.model_validate(row, from_attributes=True) for row in rows]


@router.get("/households/{household_id}/forecast", dependencies=OWN, responses=HOUSEHOLD_ERRORS)
def get_forecast(household_id: str, session: SessionDep, clock: ClockDep) -> ForecastPublic:
    """Return, per product, the rate of use, the days until empty (p10/p50/p90), the reorder
    date and the reason in words."""
    household_or_404(session, household_id)
    now = clock.now()
    (household,) = plan_households(session.connection(), [household_id], now)
    return ForecastPublic(
        household_id=household_id,
        generated_at=now,
        items=[
            _forecast_item(item) for item in sorted(household.items, key=lambda i: (i.days_left[1], i.code))
        ],
    )


@router.put(
    "/households/{household_id}/planning",
    dependencies=OWN,
    responses={**HOUSEHOLD_ERRORS, **BAD_BODY},
)
def set_planning_mode(
    household_id: str, update: PlanningModeUpdate, session: SessionDep
) -> PlanningModePublic:
    """Choose what the planner's baskets become: automatic, approve (the default) or suggest."""
    household = household_or_404(session, household_id)
    household.planning_mode = update.mode
    session.add(household)
    session.commit()
    return PlanningModePublic(household_id=household_id, mode=update.mode)


def _forecast_item(item: ItemPlan) -> ForecastItemPublic:
    """Return one product's plan as the API shows it."""
    return ForecastItemPublic(
        code=item.code,
        unit=item.unit,
        stock=round(item.stock, 3),
        pack=item.pack,
        rate_per_day=round(item.rate, 4),
        days_until_empty=DaysLeftPublic(
            p10=_finite(item.days_left[0]),
            p50=_finite(item.days_left[1]),
            p90=_finite(item.days_left[2]),
        ),
        reorder_date=item.reorder_on,
        order_packs=item.packs,
        reason=item.reason,
    )


def _finite(days: float) -> float | None:
    return round(days, 2) if math.isfinite(days) else None
