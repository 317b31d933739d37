"""The HTTP API (FastAPI) of a cloud worker: the app, its routers and its web pages.

Routes live in ``cloud/api/routes/`` (one module per resource) and ``cloud/web/``; this module
puts what they depend on in ``app.state`` (``cloud/api/dependencies.py`` hands it out) and mounts
them. OpenAPI docs at ``/docs`` and ``/redoc``, from installed files (``cloud/api/docs.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from cloud import web
from cloud.api import docs
from cloud.api.dependencies import one_value_per_query_parameter
from cloud.api.idempotency import IdempotencyMiddleware
from cloud.api.limits import BodyLimitMiddleware, RateLimitMiddleware, RateLimits, declare_limits
from cloud.api.routes import (
    admin,
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
    admin.router,
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
    assume_https: bool = False,
    rate_limits: RateLimits | None = None,
) -> FastAPI:
    """Build the API around a database engine and the ingest worker's live state.

    ``registry`` holds the worker's Prometheus metrics (``cloud.api.metrics.create_registry``); without
    one, ``/metrics`` serves an empty registry. ``assume_https`` treats every request as HTTPS (a
    TLS-terminating proxy in front: ``FRIGO_CLOUD_ASSUME_HTTPS``, ``cloud/web/transport.py``).
    ``rate_limits`` default to ``RateLimits()`` (``cloud/api/limits.py``).
    """
    clock = clock or SystemClock()
    app = FastAPI(
        title="Frigo cloud",
        version="0.1.0",
        description="Inventory and events of every household's fridges, as the fleet reports them.",
        dependencies=[Depends(one_value_per_query_parameter)],
        # FastAPI's own pages load their scripts from a CDN: cloud/api/docs.py serves them instead.
        docs_url=None,
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.clock = clock
    app.state.stats = stats
    app.state.broker_connected = broker_connected
    app.state.registry = registry if registry is not None else CollectorRegistry()
    app.state.allow_private_webhooks = allow_private_webhooks
    app.add_middleware(IdempotencyMiddleware, engine=engine, clock=clock)
    # Added last, run first: the body limit, then the rate limits, before any key is stored or
    # route runs (cloud/api/limits.py).
    app.add_middleware(RateLimitMiddleware, engine=engine, clock=clock, rates=rate_limits)
    app.add_middleware(BodyLimitMiddleware, engine=engine, clock=clock)
    for router in ROUTERS:
        app.include_router(router)
    web.install(app, assume_https=assume_https)
    docs.install(app)
    declare_limits(app)
    return app
