"""Closed-loop evaluation: reorder policies run simulated households, whose true use is known.

Every policy gets the same households (:class:`simulator.life.Household`, the same seeds) that
shop for nothing themselves: each morning the policy looks at what their fridges know and orders
from the same simulated retailer (one day's lead time, delivered the next evening). The policy
sees only what a fridge sees: packs scanned in, opened, finished or thrown away, and what a weight
shelf weighs of the bottles in the door; an opened pack elsewhere counts as full until it is
finished. The households' truth (what they wanted and did not have, what expired) scores it.

Policies:

- ``grocy``: fixed minimum stock, as Grocy does it: below ``min_stock`` packs, buy up to it.
- ``dash``: fixed threshold, as Amazon Dash Replenishment does it: at ``threshold`` packs or
  fewer, reorder a fixed ``quantity``.
- ``frigo``: ours (:mod:`cloud.planning.forecast` and :mod:`cloud.planning.replenishment`).

A household's products join the plan once its fridge has seen them: a new taste is bought in a shop
the first time, by the household (as it would in life), and ordered after that.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from cloud.planning.forecast import Forecast, ForecastParams, forecast, z_score
from cloud.planning.replenishment import PlanItems, PolicyParams, plan
from simulator.catalog import CATALOG, Category, Product
from simulator.life import FLEXIBLE, Action, ActionKind, DayTruth, Household, Shopping
from simulator.retailer import Order, OrderLine, OrderStatus, RetailerSettings, SimulatedRetailer
from simulator.world import on_weight_shelf

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

START = date(2026, 1, 5)
CATEGORIES = list(Category)
# Orders go out in the morning, before the day's eating.
ORDER_HOUR = 7
# The most products a household's fridge is expected to see over a run (rows are added as seen).
ROWS_PER_HOUSEHOLD = 80
# Grocy's minimum stock and Dash's threshold and fixed quantity, in packs.
GROCY_MIN_STOCK = 1.0
DASH_THRESHOLD = 1.0
DASH_QUANTITY = 2
# A z of 1.28 is the 10th and 90th percentiles of the stock forecast drawn in the plots.
BAND_Z = z_score(0.9)


@dataclass
class Fleet:
    """What the fridges of a run know, one row per (household, product) they have seen."""

    households: int
    days: int
    sizes: IntArray  # people per household
    weighed: Callable[[str], bool]  # whether the weight shelf weighs a product
    category: Callable[[str], str]  # a product's category
    row_of: list[dict[str, int]] = field(default_factory=list)
    household: list[int] = field(default_factory=list)
    code: list[str] = field(default_factory=list)
    stock: list[float] = field(default_factory=list)
    on_order: list[float] = field(default_factory=list)
    first_day: list[int] = field(default_factory=list)
    # The day the pack in use was started: opened, or (without an opening scan) the day the one
    # before it was finished or thrown away, or the first pack came in.
    started: list[int | None] = field(default_factory=list)
    usage: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    in_stock: NDArray[np.bool_] = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))
    left: dict[tuple[int, int], float] = field(default_factory=dict)  # (household, pack) -> left

    def __post_init__(self) -> None:
        self.row_of = [{} for _ in range(self.households)]
        self.usage = np.zeros((self.households * ROWS_PER_HOUSEHOLD, self.days))
        self.in_stock = np.zeros(self.usage.shape, dtype=bool)

    def row(self, household: int, code: str, day: int) -> int:
        """Return the row of the household's product, adding it the first time it is seen."""
        row = self.row_of[household].get(code)
        if row is None:
            row = len(self.code)
            if row >= self.usage.shape[0]:
                self.usage = np.vstack([self.usage, np.zeros_like(self.usage)])
                self.in_stock = np.vstack([self.in_stock, np.zeros_like(self.in_stock)])
            self.row_of[household][code] = row
            self.household.append(household)
            self.code.append(code)
            self.stock.append(0.0)
            self.on_order.append(0.0)
            self.first_day.append(day)
            self.started.append(None)
        return row

    def observe(self, household: int, day: int, actions: Sequence[Action]) -> None:
        """Update the fridge's view with one day of the household's actions."""
        for row in self.row_of[household].values():
            self.in_stock[row, day] = self.stock[row] > 1e-9  # as the day began
        for action in actions:
            row = self.row(household, action.code, day)
            key = (household, action.pack)
            match action.kind:
                case ActionKind.PUT_IN:
                    if self.stock[row] <= 1e-9:
                        self.started[row] = day
                    self.stock[row] += 1.0
                    self.left[key] = 1.0
                case ActionKind.OPEN:
                    self.started[row] = day
                case ActionKind.POUR if self.weighed(action.code):
                    used = self.left.get(key, 1.0) - action.left
                    self.left[key] = action.left
                    self.stock[row] -= used
                    self.usage[row, day] += used
                case ActionKind.USE_UP:
                    used = self.left.pop(key, 1.0)
                    self.stock[row] -= used
                    self.usage[row, day] += used
                    self.started[row] = day
                case ActionKind.DISCARD:
                    self.stock[row] -= self.left.pop(key, 1.0)
                    self.started[row] = day
                case _:
                    pass

    def group_of(self, row: int) -> int:
        """Return the row's substitution group: its household's category, if it is a flexible one."""
        category = self.category(self.code[row])
        if category not in FLEXIBLE:
            return -1
        return self.household[row] * len(CATEGORIES) + CATEGORIES.index(Category(category))

    def weighed_rows(self) -> NDArray[np.bool_]:
        """Return which rows the weight shelf weighs (their stock is known to the gram)."""
        return np.asarray([self.weighed(code) for code in self.code], dtype=bool)

    def arrays(self) -> tuple[IntArray, FloatArray, FloatArray, IntArray]:
        """Return household, stock, on_order and first_day as arrays over the rows."""
        return (
            np.asarray(self.household, dtype=np.int64),
            np.maximum(np.asarray(self.stock), 0.0),
            np.asarray(self.on_order),
            np.asarray(self.first_day, dtype=np.int64),
        )


