"""The HTTP API (FastAPI) of a cloud worker: the app, its routers and its web pages.

Routes live in ``cloud/api/routes/`` (one module per resource) and ``cloud/web/``; this module
puts what they depend on in ``app.state`` (``cloud/api/dependencies.py`` hands it out) and mounts
them. OpenAPI docs at ``/docs``.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from cloud import web
from cloud.api.dependencies import one_value_per_query_parameter
from cloud.api.idempotency import IdempotencyMiddleware
from cloud.api.routes import (
    baskets,
    campaigns,
    catalog,
    consents,
    households,
    offers,
    operations,
    orders,
    privacy,
    slots,
    webhooks,
)
from cloud.ingest.stats import IngestStats
from shared.clock import Clock, SystemClock

__all__ = ["create_app"]

# In the order /docs lists them.
ROUTERS = (
    operations.router,
    households.router,
    baskets.router,
    orders.router,
    slots.router,
    catalog.router,
    webhooks.router,
    consents.router,
    offers.router,
    campaigns.router,
    privacy.router,
)


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
    clock = clock or SystemClock()
    app = FastAPI(
        title="Frigo cloud",
        version="0.1.0",
        description="Inventory and events of every household's fridges, as the fleet reports them.",
        dependencies=[Depends(one_value_per_query_parameter)],
    )
    app.state.engine = engine
    app.state.clock = clock
    app.state.stats = stats
    app.state.broker_connected = broker_connected
    app.state.registry = registry if registry is not None else CollectorRegistry()
    app.state.allow_private_webhooks = allow_private_webhooks
    app.add_middleware(IdempotencyMiddleware, engine=engine, clock=clock)
    for router in ROUTERS:
        app.include_router(router)
    web.install(app)
    return app
