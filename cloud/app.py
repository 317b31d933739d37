"""The HTTP API (FastAPI); OpenAPI docs at /docs.

Operations: ``/healthz`` (the process answers), ``/readyz`` (the database and the broker too),
``/metrics`` (Prometheus), ``/stats`` (the same counters as JSON), ``/admin/dead-letters``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, Engine, func, select, text
from sqlmodel import Session

from cloud import web
from cloud.api import metrics
from cloud.api.dependencies import (
    BAD_BODY,
    HOUSEHOLD_ERRORS,
    MAX_PAGE,
    OPERATOR_ERRORS,
    RETAILER_ERRORS,
    RetailerDep,
    SessionDep,
    admin_only,
    household_access,
    household_or_404,
    one_value_per_query_parameter,
)
from cloud.api.idempotency import IdempotencyMiddleware
from cloud.api.routes import campaigns as campaignapi
from cloud.api.routes import consents as consentapi
from cloud.api.routes import offers as offerapi
from cloud.api.routes import orders as orderapi
from cloud.api.routes import privacy as privacyapi
from cloud.api.schemas import (
    CatalogItemPublic,
    CatalogUpload,
    CatalogUploadPublic,
    CheckPublic,
    DaysLeftPublic,
    DeadLetterPublic,
    DevicePublic,
    ErrorPublic,
    EventPublic,
    ForecastItemPublic,
    ForecastPublic,
    HouseholdPublic,
    IngestStatsPublic,
    InventoryItemPublic,
    InventoryPublic,
    PlannedOrderPublic,
    PlanningModePublic,
    PlanningModeUpdate,
    ReadinessPublic,
    ShoppingLinePublic,
    ShoppingListPublic,
)
from cloud.db.engine import as_utc
from cloud.db.tables import (
    CATALOG_ITEMS,
    EVENTS,
    ORDERS,
    PLANNED_ORDER_LINES,
    PLANNED_ORDERS,
    Device,
    Household,
)
from cloud.errors import OrderStateError
from cloud.identity.retailers import upsert_catalog
from cloud.ingest.deadletters import list_dead_letters, payload_text
from cloud.ingest.stats import IngestStats, RejectReason
from cloud.planning.planner import approve_order, cancel_order, plan_households, skip_order
from shared.clock import Clock, SystemClock

log = logging.getLogger(__name__)

# The largest id a table holds (a signed 64-bit integer in SQLite and PostgreSQL): a larger one in a
# query cannot even be compared with them.
MAX_ID = 2**63 - 1
PLANNED_ORDER_ERRORS = {
    **HOUSEHOLD_ERRORS,
    409: {"model": ErrorPublic, "description": "The basket's state does not allow this; says which it is."},
}


def create_app(
    engine: Engine,
    stats: IngestStats,
    broker_connected: Callable[[], bool],
    *,
    registry: CollectorRegistry | None = None,
    clock: Clock | None = None,
    allow_private_webhooks: bool = False,
) -> FastAPI:
    """Build the API around a database engine and the ingest worker's live state.

    ``registry`` holds the worker's Prometheus metrics (``cloud.api.metrics.create_registry``); without
    one, ``/metrics`` serves an empty registry.
    """
    registry = registry if registry is not None else CollectorRegistry()
    app = FastAPI(
        title="Frigo cloud",
        version="0.1.0",
        description="Inventory and events of every household's fridges, as the fleet reports them.",
        dependencies=[Depends(one_value_per_query_parameter)],
    )

    app.state.engine = engine
    clock = clock or SystemClock()
    app.state.clock = clock
    app.add_middleware(IdempotencyMiddleware, engine=engine, clock=clock)
    orderapi.register(app, clock, allow_private_webhooks=allow_private_webhooks)
    consentapi.register(app, clock)
    offerapi.register(app, clock)
    campaignapi.register(app, clock)
    privacyapi.register(app, clock)
    web.install(app)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """Say the process is up (liveness); says nothing of the database or the broker."""
        return {"status": "ok"}

    def _broker_check() -> CheckPublic:
        if broker_connected():
            return CheckPublic(ready=True, detail="connected to the MQTT broker")
        return CheckPublic(ready=False, detail="not connected to the MQTT broker; reconnecting")

    @app.get(
        "/readyz",
        tags=["operations"],
        response_model=ReadinessPublic,
        responses={503: {"model": ReadinessPublic, "description": "The database or the broker is not."}},
    )
    def readyz(request: Request) -> ReadinessPublic | JSONResponse:
        """Say whether the worker can ingest: 200 if the database answers and the broker is connected."""
        readiness = ReadinessPublic(
            ready=False, database=_database_check(request.app.state.engine), broker=_broker_check()
        )
        readiness.ready = readiness.database.ready and readiness.broker.ready
        if readiness.ready:
            return readiness
        return JSONResponse(readiness.model_dump(), status_code=503)

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    def get_metrics() -> Response:
        """Return the worker's metrics in the Prometheus text format."""
        return Response(metrics.render(registry), media_type=metrics.CONTENT_TYPE)

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

    @app.get(
        "/households", tags=["households"], dependencies=[Depends(admin_only)], responses=OPERATOR_ERRORS
    )
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

    @app.get(
        "/households/{household_id}/inventory",
        tags=["households"],
        dependencies=[Depends(household_access)],
        responses=HOUSEHOLD_ERRORS,
    )
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

    @app.get(
        "/households/{household_id}/events",
        tags=["households"],
        dependencies=[Depends(household_access)],
        responses=HOUSEHOLD_ERRORS,
    )
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

    @app.get(
        "/households/{household_id}/forecast",
        tags=["households"],
        dependencies=[Depends(household_access)],
        responses=HOUSEHOLD_ERRORS,
    )
    def get_forecast(household_id: str, session: SessionDep) -> ForecastPublic:
        """Return, per product, the rate of use, the days until empty (p10/p50/p90), the reorder
        date and the reason in words."""
        household_or_404(session, household_id)
        now = clock.now()
        (household,) = plan_households(session.connection(), [household_id], now)
        return ForecastPublic(
            household_id=household_id,
            generated_at=now,
            items=[
                ForecastItemPublic(
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
                for item in sorted(household.items, key=lambda i: (i.days_left[1], i.code))
            ],
        )

    @app.get(
        "/households/{household_id}/shopping-list",
        tags=["households"],
        dependencies=[Depends(household_access)],
        responses=HOUSEHOLD_ERRORS,
    )
    def get_shopping_list(household_id: str, session: SessionDep) -> ShoppingListPublic:
        """Return the planner's latest basket for the household, or the one it would make now."""
        household_or_404(session, household_id)
        order = session.execute(
            select(PLANNED_ORDERS)
            .where(
                PLANNED_ORDERS.c.household_id == household_id,
                PLANNED_ORDERS.c.status.in_(["suggested", "proposed", "approved"]),
            )
            .order_by(PLANNED_ORDERS.c.created_at.desc())
            .limit(1)
        ).first()
        if order is not None:
            stored = planned_order(session, household_id, order.id)
            return ShoppingListPublic(
                household_id=household_id,
                order_id=stored.id,
                status=stored.status,
                cycle=stored.cycle,
                created_at=stored.created_at,
                cancellable_until=stored.cancellable_until,
                lines=stored.lines,
            )
        (household,) = plan_households(session.connection(), [household_id], clock.now())
        return ShoppingListPublic(
            household_id=household_id,
            order_id=None,
            status=None,
            cycle=None,
            created_at=None,
            cancellable_until=None,
            lines=[
                ShoppingLinePublic(
                    code=item.code,
                    packs=item.packs,
                    quantity=item.quantity,
                    unit=item.unit,
                    reason=item.reason,
                )
                for item in sorted(household.basket, key=lambda i: i.code)
            ],
        )

    def planned_order(session: Session, household_id: str, order_id: str) -> PlannedOrderPublic:
        # The placed order's id comes in the same statement as the status: on PostgreSQL each
        # statement sees its own snapshot, and an approval committing in between would show a
        # proposed basket that already has an order.
        placed_id = (
            select(ORDERS.c.id).where(ORDERS.c.planned_order_id == PLANNED_ORDERS.c.id).scalar_subquery()
        )
        order = session.execute(
            select(PLANNED_ORDERS, placed_id.label("placed_id")).where(
                PLANNED_ORDERS.c.id == order_id, PLANNED_ORDERS.c.household_id == household_id
            )
        ).first()
        if order is None:
            raise HTTPException(404, f"household {household_id!r} has no planned order {order_id!r}")
        lines = session.execute(
            select(PLANNED_ORDER_LINES)
            .where(PLANNED_ORDER_LINES.c.order_id == order_id)
            .order_by(PLANNED_ORDER_LINES.c.code)
        ).all()
        return PlannedOrderPublic(
            id=order.id,
            order_id=order.placed_id,
            household_id=household_id,
            cycle=order.cycle,
            status=order.status,
            created_at=_utc(order.created_at) or order.created_at,
            cancellable_until=_utc(order.cancellable_until),
            lines=[
                ShoppingLinePublic(
                    code=line.code,
                    packs=line.packs,
                    quantity=line.quantity,
                    unit=line.unit,
                    reason=line.reason,
                )
                for line in lines
            ],
        )

    @app.get(
        "/households/{household_id}/planned-orders",
        tags=["households"],
        dependencies=[Depends(household_access)],
        responses=HOUSEHOLD_ERRORS,
    )
    def list_planned_orders(
        household_id: str, session: SessionDep, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20
    ) -> list[PlannedOrderPublic]:
        """Return the planner's baskets for the household, newest first."""
        household_or_404(session, household_id)
        ids = session.execute(
            select(PLANNED_ORDERS.c.id)
            .where(PLANNED_ORDERS.c.household_id == household_id)
            .order_by(PLANNED_ORDERS.c.created_at.desc(), PLANNED_ORDERS.c.id)
            .limit(limit)
        ).scalars()
        return [planned_order(session, household_id, str(order_id)) for order_id in ids]

    @app.post(
        "/households/{household_id}/planned-orders/{order_id}/approve",
        tags=["households"],
        dependencies=[Depends(household_access)],
        responses=PLANNED_ORDER_ERRORS,
    )
    def approve_planned_order(household_id: str, order_id: str, session: SessionDep) -> PlannedOrderPublic:
        """Approve a proposed basket; its order goes to the household's retailer, if it has one.
        409 names the state if it is not proposed."""
        return change_order(session, household_id, order_id, approve_order)

    @app.post(
        "/households/{household_id}/planned-orders/{order_id}/cancel",
        tags=["households"],
        dependencies=[Depends(household_access)],
        responses=PLANNED_ORDER_ERRORS,
    )
    def cancel_planned_order(household_id: str, order_id: str, session: SessionDep) -> PlannedOrderPublic:
        """Cancel a suggested or proposed basket, or an automatic one within 24 hours; else 409."""
        return change_order(session, household_id, order_id, cancel_order)

    @app.post(
        "/households/{household_id}/planned-orders/{order_id}/skip",
        tags=["households"],
        dependencies=[Depends(household_access)],
        responses=PLANNED_ORDER_ERRORS,
    )
    def skip_planned_order(household_id: str, order_id: str, session: SessionDep) -> PlannedOrderPublic:
        """Skip a suggested or proposed basket: nothing is ordered this cycle; else 409."""
        return change_order(session, household_id, order_id, skip_order)

    def change_order(
        session: Session,
        household_id: str,
        order_id: str,
        action: Callable[[Connection, str, str, datetime], str | None],
    ) -> PlannedOrderPublic:
        household_or_404(session, household_id)
        try:
            found = action(session.connection(), household_id, order_id, clock.now())
        except OrderStateError as exc:
            raise HTTPException(409, str(exc)) from None
        if found is None:
            raise HTTPException(404, f"household {household_id!r} has no planned order {order_id!r}")
        session.commit()
        return planned_order(session, household_id, order_id)

    @app.put(
        "/households/{household_id}/planning",
        tags=["households"],
        dependencies=[Depends(household_access)],
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

    @app.put("/retailer/catalog", tags=["retailer"], responses={**RETAILER_ERRORS, **BAD_BODY})
    def put_catalog(upload: CatalogUpload, retailer: RetailerDep, session: SessionDep) -> CatalogUploadPublic:
        """Insert or update up to 10,000 of the retailer's products in one request."""
        count = upsert_catalog(
            session.connection(), retailer, [item.model_dump() for item in upload.items], clock.now()
        )
        session.commit()
        products = session.execute(
            select(func.count()).select_from(CATALOG_ITEMS).where(CATALOG_ITEMS.c.retailer_id == retailer)
        ).scalar_one()
        return CatalogUploadPublic(retailer_id=retailer, upserted=count, products=int(products))

    @app.get("/retailer/catalog", tags=["retailer"], responses=RETAILER_ERRORS)
    def get_catalog(
        retailer: RetailerDep,
        session: SessionDep,
        after: Annotated[str, Query(max_length=14, description="Return GTINs after this one.")] = "",
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> list[CatalogItemPublic]:
        """Return the retailer's products by GTIN, a page at a time."""
        items = CATALOG_ITEMS.c
        rows = session.execute(
            select(CATALOG_ITEMS)
            .where(items.retailer_id == retailer, items.gtin > after)
            .order_by(items.gtin)
            .limit(limit)
        ).all()
        return [
            CatalogItemPublic(
                gtin=row.gtin,
                name=row.name,
                price=row.price,
                currency=row.currency,
                pack_size=row.pack_size,
                unit=row.unit,
                available=row.available,
                category=row.category,
                updated_at=_utc(row.updated_at) or row.updated_at,
            )
            for row in rows
        ]

    @app.get(
        "/admin/dead-letters", tags=["admin"], dependencies=[Depends(admin_only)], responses=OPERATOR_ERRORS
    )
    def get_dead_letters(
        session: SessionDep,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        before_id: Annotated[
            int | None,
            Query(ge=1, le=MAX_ID, description="Return dead letters with an id below this (next page)."),
        ] = None,
        device_id: Annotated[str | None, Query(max_length=64)] = None,
        reason: RejectReason | None = None,
    ) -> list[DeadLetterPublic]:
        """Return the messages ingestion refused, newest first; page with the last id as before_id.

        An operator route: it shows what devices sent. It has no authentication of its own yet, so
        serve it only where operators alone can reach it.
        """
        rows = list_dead_letters(
            session,
            limit=limit,
            before_id=before_id,
            device_id=device_id,
            reason=reason.value if reason is not None else None,
        )
        return [
            DeadLetterPublic(
                id=r.id,
                received_at=_utc(r.received_at) or r.received_at,
                topic=r.topic,
                device_id=r.device_id,
                reason=r.reason,
                detail=r.detail,
                payload=payload_text(r.payload),
                payload_size=r.payload_size,
                payload_truncated=len(r.payload) < r.payload_size,
            )
            for r in rows
        ]

    return app


def _database_check(engine: Engine) -> CheckPublic:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        # The message may name hosts and users: it goes to the log, the probe gets the kind only.
        log.warning("readiness: the database did not answer SELECT 1: %s", exc)
        return CheckPublic(ready=False, detail=f"the database did not answer SELECT 1 ({type(exc).__name__})")
    return CheckPublic(ready=True, detail="the database answered SELECT 1")


def _finite(days: float) -> float | None:
    return round(days, 2) if math.isfinite(days) else None


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)