class Policy(Protocol):
    """A reorder policy: packs to order now for each row of the fleet."""

    name: str

    def decide(self, fleet: Fleet, day: int, weekday: int) -> IntArray:
        """Return the packs to order for each row on ``day`` (from the run's start)."""
        ...


@dataclass
class MinimumStock:
    """Grocy: keep at least ``min_stock`` packs; below it, buy what is missing."""

    min_stock: float = GROCY_MIN_STOCK
    name: str = "grocy"

    def decide(self, fleet: Fleet, day: int, weekday: int) -> IntArray:
        """Return the missing packs of every row below the minimum."""
        _household, stock, on_order, _first = fleet.arrays()
        position = stock + on_order
        missing = np.ceil(self.min_stock - position - 1e-9)
        return np.where(position < self.min_stock, missing, 0).astype(np.int64)


@dataclass
class FixedThreshold:
    """Dash Replenishment: at ``threshold`` packs or fewer, reorder ``quantity`` packs."""

    threshold: float = DASH_THRESHOLD
    quantity: int = DASH_QUANTITY
    name: str = "dash"

    def decide(self, fleet: Fleet, day: int, weekday: int) -> IntArray:
        """Return the fixed quantity for every row at or below the threshold."""
        _household, stock, on_order, _first = fleet.arrays()
        return np.where(stock + on_order <= self.threshold, self.quantity, 0).astype(np.int64)


@dataclass
class Frigo:
    """Ours: the forecast of each item's use and the waste-aware reorder policy."""

    shelf_life: Callable[[str], float]
    forecast_params: ForecastParams = field(default_factory=ForecastParams)
    policy_params: PolicyParams = field(default_factory=PolicyParams)
    name: str = "frigo"
    last: Forecast | None = None
    last_stock: FloatArray | None = None

    def decide(self, fleet: Fleet, day: int, weekday: int) -> IntArray:
        """Forecast every row from what the fridges saw, then apply the policy."""
        household, stock, on_order, first = fleet.arrays()
        rows = household.shape[0]
        usage = fleet.usage[:rows, :day]
        prior = population_prior(fleet, usage, first, household, day)
        result = forecast(
            usage,
            first,
            prior,
            last_weekday=(weekday - 1) % 7,
            in_stock=fleet.in_stock[:rows, :day],
            params=self.forecast_params,
        )
        # The pack in use, unless weighed, is partly gone: as much as the rate says since it started.
        started = np.asarray([day if d is None else d for d in fleet.started])
        in_use = np.where(fleet.weighed_rows(), 0, day - started)
        estimate = np.maximum(stock - np.minimum(result.rate * in_use, np.minimum(stock, 1.0) * 0.9), 0.0)
        life = np.asarray([self.shelf_life(code) for code in fleet.code])
        group = np.asarray([fleet.group_of(row) for row in range(rows)], dtype=np.int64)
        items = PlanItems(household, estimate, on_order, life, group=group)
        decision = plan(items, result, self.policy_params)
        self.last, self.last_stock = result, estimate
        return decision.quantity


