"""When does a household buy an item again? The reorder-date evaluation.

Each household with two or more baskets (one basket per day) has its last basket held out. For every
item of that basket the household had bought before, the predicted next purchase day is the item's last
purchase day plus a typical interval, and the error is its distance in days to the held-out day.

The typical interval is a geometric mean shrunk toward a prior, so that a household with one or two
purchases of an item leans on everyone's habit while a household with many leans on its own:

    item prior  log I_i  = (Σ log gaps of item i, all households + A·log G) / (n_i + A)
    household   log I_hi = (Σ log gaps of i in household h + B·log I_i) / (n_hi + B)

where G is the geometric mean of all gaps, A = ITEM_PRIOR_GAPS and B = HOUSEHOLD_PRIOR_GAPS. The
baselines use the item prior alone, or the household's mean gap between any two baskets.

The held-out baskets are also predicted as a top-k list, by our next-basket model and by the baselines.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from evaluation.baskets import predict_all
from evaluation.datasets import DayBaskets
from evaluation.metrics import score_baskets
from evaluation.nextbasket import NextBasketParams

__all__ = ["IntervalModel", "evaluate_reorder"]

# An item's own gaps outweigh the all-items prior once it has more than this many (shrinkage strength).
ITEM_PRIOR_GAPS = 5.0
# A household's own gaps for an item outweigh the item's prior once it has more than this many:
# two keeps one odd gap from deciding alone.
HOUSEHOLD_PRIOR_GAPS = 2.0
# The gap assumed when the data has no repeat purchase at all (a week).
DEFAULT_GAP_DAYS = 7.0

StepCallback = Callable[[str], None]


def _quiet(_step: str) -> None:
    """Ignore a progress step."""


@dataclass(frozen=True)
class _Gaps:
    """Sum of log gaps and their number."""

    log_sum: float = 0.0
    count: int = 0

    def add(self, gap: int) -> _Gaps:
        """Return these gaps and one more."""
        return _Gaps(self.log_sum + math.log(gap), self.count + 1)

    def shrunk(self, prior_log: float, prior_weight: float) -> float:
        """Return the shrunk mean log gap."""
        return (self.log_sum + prior_weight * prior_log) / (self.count + prior_weight)


class IntervalModel:
    """Predict the day a household next buys an item it bought before."""

    def __init__(self, histories: Mapping[str, Sequence[tuple[int, Sequence[str]]]]) -> None:
        self._last: dict[tuple[str, str], int] = {}
        self._household: dict[tuple[str, str], _Gaps] = {}
        self._basket_gap: dict[str, float] = {}
        items: dict[str, _Gaps] = {}
        every = _Gaps()
        basket_gaps: list[int] = []
        for household, baskets in histories.items():
            days = [day for day, _ in baskets]
            gaps = [b - a for a, b in itertools.pairwise(days)]
            if gaps:
                self._basket_gap[household] = statistics.fmean(gaps)
                basket_gaps.extend(gaps)
            for day, basket in baskets:
                for item in basket:
                    key = (household, item)
                    if key in self._last:
                        gap = day - self._last[key]
                        self._household[key] = self._household.get(key, _Gaps()).add(gap)
                        items[item] = items.get(item, _Gaps()).add(gap)
                        every = every.add(gap)
                    self._last[key] = day
        self._global_log = (
            every.log_sum / every.count
            if every.count
            else math.log(statistics.fmean(basket_gaps) if basket_gaps else DEFAULT_GAP_DAYS)
        )
        self._mean_basket_gap = statistics.fmean(basket_gaps) if basket_gaps else DEFAULT_GAP_DAYS
        self._item_log = {
            item: gaps.shrunk(self._global_log, ITEM_PRIOR_GAPS) for item, gaps in items.items()
        }

    def item_interval(self, item: str) -> float:
        """Return the item's typical gap in days over all households (the prior)."""
        return math.exp(self._item_log.get(item, self._global_log))

    def interval(self, household: str, item: str) -> float:
        """Return the household's typical gap in days between two purchases of the item."""
        prior = self._item_log.get(item, self._global_log)
        return math.exp(self._household.get((household, item), _Gaps()).shrunk(prior, HOUSEHOLD_PRIOR_GAPS))

    def last_day(self, household: str, item: str) -> int | None:
        """Return the day the household last bought the item, or None if it never did."""
        return self._last.get((household, item))

    def next_day(self, household: str, item: str) -> float | None:
        """Return the predicted day of the next purchase, or None for an item never bought."""
        last = self.last_day(household, item)
        return None if last is None else last + self.interval(household, item)

    def basket_gap(self, household: str) -> float:
        """Return the household's mean gap between baskets (everyone's when it has one basket)."""
        return self._basket_gap.get(household, self._mean_basket_gap)


def _errors(values: Sequence[float]) -> dict[str, float | int]:
    """Return the mean and median absolute error in days, and how many pairs they cover."""
    return {
        "mae_days": round(statistics.fmean(values), 2) if values else 0.0,
        "median_ae_days": round(statistics.median(values), 2) if values else 0.0,
        "pairs": len(values),
    }


def evaluate_reorder(
    households: DayBaskets,
    k: int,
    params: NextBasketParams | None = None,
    on_step: StepCallback = _quiet,
) -> dict[str, object]:
    """Hold out each household's last basket; score reorder days and top-k baskets."""
    started = time.monotonic()
    held_out = {h: baskets[-1] for h, baskets in households.items() if len(baskets) >= 2}
    if not held_out:
        raise ValueError("no household has baskets on two or more days: there is nothing to hold out")
    histories = {h: baskets[:-1] if h in held_out else baskets for h, baskets in households.items()}
    on_step("reorder intervals")
    model = IntervalModel(histories)
    ours: list[float] = []
    item_only: list[float] = []
    household_gap: list[float] = []
    for household, (day, basket) in held_out.items():
        for item in basket:
            last = model.last_day(household, item)
            if last is None:
                continue
            ours.append(abs(last + model.interval(household, item) - day))
            item_only.append(abs(last + model.item_interval(item) - day))
            household_gap.append(abs(last + model.basket_gap(household) - day))
    # The basket models take integer item ids.
    names = sorted({item for baskets in households.values() for _, basket in baskets for item in basket})
    ids = {name: n for n, name in enumerate(names)}
    users = list(histories)
    coded = [[[ids[item] for item in basket] for _, basket in histories[user]] for user in users]
    predictions = predict_all(coded, k, params, on_step)
    on_step("scoring")
    index = [n for n, user in enumerate(users) if user in held_out]
    truths = [{ids[item] for item in held_out[users[n]][1]} for n in index]
    pasts = [{item for basket in coded[n] for item in basket} for n in index]
    return {
        "k": k,
        "households": {"total": len(households), "evaluated": len(held_out), "items": len(names)},
        "reorder_days": {
            "ours": _errors(ours),
            "item_interval": _errors(item_only),
            "household_basket_gap": _errors(household_gap),
        },
        "baskets": {
            name: score_baskets([predicted[n] for n in index], truths, pasts, k).as_dict()
            for name, predicted in predictions.items()
        },
        "params": (params or NextBasketParams()).as_dict(),
        "seconds": round(time.monotonic() - started, 1),
    }
