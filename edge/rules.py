"""Local alert rules that work offline: food past or near its date, a warm fridge, an open door.

The agent feeds :class:`Rules` sensor readings as they come and calls :meth:`Rules.evaluate` with
the lots the fridge holds. Every method takes ``now`` (timezone-aware) instead of reading a clock,
and nothing here does I/O, so the simulator can run months of fridge life in minutes.

Conditions, each an alert while it holds (``since`` is when it started holding):

- ``expiring`` (subject ``lot:<id>``): the lot's best-before date is today or within
  ``expiring_within_days`` after today, in UTC dates of ``now``; since midnight UTC of the first
  day of that span.
- ``expired`` (subject ``lot:<id>``): the best-before date is before today; since midnight UTC of
  the day after it. A lot that passes its date has its ``expiring`` alert cleared and an
  ``expired`` one raised in the same evaluation.
- ``temperature_high`` (subject ``probe:<sensor id>``): every reading of that probe since
  ``since`` was above ``max_temperature_c``, and ``now - since`` is at least
  ``temperature_grace``. One reading at or below the maximum ends the episode. The alert names
  the perishable lots the fridge held when it was raised; which compartment a lot is in is not
  compared with the probe, so a warm probe warns about every perishable lot rather than too few.
- ``door_open`` (subject ``door``): the door has been open continuously for more than
  ``door_open_limit``.

Lots with a quantity of zero or less are ignored. Alerts are edge-triggered: one is raised by the
evaluation that first sees its condition hold and cleared by the first that sees it no longer
hold; in between it stays in ``active`` unchanged, as it was raised. An alert is identified by
kind, subject and ``since``: a new episode of the same condition (the door closed and opened
again between two evaluations) clears the old alert and raises a new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

# Two days is how far ahead a household plans meals: enough warning to eat the food, not so much
# that the alert is ignored.
_EXPIRING_WITHIN_DAYS = 2
# 8 °C is the legal maximum for chilled food in the UK (fridges are set to 5 °C or below); above it,
# bacteria in perishable food multiply fast enough to matter.
_MAX_TEMPERATURE_C = 8.0
# Restocking or a defrost cycle warms a probe for minutes; half an hour above the limit is a fault.
_TEMPERATURE_GRACE = timedelta(minutes=30)
# Taking out the shopping keeps the door open for a minute or so; two minutes means it was left open.
_DOOR_OPEN_LIMIT = timedelta(minutes=2)

AlertKind = Literal["expiring", "expired", "temperature_high", "door_open"]


@dataclass(frozen=True, slots=True)
class LotView:
    """What the rules need to know about one lot in the fridge."""

    lot_id: int
    code: str
    name: str | None
    quantity: float
    unit: str
    location: str
    best_before: date | None
    perishable: bool

    @property
    def label(self) -> str:
        """Return how the household would name the lot: its name, else its product code."""
        return self.name if self.name else self.code


@dataclass(frozen=True, slots=True)
class RulesConfig:
    """Thresholds of the rules; the defaults are explained at the top of this module."""

    expiring_within_days: int = _EXPIRING_WITHIN_DAYS
    max_temperature_c: float = _MAX_TEMPERATURE_C
    temperature_grace: timedelta = _TEMPERATURE_GRACE
    door_open_limit: timedelta = _DOOR_OPEN_LIMIT

    def __post_init__(self) -> None:
        if self.expiring_within_days < 0:
            raise ValueError(f"expiring_within_days must be 0 or more, not {self.expiring_within_days}")
        if self.temperature_grace < timedelta(0):
            raise ValueError(f"temperature_grace must not be negative, not {self.temperature_grace}")
        if self.door_open_limit < timedelta(0):
            raise ValueError(f"door_open_limit must not be negative, not {self.door_open_limit}")


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: ``subject`` names the instance ('lot:12', 'probe:fridge', 'door')."""

    kind: AlertKind
    subject: str
    detail: str
    since: datetime
    perishable_codes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RulesResult:
    """What one evaluation changed, and every alert active after it."""

    raised: tuple[Alert, ...]
    cleared: tuple[Alert, ...]
    active: tuple[Alert, ...]


@dataclass(frozen=True, slots=True)
class _Warm:
    """A probe's current episode above the maximum."""

    since: datetime
    celsius: float


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError(f"rules need a timezone-aware time, got {now.isoformat()}: pass clock.now()")