def population_prior(
    fleet: Fleet, usage: FloatArray, first: IntArray, household: IntArray, day: int
) -> FloatArray:
    """Return each row's prior rate: the product's use per person-day over the fleet, times the size."""
    observed = np.maximum(day - first, 0).astype(np.float64)
    people = fleet.sizes[household] ** 0.8
    used = usage.sum(axis=1)
    codes = {code: index for index, code in enumerate(sorted(set(fleet.code)))}
    product = np.asarray([codes[code] for code in fleet.code], dtype=np.int64)
    per_person_day = np.bincount(product, weights=used, minlength=len(codes)) / np.maximum(
        np.bincount(product, weights=observed * people, minlength=len(codes)), 1e-9
    )
    overall = used.sum() / max(float((observed * people).sum()), 1e-9)
    seen = np.bincount(product, weights=observed, minlength=len(codes)) >= 28
    rate = np.where(seen, per_person_day, overall)[product] * people
    result: FloatArray = np.where(rate > 0, rate, 0.05)
    return result


@dataclass
class PolicyResult:
    """What a policy did to the households over the run."""

    policy: str
    stockout_item_days: int = 0
    item_days: int = 0
    packs_wasted: float = 0.0  # what was left of the packs thrown away expired
    packs_in: int = 0  # packs that came into the fridges: delivered, or bought in a shop
    orders: int = 0
    household_months: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Return the figures the issue asks for, rounded."""
        return {
            "stockout_item_days_percent": round(100 * self.stockout_item_days / max(self.item_days, 1), 3),
            "units_wasted_percent": round(100 * self.packs_wasted / max(self.packs_in, 1), 3),
            "orders_per_household_month": round(self.orders / max(self.household_months, 1e-9), 3),
            "stockout_item_days": self.stockout_item_days,
            "item_days": self.item_days,
            "packs_wasted": round(self.packs_wasted, 2),
            "packs_in": self.packs_in,
            "orders": self.orders,
        }


def run_policy(
    policy: Policy,
    households: int,
    days: int,
    seed: int,
    *,
    retailer: RetailerSettings | None = None,
    report_dir: Path | None = None,
    on_day: Callable[[int], None] | None = None,
) -> PolicyResult:
    """Run ``households`` for ``days`` with ``policy`` ordering for them; return the scores."""
    settings = retailer or RetailerSettings(
        lead_time_days=1, late_rate=0, failure_rate=0, out_of_stock_rate=0, substitution_rate=0
    )
    shop = SimulatedRetailer(settings, seed=seed)
    homes = [
        Household(seed * 100_003 + i, START, name=f"home-{i:04d}", shopping=Shopping.PLANNER, retailer=shop)
        for i in range(1, households + 1)
    ]
    by_code = {p.code: p for p in CATALOG}

    def weighed(code: str) -> bool:
        product = by_code.get(code)
        return product is not None and on_weight_shelf(product)

    def category(code: str) -> str:
        product = by_code.get(code)
        return product.category if product is not None else "other"

    sizes = np.asarray([h.profile.size for h in homes], dtype=np.int64)
    fleet = Fleet(households, days, sizes, weighed, category)

    result = PolicyResult(policy.name, household_months=households * days / 30)
    pending: list[Order] = []
    writer = _Report(report_dir) if report_dir is not None else None
    for day in range(days):
        today = START + timedelta(days=day)
        if day > 0:  # the first morning the fridges know nothing yet: the households stock up
            quantities = policy.decide(fleet, day, today.weekday())
            pending += _place(shop, fleet, quantities, today)
            if writer is not None and isinstance(policy, Frigo):
                writer.forecast(fleet, policy, today)
        for index, home in enumerate(homes):
            actions, truth = home.live()
            fleet.observe(index, day, actions)
            _score(result, home, truth)
            if writer is not None:
                writer.truth(home.name, truth)
        for order in [o for o in pending if o.status is not OrderStatus.PENDING]:
            pending.remove(order)
            index = int(order.household.removeprefix("home-")) - 1
            for line in order.lines:
                fleet.on_order[fleet.row(index, line.code, day)] -= line.quantity
        if on_day is not None:
            on_day(day)
    result.orders = len(shop.orders)
    if writer is not None:
        writer.orders(shop.orders)
        writer.close()
    return result


def _place(shop: SimulatedRetailer, fleet: Fleet, quantities: IntArray, today: date) -> list[Order]:
    """Place one order per household with every line the policy asked for."""
    at = datetime.combine(today, time(ORDER_HOUR))
    lines: dict[int, list[OrderLine]] = {}
    for row in np.flatnonzero(quantities > 0):
        household = fleet.household[row]
        lines.setdefault(household, []).append(OrderLine(fleet.code[row], int(quantities[row])))
        fleet.on_order[row] += float(quantities[row])
    return [shop.place(f"home-{home + 1:04d}", basket, at) for home, basket in sorted(lines.items())]


def _score(result: PolicyResult, home: Household, truth: DayTruth) -> None:
    """Count the day's stockouts (items wanted and missing) and waste, over days at home."""
    result.packs_wasted += sum(truth.wasted_amount.values())
    result.packs_in += sum(truth.bought.values())
    if truth.away:
        return
    result.item_days += len(home.portfolio)
    result.stockout_item_days += sum(1 for amount in truth.wanted_missing.values() if amount > 1e-9)


