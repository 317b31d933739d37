"""The planning schedule: APScheduler runs a planning cycle every ``planning_interval_s``.

The job itself is :func:`cloud.planning.planner.plan_cycle`; this module only wires it to a background
scheduler (one job, never two at once in a worker, a missed run coalesced into the next) and lets
callers ask for a run soon, e.g. after a burst of events. Several workers may each run the
schedule: on PostgreSQL they share the households through row leases, and a cycle's basket has one
idempotency key, so a household gets one order per cycle whatever runs.

The same scheduler purges the API's Idempotency-Keys past their retention every hour
(:data:`PURGE_INTERVAL_S`, :func:`cloud.api.idempotency.purge`): a worker with planning off
(``FRIGO_CLOUD_PLANNING=false``) does not, so keep it on in at least one worker. Two workers
purging at once delete the same rows, which is harmless.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, exists, select, update

from cloud.api import idempotency
from cloud.commerce.baskets import PlanningRun, plan_cycle
from cloud.commerce.offers import LiftCache, OfferRun, run_offers
from cloud.db.tables import DEVICES, HOUSEHOLDS, PLANNED_ORDERS
from cloud.planning.planner import cycle_of
from cloud.planning.replenishment import PolicyParams
from shared.clock import Clock

log = logging.getLogger(__name__)

JOB_ID = "plan"
PURGE_JOB_ID = "purge-idempotency-keys"
# Idempotency keys are kept a day (cloud/api/idempotency.py KEEP): purged hourly, none outlives it
# by more than an hour, and the purge is one indexed DELETE.
PURGE_INTERVAL_S = 3600.0
# A run asked for "soon" waits this long, so that a burst of events leads to one run.
SOON_S = 30.0


class PlanningSchedule:
    """Run planning cycles in the background on a fixed interval."""

    def __init__(
        self, engine: Engine, clock: Clock, interval_s: float, params: PolicyParams | None = None
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"the planning interval must be above 0 s, not {interval_s}")
        self._engine, self._clock, self._params = engine, clock, params
        self.interval_s = interval_s
        self._scheduler = BackgroundScheduler(timezone=UTC)
        self.last: PlanningRun | None = None
        self._lock = threading.Lock()
        self._active: set[str] = set()  # devices that stored events since the last run
        # After each planning run, the offers (cloud/commerce/offers.py): the baskets they must not
        # echo are made.
        self.offers = True
        self.last_offers: OfferRun | None = None
        self.lift_cache = LiftCache()

    def start(self) -> None:
        """Schedule the first run one interval from now, and every interval after it."""
        self._scheduler.add_job(
            self.run_once,
            IntervalTrigger(seconds=self.interval_s, timezone=UTC),
            id=JOB_ID,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=int(self.interval_s),
        )
        self._scheduler.add_job(
            self.purge_once,
            IntervalTrigger(seconds=PURGE_INTERVAL_S, timezone=UTC),
            id=PURGE_JOB_ID,
            max_instances=1,
            coalesce=True,
        )
        self._scheduler.start()

    def note_events(self, device_id: str) -> None:
        """Note that a fridge stored events: its household is planned again soon, if its cycle's
        basket is not made yet (the milk that ran low after the cycle's run)."""
        with self._lock:
            first = not self._active
            self._active.add(device_id)
        if first:
            self.run_soon()

    def run_once(self) -> PlanningRun:
        """Run one planning cycle now (the job; also callable directly)."""
        with self._lock:
            active, self._active = self._active, set()
        try:
            if active:
                self._replan(active)
            self.last = plan_cycle(self._engine, self._clock, self.interval_s, params=self._params)
        except Exception:
            log.exception("planning run failed; the next interval tries again")
            raise
        if self.offers:
            try:
                self.last_offers = run_offers(self._engine, self._clock, lift_cache=self.lift_cache)
            except Exception:
                log.exception("offer run failed; the next interval tries again")
        return self.last

    def purge_once(self) -> int:
        """Delete the idempotency keys past their retention at the clock's now; return how many (the job)."""
        try:
            purged = idempotency.purge(self._engine, self._clock.now())
        except Exception:
            log.exception("purging idempotency keys failed; the next hour tries again")
            raise
        if purged:
            log.info("purged %d idempotency keys older than %s", purged, idempotency.KEEP)
        return purged

    def _replan(self, devices: set[str]) -> None:
        """Mark the devices' households for planning again in this cycle, unless they have an order."""
        cycle = cycle_of(self._clock.now(), self.interval_s)
        households = select(DEVICES.c.household_id).where(DEVICES.c.id.in_(sorted(devices)))
        ordered = exists().where(
            PLANNED_ORDERS.c.household_id == HOUSEHOLDS.c.id, PLANNED_ORDERS.c.cycle == cycle
        )
        with self._engine.begin() as connection:
            connection.execute(
                update(HOUSEHOLDS)
                .where(HOUSEHOLDS.c.id.in_(households), HOUSEHOLDS.c.planned_cycle == cycle, ~ordered)
                .values(planned_cycle=cycle - 1)
            )

    def run_soon(self, delay_s: float = SOON_S) -> None:
        """Move the next run forward to ``delay_s`` from now (never later than it was)."""
        job = self._scheduler.get_job(JOB_ID)
        if job is None:
            return
        soon = datetime.now(UTC) + timedelta(seconds=delay_s)
        if job.next_run_time is None or soon < job.next_run_time:
            job.modify(next_run_time=soon)

    @property
    def next_run(self) -> datetime | None:
        """Return when the next run is due (wall-clock time)."""
        job = self._scheduler.get_job(JOB_ID)
        return None if job is None else job.next_run_time

    def stop(self) -> None:
        """Stop scheduling; a run in progress finishes first."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