def _midnight_utc(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _minutes(span: timedelta) -> int:
    return int(span.total_seconds() // 60)


class Rules:
    """Alert rules with the little state they need: probes' warm episodes and the door."""

    def __init__(self, config: RulesConfig | None = None) -> None:
        self._config = config or RulesConfig()
        self._warm: dict[str, _Warm] = {}
        self._door_opened_at: datetime | None = None
        self._active: dict[tuple[AlertKind, str], Alert] = {}

    def configure(self, config: RulesConfig) -> None:
        """Use new thresholds from the next evaluation on; episodes under way are kept."""
        self._config = config

    def temperature(self, sensor_id: str, celsius: float, now: datetime) -> None:
        """Record a probe's reading; one at or below the maximum ends its warm episode."""
        _require_aware(now)
        if celsius <= self._config.max_temperature_c:
            self._warm.pop(sensor_id, None)
            return
        episode = self._warm.get(sensor_id)
        self._warm[sensor_id] = _Warm(since=episode.since if episode else now, celsius=celsius)

    def door(self, is_open: bool, now: datetime) -> None:
        """Record the door's state; repeating the same state changes nothing."""
        _require_aware(now)
        if not is_open:
            self._door_opened_at = None
        elif self._door_opened_at is None:
            self._door_opened_at = now

    def evaluate(self, lots: Sequence[LotView], now: datetime) -> RulesResult:
        """Compare the conditions holding at ``now`` with the active alerts and return the changes."""
        _require_aware(now)
        current = self._conditions(lots, now)
        cleared = [
            old for key, old in self._active.items() if key not in current or current[key].since != old.since
        ]
        raised: list[Alert] = []
        active: dict[tuple[AlertKind, str], Alert] = {}
        for key, new in current.items():
            old = self._active.get(key)
            if old is not None and old.since == new.since:
                active[key] = old
            else:
                raised.append(new)
                active[key] = new
        self._active = active
        return RulesResult(raised=tuple(raised), cleared=tuple(cleared), active=tuple(active.values()))

    def _conditions(self, lots: Sequence[LotView], now: datetime) -> dict[tuple[AlertKind, str], Alert]:
        """Return an alert for every condition holding at ``now``, keyed by kind and subject."""
        held = [lot for lot in lots if lot.quantity > 0]
        alerts = [alert for lot in held if (alert := self._date_alert(lot, now)) is not None]
        alerts += self._temperature_alerts(held, now)
        if (door := self._door_alert(now)) is not None:
            alerts.append(door)
        return {(alert.kind, alert.subject): alert for alert in alerts}

    def _date_alert(self, lot: LotView, now: datetime) -> Alert | None:
        if lot.best_before is None:
            return None
        today = now.astimezone(UTC).date()
        subject = f"lot:{lot.lot_id}"
        who = f"{lot.label} (lot {lot.lot_id})"
        if lot.best_before < today:
            return Alert(
                kind="expired",
                subject=subject,
                detail=f"{who} is past its best-before date {lot.best_before.isoformat()}",
                since=_midnight_utc(lot.best_before + timedelta(days=1)),
            )
        first_day = lot.best_before - timedelta(days=self._config.expiring_within_days)
        if first_day <= today:
            return Alert(
                kind="expiring",
                subject=subject,
                detail=f"{who} is best before {lot.best_before.isoformat()}: use it soon",
                since=_midnight_utc(first_day),
            )
        return None

    def _temperature_alerts(self, held: Sequence[LotView], now: datetime) -> list[Alert]:
        perishable = [lot for lot in held if lot.perishable]
        codes = tuple(sorted({lot.code for lot in perishable}))
        # dict.fromkeys keeps the lots' order and drops repeated names.
        names = ", ".join(dict.fromkeys(lot.label for lot in perishable))
        alerts = []
        for sensor_id, warm in sorted(self._warm.items()):
            if now - warm.since < self._config.temperature_grace:
                continue
            place = sensor_id[:1].upper() + sensor_id[1:]
            detail = f"{place} at {warm.celsius:.1f} °C for {_minutes(now - warm.since)} min"
            if names:
                detail += f": perishable food may be unsafe: {names}"
            alerts.append(
                Alert(
                    kind="temperature_high",
                    subject=f"probe:{sensor_id}",
                    detail=detail,
                    since=warm.since,
                    perishable_codes=codes,
                )
            )
        return alerts

    def _door_alert(self, now: datetime) -> Alert | None:
        opened_at = self._door_opened_at
        if opened_at is None or now - opened_at <= self._config.door_open_limit:
            return None
        return Alert(
            kind="door_open",
            subject="door",
            detail=f"The door has been open for {_minutes(now - opened_at)} min: close it to keep food cold",
            since=opened_at,
        )
