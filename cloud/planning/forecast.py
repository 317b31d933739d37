"""How fast each household uses each product, and when it will run out: vectorised over items.

The model is TSB (Teunter, Syntetos and Babai, 2011), the intermittent-demand cousin of Croston's
method: per item it smooths, day by day, the chance that anything is used (``occurrence``) and the
amount used on a day something is (``size``); the rate is their product. Unlike Croston it lowers
the chance on every day without use, so a product that stopped being used fades out instead of
keeping its old rate. Recent days weigh more (exponential smoothing), which follows tastes as they
change. Each item starts from a prior (the population's rate for that product and household size)
and moves to the household's own data as days are observed: after ``1 / alpha`` days of its own
the prior weighs about a third, after three times that almost nothing.

The spread of the daily use is smoothed the same way, and the days until the stock is gone come
from a normal approximation of the use over ``t`` days (mean ``t·rate``, variance ``t·sd²``):
solving ``t·rate + z·sd·√t = stock`` for ``√t`` is a quadratic, so every quantile of every item is
one vectorised expression. A weekday pattern (the population's, or the household's own once it has
enough weeks) scales the rate per day of the week.

Amounts are in packs of the product (0.25 = a quarter of a pack): the unit the fridge's events,
the retailer's pack sizes and the shelf lives all convert to.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

__all__ = ["Forecast", "ForecastParams", "days_until_empty", "forecast", "reorder_point", "z_score"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

# Smoothing per day of the chance of use and of the amount: 0.05 gives a memory of about three
# weeks, long enough to see a pack finished every week or so, short enough to follow a new habit.
# Chosen on validation seeds of the closed-loop simulation (docs/EVALUATION.md).
ALPHA_OCCURRENCE = 0.05
ALPHA_SIZE = 0.1
ALPHA_SPREAD = 0.05
# A day's use is never known better than this spread (packs/day), so a new item's first quiet
# days do not promise a steady rate.
MIN_SD = 0.02
# Until a household has this many weeks of its own, its weekday pattern is the population's.
OWN_WEEKDAYS_AFTER_WEEKS = 6


@dataclass(frozen=True, slots=True)
class ForecastParams:
    """The model's smoothing constants; the defaults are explained at the top of the module."""

    alpha_occurrence: float = ALPHA_OCCURRENCE
    alpha_size: float = ALPHA_SIZE
    alpha_spread: float = ALPHA_SPREAD

    def __post_init__(self) -> None:
        for name in ("alpha_occurrence", "alpha_size", "alpha_spread"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], not {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class Forecast:
    """Per item: the daily rate, its spread, and the factor of each weekday (Monday first)."""

    rate: FloatArray  # packs a day, on an average weekday
    sd: FloatArray  # standard deviation of one day's use
    occurrence: FloatArray  # chance that a day sees any use
    weekday: FloatArray  # (items, 7): factor of each weekday, mean 1

    def rate_on(self, weekday: int) -> FloatArray:
        """Return the rate on ``weekday`` (0 = Monday)."""
        return self.rate * self.weekday[:, weekday]


def forecast(
    usage: FloatArray,
    first_day: IntArray,
    prior_rate: FloatArray,
    *,
    last_weekday: int,
    prior_weekday: FloatArray | None = None,
    in_stock: BoolArray | None = None,
    params: ForecastParams | None = None,
) -> Forecast:
    """Return each item's forecast from its daily use.

    ``usage`` is (items, days), oldest day first, the last column yesterday (weekday
    ``last_weekday``); ``first_day`` the column of each item's first observed day (days before it,
    the household did not have the product, and do not count as days without use);
    ``prior_rate`` the population's rate for each item. ``prior_weekday`` (7,) is the population's
    weekday pattern (flat if omitted). ``in_stock`` (items, days) says whether the fridge had the
    item that day: a day without it says nothing about how much the household would have used
    (the demand was censored), so it counts like a day before the first.
    """
    params = params or ForecastParams()
    items, days = usage.shape
    if first_day.shape != (items,) or prior_rate.shape != (items,):
        raise ValueError("first_day and prior_rate need one value per item (row of usage)")
    # Start at the prior: a pack's worth of use, on the days that make the prior's rate.
    size = np.where(prior_rate > 1.0, prior_rate, 1.0)
    occurrence = np.clip(prior_rate / size, 1e-4, 1.0)
    spread = np.maximum(prior_rate, MIN_SD**2)  # variance of a day's use, about Poisson at first
    a_occ, a_size, a_var = params.alpha_occurrence, params.alpha_size, params.alpha_spread
    for day in range(days):
        seen = first_day <= day
        used = usage[:, day]
        if in_stock is not None:
            seen = seen & (in_stock[:, day] | (used > 0))
        some = seen & (used > 0)
        mean = occurrence * size
        occurrence = np.where(seen, occurrence + a_occ * (some - occurrence), occurrence)
        size = np.where(some, size + a_size * (used - size), size)
        spread = np.where(seen, spread + a_var * ((used - mean) ** 2 - spread), spread)
    rate = occurrence * size
    sd = np.maximum(np.sqrt(spread), MIN_SD)
    return Forecast(rate, sd, occurrence, _weekday(usage, first_day, last_weekday, prior_weekday))


def _weekday(
    usage: FloatArray, first_day: IntArray, last_weekday: int, prior: FloatArray | None
) -> FloatArray:
    """Return each item's weekday factors: its own after enough weeks, else the prior's."""
    items, days = usage.shape
    base = np.ones(7) if prior is None else prior / prior.mean()
    factors = np.tile(base, (items, 1))
    weeks = days // 7
    if weeks < OWN_WEEKDAYS_AFTER_WEEKS:
        return factors
    recent = usage[:, days - 7 * weeks :].reshape(items, weeks, 7).sum(axis=1)
    # Column j of `recent` is the weekday of day (days - 7*weeks + j); roll so Monday comes first.
    first_weekday = (last_weekday - 7 * weeks + 1) % 7
    recent = np.roll(recent, first_weekday, axis=1)
    totals = recent.sum(axis=1, keepdims=True)
    enough = (days - first_day >= 7 * OWN_WEEKDAYS_AFTER_WEEKS) & (totals[:, 0] > 0)
    # Shrink the item's own pattern toward the prior: a few packs a week say little per weekday.
    own = np.divide(7 * recent, totals, out=np.ones_like(recent), where=totals > 0)
    weight = totals / (totals + 7.0)
    mixed = weight * own + (1 - weight) * base
    factors[enough] = mixed[enough]
    return factors


def z_score(probability: float) -> float:
    """Return the standard normal quantile of ``probability``."""
    if not 0 < probability < 1:
        raise ValueError(f"a probability in (0, 1) is needed, not {probability}")
    return NormalDist().inv_cdf(probability)


def days_until_empty(
    stock: FloatArray, rate: FloatArray, sd: FloatArray, quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
) -> FloatArray:
    """Return (items, len(quantiles)): days until the stock is gone, at each quantile.

    The p10 is the early date (heavy use), the p90 the late one. An item not used at all never
    runs out (infinity); an empty one is out now (0).
    """
    stock = np.maximum(stock, 0.0)
    out = np.empty((stock.shape[0], len(quantiles)))
    for column, quantile in enumerate(quantiles):
        # P(T <= t) = P(use over t >= stock) = quantile  <=>  t·rate + z·sd·√t = stock, z = z(1 - q).
        z = z_score(1 - quantile)
        with np.errstate(divide="ignore", invalid="ignore"):
            root = (-z * sd + np.sqrt((z * sd) ** 2 + 4 * rate * stock)) / (2 * rate)
            days = np.where(rate > 0, root**2, np.inf)
        out[:, column] = np.where(stock <= 0, 0.0, days)
    return out


def reorder_point(rate: FloatArray, sd: FloatArray, horizon_days: float, service_level: float) -> FloatArray:
    """Return the stock below which the chance of running out within ``horizon_days`` exceeds
    ``1 - service_level``."""
    point: FloatArray = rate * horizon_days + z_score(service_level) * sd * np.sqrt(horizon_days)
    return point