def closed_loop(
    households: int,
    days: int,
    seed: int,
    *,
    policies: Sequence[Policy] | None = None,
    report_dir: Path | None = None,
    on_day: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Run every policy over the same households; return their figures."""
    if households < 1 or days < 2:
        raise ValueError("a closed loop needs at least one household and two days")
    by_code = {p.code: p for p in CATALOG}
    chosen = list(policies) if policies is not None else default_policies(by_code)
    results = {}
    for policy in chosen:
        folder = report_dir / policy.name if report_dir is not None else None
        tick = (lambda day, name=policy.name: on_day(name, day)) if on_day is not None else None
        outcome = run_policy(policy, households, days, seed, report_dir=folder, on_day=tick)
        results[policy.name] = outcome.summary()
    return {
        "households": households,
        "days": days,
        "seed": seed,
        "lead_time_days": 1,
        "policies": results,
    }


def default_policies(by_code: dict[str, Product]) -> list[Policy]:
    """Return Grocy's minimum stock, Dash's fixed threshold and ours, with their defaults."""

    def shelf_life(code: str) -> float:
        product = by_code.get(code)
        return float(product.shelf_life_days) if product is not None else 7.0

    return [MinimumStock(), FixedThreshold(), Frigo(shelf_life)]


class _Report:
    """Writes a policy's run in the simulator's report format, for :mod:`simulator.plots`."""

    def __init__(self, folder: Path) -> None:
        from simulator.plots import FORECAST_COLUMNS, TRUTH_COLUMNS

        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._truth_file = (folder / "truth.csv").open("w", newline="", encoding="utf-8")
        self._forecast_file = (folder / "forecast.csv").open("w", newline="", encoding="utf-8")
        self._truth, self._forecast = csv.writer(self._truth_file), csv.writer(self._forecast_file)
        self._truth.writerow(TRUTH_COLUMNS)
        self._forecast.writerow(FORECAST_COLUMNS)

    def truth(self, device: str, truth: DayTruth) -> None:
        from simulator.runner import truth_rows

        self._truth.writerows(truth_rows(device, truth))

    def forecast(self, fleet: Fleet, policy: Frigo, today: date) -> None:
        """Write the stock expected at the end of ``today``: what is there, less a day's use."""
        if policy.last is None or policy.last_stock is None:
            return
        rate, sd = policy.last.rate_on(today.weekday()), policy.last.sd
        for row, stock in enumerate(policy.last_stock):
            p50 = max(stock - rate[row], 0.0)
            self._forecast.writerow(
                [
                    today.isoformat(),
                    f"home-{fleet.household[row] + 1:04d}",
                    fleet.code[row],
                    round(p50, 4),
                    round(max(p50 - BAND_Z * sd[row], 0.0), 4),
                    round(max(p50 + BAND_Z * sd[row], 0.0), 4),
                ]
            )

    def orders(self, orders: Sequence[Order]) -> None:
        from simulator.runner import write_orders

        write_orders(self.folder / "orders.csv", orders)

    def close(self) -> None:
        from simulator.plots import write_plots

        self._truth_file.close()
        self._forecast_file.close()
        write_plots(self.folder)
