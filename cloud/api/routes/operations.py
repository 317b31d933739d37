"""The worker's own routes: liveness, readiness, metrics, ingestion counters and dead letters.

``/healthz`` says the process answers; ``/readyz`` that the database and the broker do too (both
open: load balancers and orchestrators probe them without credentials, and they say nothing but
up or down). ``/metrics`` is Prometheus' text format and ``/stats`` the same counters as JSON;
``/admin/dead-letters`` lists what ingestion refused. These three take an operator's token
(``frigo tokens admin``): the counters tell how busy the fleet is and which devices send what is
refused; Prometheus sends the token with ``authorization`` in its scrape config (README).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, text

from cloud.api import metrics
from cloud.api.dependencies import MAX_ID, MAX_PAGE, OPERATOR_ERRORS, EngineDep, SessionDep, admin_only
from cloud.api.schemas.operations import CheckPublic, DeadLetterPublic, IngestStatsPublic, ReadinessPublic
from cloud.ingest.deadletters import list_dead_letters, payload_text
from cloud.ingest.stats import IngestStats, RejectReason

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter()


def _stats(request: Request) -> IngestStats:
    stats: IngestStats = request.app.state.stats
    return stats


def _broker_connected(request: Request) -> Callable[[], bool]:
    connected: Callable[[], bool] = request.app.state.broker_connected
    return connected


def _registry(request: Request) -> CollectorRegistry:
    registry: CollectorRegistry = request.app.state.registry
    return registry


StatsDep = Annotated[IngestStats, Depends(_stats)]
BrokerConnectedDep = Annotated[Callable[[], bool], Depends(_broker_connected)]
RegistryDep = Annotated[CollectorRegistry, Depends(_registry)]


@router.get("/healthz", tags=["operations"])
def healthz() -> dict[str, str]:
    """Say the process is up (liveness); says nothing of the database or the broker."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["operations"],
    response_model=ReadinessPublic,
    responses={503: {"model": ReadinessPublic, "description": "The database or the broker is not."}},
)
def readyz(engine: EngineDep, broker_connected: BrokerConnectedDep) -> ReadinessPublic | JSONResponse:
    """Say whether the worker can ingest: 200 if the database answers and the broker is connected."""
    readiness = ReadinessPublic(
        ready=False, database=_database_check(engine), broker=_broker_check(broker_connected)
    )
    readiness.ready = readiness.database.ready and readiness.broker.ready
    if readiness.ready:
        return readiness
    return JSONResponse(readiness.model_dump(), status_code=503)


@router.get(
    "/metrics",
    tags=["operations"],
    # Response (no media type of its own), so that the errors are documented as the JSON they are;
    # the 200's text is declared by hand.
    response_class=Response,
    dependencies=[Depends(admin_only)],
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text."},
        **OPERATOR_ERRORS,
    },
)
def get_metrics(registry: RegistryDep) -> Response:
    """Return the worker's metrics in the Prometheus text format."""
    return Response(metrics.render(registry), media_type=metrics.CONTENT_TYPE)


@router.get("/stats", tags=["operations"], dependencies=[Depends(admin_only)], responses=OPERATOR_ERRORS)
def get_stats(stats: StatsDep, broker_connected: BrokerConnectedDep) -> IngestStatsPublic:
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


@router.get(
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

    An operator route: it shows what devices sent.
    """
    rows = list_dead_letters(
        session,
        limit=limit,
        before_id=before_id,
        device_id=device_id,
        reason=reason.value if reason is not None else None,
    )
    return [
        DeadLetterPublic.model_validate(
            {
                "id": r.id,
                "received_at": r.received_at,
                "topic": r.topic,
                "device_id": r.device_id,
                "reason": r.reason,
                "detail": r.detail,
                "payload": payload_text(r.payload),
                "payload_size": r.payload_size,
                "payload_truncated": len(r.payload) < r.payload_size,
            }
        )
        for r in rows
    ]


def _broker_check(connected: Callable[[], bool]) -> CheckPublic:
    if connected():
        return CheckPublic(ready=True, detail="connected to the MQTT broker")
    return CheckPublic(ready=False, detail="not connected to the MQTT broker; reconnecting")


def _database_check(engine: Engine) -> CheckPublic:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        # The message may name hosts and users: it goes to the log, the probe gets the kind only.
        log.warning("readiness: the database did not answer SELECT 1: %s", exc)
        return CheckPublic(ready=False, detail=f"the database did not answer SELECT 1 ({type(exc).__name__})")
    return CheckPublic(ready=True, detail="the database answered SELECT 1")
