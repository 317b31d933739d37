"""The planning schedule: APScheduler runs a planning cycle every ``planning_interval_s``.

The job itself is :func:`cloud.planner.plan_cycle`; this module only wires it to a background
scheduler (one job, never two at once in a worker, a missed run coalesced into the next) and lets
callers ask for a run soon, e.g. after a burst of events. Several workers may each run the
schedule: on PostgreSQL they share the households through row leases, and a cycle's basket has one
idempotency key, so a household gets one order per cycle whatever runs.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from cloud.planner import PlanningRun, plan_cycle
from cloud.replenishment import PolicyParams
from shared.clock import Clock

log = logging.getLogger(__name__)

JOB_ID = "plan"
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
        self._scheduler.start()

    def run_once(self) -> PlanningRun:
        """Run one planning cycle now (the job; also callable directly)."""
        try:
            self.last = plan_cycle(self._engine, self._clock, self.interval_s, params=self._params)
        except Exception:
            log.exception("planning run failed; the next interval tries again")
            raise
        return self.last

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
