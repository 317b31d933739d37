"""The HTTP API (FastAPI); OpenAPI docs at /docs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from cloud.ingest import IngestStats
from cloud.models import EVENTS, Device, Household
from cloud.schemas import (
    DevicePublic,
    EventPublic,
    HouseholdPublic,
    IngestStatsPublic,
    InventoryItemPublic,
    InventoryPublic,
)

# Largest page of events one request returns.
MAX_PAGE = 1000


def get_session(request: Request) -> Iterator[Session]:
    """Yield a database session for one request."""
    with Session(request.app.state.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def create_app(engine: Engine, stats: IngestStats, broker_connected: Callable[[], bool]) -> FastAPI:
    """Build the API around a database engine and the ingest worker's live state."""
    app = FastAPI(
        title="Frigo cloud",
        version="0.1.0",
        description="Inventory and events of every household's fridges, as the fleet reports them.",
    )

    app.state.engine = engine

    def household_or_404(session: Session, household_id: str) -> Household:
        household = session.get(Household, household_id)
        if household is None:
            raise HTTPException(404, f"no household {household_id!r}; GET /households lists them")
        return household

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """Say the process is up."""
        return {"status": "ok"}

    @app.get("/stats", tags=["operations"])
    def get_stats() -> IngestStatsPublic:
        """Return the ingestion counters since this worker started."""
        return IngestStatsPublic(
            received=stats.received,
            stored=stats.stored,
            duplicates=stats.duplicates,
            rejected=dict(stats.rejected),
            batches=stats.batches,
            last_commit_ms=stats.last_commit_ms,
            broker_connected=broker_connected(),
        )

    @app.get("/households", tags=["households"])
    def list_households(session: SessionDep) -> list[HouseholdPublic]:
        """List every household with its fridges."""
        households = session.execute(select(Household).order_by(Household.id)).scalars().all()
        devices = session.execute(select(Device).order_by(Device.id)).scalars().all()
        by_household: dict[str, list[DevicePublic]] = {}
        for d in devices:
            by_household.setdefault(d.household_id, []).append(
                DevicePublic(
                    id=d.id, online=d.online, last_seen_at=_utc(d.last_seen_at), outbox_depth=d.outbox_depth
                )
            )
        return [HouseholdPublic(id=h.id, name=h.name, devices=by_household.get(h.id, [])) for h in households]

    @app.get("/households/{household_id}/inventory", tags=["households"])
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
            items=[
                InventoryItemPublic(code=code, quantity=round(float(quantity), 6)) for code, quantity in rows
            ],
            event_count=int(count),
        )

    @app.get("/households/{household_id}/events", tags=["households"])
    def list_events(
        household_id: str,
        session: SessionDep,
        after: Annotated[int, Query(ge=0, description="Return events with an id above this.")] = 0,
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
        return [
            EventPublic(
                id=r.id,
                event_id=r.event_id,
                device_id=r.device_id,
                seq=r.seq,
                type=r.type,
                code=r.code,
                quantity_delta=r.quantity_delta,
                occurred_at=_utc(r.occurred_at) or r.occurred_at,
                received_at=_utc(r.received_at) or r.received_at,
            )
            for r in rows
        ]

    return app


def _utc(value: datetime | None) -> datetime | None:
    """Return ``value`` as aware UTC; SQLite hands back naive datetimes that were stored as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
