"""Infer what the household consumed from the weight shelves.

The rule: **an item taken out and put back within a configurable window is not consumed; the
weight difference is.** Precisely, with ``return_window``, ``noise_grams`` and ``placement_window``
from :class:`ConsumptionConfig`:

- A shelf's first reading is its starting load. After that, a reading that differs from the last
  accepted one by less than ``noise_grams`` is ignored (and does not become the new reference, so
  slow drift still shows up once it adds up to ``noise_grams``). Every other reading is one change
  and is explained by at most one lot.
- Placing: :meth:`ShelfTracker.scanned_in` announces a lot. The first increase on any shelf within
  ``placement_window`` of the scan (inclusive) that matches the lot's ``unit_grams`` places the lot
  on that shelf at the measured weight (:class:`Placed`). It matches when it is within 25 % (at least
  ``noise_grams``) of ``unit_grams``; a lot without ``unit_grams`` takes any increase that nothing
  else explains. A scan not placed within the window is dropped without a decision: the lot is in
  the fridge but not on a weighing shelf.
- Taking out: a drop on a shelf is the lot on that shelf whose current weight is closest to the
  drop, if within 5 % (at least ``noise_grams``) of it. Lots within ``noise_grams`` of the closest
  are a tie, which the scale cannot settle: it goes to the lot opened last (announced with
  :meth:`ShelfTracker.opened`; people pour from the bottle they opened, not from the full one
  beside it), then to the lot that has sat there longest. Nothing is emitted yet: the return
  window starts, and the drop is the taken weight.
- Putting back: an increase on any shelf, at most ``return_window`` after the take-out (inclusive),
  no larger than the taken weight plus ``noise_grams``, is that lot put back. It prefers a lot taken
  from the same shelf, then the smallest taken weight that fits, then the earliest taken. The lot is
  consumed by the difference: :class:`Consumed` (``grams`` = taken - returned, ``returned=True``)
  unless the difference is less than ``noise_grams``. The returned weight becomes the lot's current
  weight, so repeated partial use is counted each time.
- Not put back: once more than ``return_window`` has passed since the take-out, :meth:`tick` (or
  the next :meth:`weight`) emits :class:`Consumed` with the whole taken weight and ``returned=False``.
  A put-back after that is **not** matched to the lot, which was already reported as consumed in
  full: it is an :class:`Unmatched` increase (or places a lot scanned in shortly before).
- An increase is matched in this order: a scanned lot with a matching ``unit_grams`` (a scan is the
  household saying what goes in), a taken lot being put back, a scanned lot without ``unit_grams``.
  Any change nothing explains, including a drop that is several lots at once, is :class:`Unmatched`.

A lot scanned in several times is tracked as several items, one per placement. Nothing here does
I/O or reads a clock: every input carries ``now``, so the simulator can replay months in minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

# Long enough to pour a glass or make a sandwich, short enough to report use within the same meal.
_RETURN_WINDOW = timedelta(minutes=5)
# Load cells with an HX711 drift and jitter by a few grams on a kitchen shelf; 5 g is above that.
_NOISE_GRAMS = 5.0
# Scanning at the fridge door and setting the item down takes seconds; a minute allows for a chat.
_PLACEMENT_WINDOW = timedelta(seconds=60)
# unit_grams is the label's net weight; packaging adds to it (a glass jar a lot), so be generous.
_PLACEMENT_TOLERANCE = 0.25
# The same shelf weighed this lot when it went in, so a take-out repeats that weight closely;
# 5 % allows for condensation and a hand brushing the shelf.
_TAKE_TOLERANCE = 0.05
# Opened lots remembered before those no longer on a shelf are forgotten.
_OPENED_KEPT = 256


@dataclass(frozen=True, slots=True)
class ConsumptionConfig:
    """Windows and threshold of the rule; the defaults are explained at the top of this module."""

    return_window: timedelta = _RETURN_WINDOW
    noise_grams: float = _NOISE_GRAMS
    placement_window: timedelta = _PLACEMENT_WINDOW

    def __post_init__(self) -> None:
        if self.return_window < timedelta(0):
            raise ValueError(f"return_window must not be negative, not {self.return_window}")
        if self.placement_window < timedelta(0):
            raise ValueError(f"placement_window must not be negative, not {self.placement_window}")
        if self.noise_grams < 0:
            raise ValueError(f"noise_grams must not be negative, not {self.noise_grams}")


@dataclass(frozen=True, slots=True)
class Placed:
    """A scanned-in lot was set down on a shelf and weighs ``grams`` there."""

    lot_id: int
    shelf_id: str
    grams: float


@dataclass(frozen=True, slots=True)
class Consumed:
    """``grams`` of a lot were used: taken out at ``taken_at``, decided at ``decided_at``."""

    lot_id: int
    code: str
    grams: float
    taken_at: datetime
    decided_at: datetime
    returned: bool


@dataclass(frozen=True, slots=True)
class Unmatched:
    """A change of ``delta_grams`` on a shelf that no lot explains."""

    shelf_id: str
    delta_grams: float
    at: datetime


Decision = Placed | Consumed | Unmatched


@dataclass(frozen=True, slots=True)
class _Scan:
    lot_id: int
    code: str
    unit_grams: float | None
    at: datetime


@dataclass(frozen=True, slots=True)
class _Item:
    """One placement of a lot, with the weight the shelf last measured for it."""

    lot_id: int
    code: str
    shelf_id: str
    grams: float


@dataclass(frozen=True, slots=True)
class _Out:
    """An item taken off its shelf, waiting to be put back."""

    item: _Item
    taken_at: datetime


class ShelfTracker:
    """The rule above as a state machine fed with scans, shelf readings and ticks."""

    def __init__(self, config: ConsumptionConfig | None = None) -> None:
        self._config = config or ConsumptionConfig()
        self._scans: list[_Scan] = []
        self._shelved: dict[int, _Item] = {}
        self._out: dict[int, _Out] = {}
        self._load: dict[str, float] = {}
        self._opened: dict[int, datetime] = {}  # lot -> when it was opened
        self._next_item = 1

    def scanned_in(self, lot_id: int, code: str, unit_grams: float | None, now: datetime) -> None:
        """Expect the lot on a shelf within the placement window."""
        self._scans.append(_Scan(lot_id=lot_id, code=code, unit_grams=unit_grams, at=now))

    def opened(self, lot_id: int, now: datetime) -> None:
        """Note that the lot was opened: a take-out the scale cannot tell apart goes to it."""
        self._opened[lot_id] = now
        if len(self._opened) > _OPENED_KEPT:  # forget lots no longer on a shelf or taken out
            present = {item.lot_id for item in self._shelved.values()}
            present |= {out.item.lot_id for out in self._out.values()}
            present |= {scan.lot_id for scan in self._scans}
            self._opened = {lot: at for lot, at in self._opened.items() if lot in present or lot == lot_id}

    def weight(self, shelf_id: str, grams: float, now: datetime) -> list[Decision]:
        """Take a stable reading of a shelf; return what it and the time passed decided."""
        decisions = self.tick(now)
        last = self._load.get(shelf_id)
        if last is None:
            self._load[shelf_id] = grams
            return decisions
        delta = grams - last
        if abs(delta) < self._config.noise_grams:
            return decisions
        self._load[shelf_id] = grams
        decision = self._drop(shelf_id, -delta, now) if delta < 0 else self._increase(shelf_id, delta, now)
        if decision is not None:
            decisions.append(decision)
        return decisions

    def tick(self, now: datetime) -> list[Decision]:
        """Forget scans past the placement window; consume in full what was not put back in time."""
        self._scans = [scan for scan in self._scans if now - scan.at <= self._config.placement_window]
        late = sorted(
            (key for key, out in self._out.items() if now - out.taken_at > self._config.return_window),
            key=lambda key: (self._out[key].taken_at, key),
        )
        decisions: list[Decision] = []
        for key in late:
            out = self._out.pop(key)
            decisions.append(
                Consumed(
                    lot_id=out.item.lot_id,
                    code=out.item.code,
                    grams=out.item.grams,
                    taken_at=out.taken_at,
                    decided_at=now,
                    returned=False,
                )
            )
        return decisions

    def _drop(self, shelf_id: str, grams: float, now: datetime) -> Unmatched | None:
        """Start the return window of the lot on the shelf that weighs what was taken."""
        candidates = [
            (abs(item.grams - grams), key)
            for key, item in self._shelved.items()
            if item.shelf_id == shelf_id
            and abs(item.grams - grams) <= self._tolerance(item.grams, _TAKE_TOLERANCE)
        ]
        if not candidates:
            return Unmatched(shelf_id=shelf_id, delta_grams=-grams, at=now)
        closest = min(distance for distance, _key in candidates)
        tied = {key for distance, key in candidates if distance <= closest + self._config.noise_grams}
        # Opened last first; then the longest on the shelf (dicts keep the order items were set down).
        order = [key for key in self._shelved if key in tied]
        key = min(order, key=lambda k: (-self._opened_at(self._shelved[k].lot_id), order.index(k)))
        item = self._shelved.pop(key)
        # The shelf measured the drop; it is a better figure for this lot than the old reading.
        self._out[key] = _Out(item=replace(item, grams=grams), taken_at=now)
        return None

    def _increase(self, shelf_id: str, grams: float, now: datetime) -> Decision | None:
        """Explain an increase: a scanned lot placed, a taken lot put back, or neither."""
        scan = self._matching_scan(grams)
        if scan is not None:
            return self._place(scan, shelf_id, grams)
        key = self._matching_out(shelf_id, grams)
        if key is not None:
            return self._put_back(key, shelf_id, grams, now)
        scan = next((scan for scan in self._scans if scan.unit_grams is None), None)
        if scan is not None:
            return self._place(scan, shelf_id, grams)
        return Unmatched(shelf_id=shelf_id, delta_grams=grams, at=now)

    def _matching_scan(self, grams: float) -> _Scan | None:
        """Return the scan whose unit weight is closest to ``grams``, if within tolerance."""
        fits = [
            (abs(scan.unit_grams - grams), index)
            for index, scan in enumerate(self._scans)
            if scan.unit_grams is not None
            and abs(scan.unit_grams - grams) <= self._tolerance(scan.unit_grams, _PLACEMENT_TOLERANCE)
        ]
        return self._scans[min(fits)[1]] if fits else None

    def _matching_out(self, shelf_id: str, grams: float) -> int | None:
        """Return the taken item that ``grams`` put back fits best, if any."""
        fits = [
            (out.item.shelf_id != shelf_id, out.item.grams - grams, out.taken_at, key)
            for key, out in self._out.items()
            if grams <= out.item.grams + self._config.noise_grams
        ]
        return min(fits)[3] if fits else None

    def _place(self, scan: _Scan, shelf_id: str, grams: float) -> Placed:
        self._scans.remove(scan)
        self._shelved[self._next_item] = _Item(
            lot_id=scan.lot_id, code=scan.code, shelf_id=shelf_id, grams=grams
        )
        self._next_item += 1
        return Placed(lot_id=scan.lot_id, shelf_id=shelf_id, grams=grams)

    def _put_back(self, key: int, shelf_id: str, grams: float, now: datetime) -> Consumed | None:
        out = self._out.pop(key)
        self._shelved[key] = replace(out.item, shelf_id=shelf_id, grams=grams)
        used = out.item.grams - grams
        if used < self._config.noise_grams:
            return None
        return Consumed(
            lot_id=out.item.lot_id,
            code=out.item.code,
            grams=used,
            taken_at=out.taken_at,
            decided_at=now,
            returned=True,
        )

    def _opened_at(self, lot_id: int) -> float:
        """Return when the lot was opened as a timestamp, or minus infinity if it was not."""
        at = self._opened.get(lot_id)
        return at.timestamp() if at is not None else float("-inf")

    def _tolerance(self, grams: float, fraction: float) -> float:
        return max(self._config.noise_grams, fraction * grams)
