"""PNG plots of a simulator run, written into the report folder's ``plots/``.

``write_plots`` reads the report's CSV files and always writes the same five plots, so that every
report has the same files:

- ``stock.png``: for the most eaten (household, product) items, the true stock in packs day by day,
  with stockouts, waste and deliveries marked, against the planner's forecast (p50 and p10–p90 band);
- ``stockouts.png``: per day, the share of (household, product in its portfolio) pairs short of the
  product, and the packs wanted but missing;
- ``waste.png``: per day, packs wasted against packs bought, and the waste so far as a share of buys;
- ``orders.png``: per day, orders placed, delivered and failed;
- ``offers.png``: per day, offers sent and accepted.

``truth.csv`` must be there; ``orders.csv``, ``forecast.csv`` and ``offers.csv`` are optional, and
the plots that need them say so when they are absent. A household's portfolio is every product it
has a row for in ``truth.csv``. Every row of ``offers.csv`` is one offer sent that day; its status
says what became of it (``sent``: no answer yet).
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from simulator.errors import ReportError

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from numpy.typing import NDArray

TRUTH_COLUMNS = ("day", "device_id", "code", "eaten", "bought", "wasted", "missing", "stock")
ORDER_COLUMNS = (
    "order_id",
    "device_id",
    "placed",
    "due",
    "delivered",
    "status",
    "code",
    "quantity",
    "substitute_code",
)
FORECAST_COLUMNS = ("day", "device_id", "code", "stock_p50", "stock_p10", "stock_p90")
OFFER_COLUMNS = ("day", "device_id", "code", "status")
# "out_of_stock" marks a line of a delivered order that did not come.
ORDER_STATUSES = frozenset({"delivered", "failed", "cancelled", "pending", "out_of_stock"})
OFFER_STATUSES = frozenset({"sent", "accepted", "dismissed"})
PLOTS = ("stock.png", "stockouts.png", "waste.png", "orders.png", "offers.png")
# 100 dpi on figures 10 inches wide: readable on a laptop, and PNGs of some tens of kilobytes.
DPI = 100
WIDTH = 10.0

_T = TypeVar("_T")

Item = tuple[str, str]
"""A (device_id, code) pair: one product in one household's fridge."""


@dataclass(slots=True)
class DayTotals:
    """What happened on one day over every household and product."""

    stockouts: int = 0
    missing: float = 0.0
    bought: int = 0
    wasted: int = 0


@dataclass
class Truth:
    """The aggregates of ``truth.csv`` the plots need, read in one pass."""

    days: list[date]
    """Every day of the run, in order, including days without rows."""
    totals: dict[date, DayTotals]
    eaten: dict[Item, float]
    """Packs eaten over the run per item; its keys are the households' portfolios."""


@dataclass
class ItemDays:
    """One item's days in ``truth.csv``: stock at the end of the day, stockouts and waste."""

    stock: dict[date, float] = field(default_factory=dict)
    stockouts: list[date] = field(default_factory=list)
    wasted: list[date] = field(default_factory=list)


@dataclass(frozen=True)
class OrderLine:
    """One line of ``orders.csv``."""

    order_id: str
    device_id: str
    placed: date
    due: date
    delivered: date | None
    status: str
    code: str
    quantity: float
    substitute_code: str

    @property
    def delivered_code(self) -> str:
        """Return the code of the product delivered (or to be): the substitute if there is one."""
        return self.substitute_code or self.code


@dataclass(frozen=True)
class ForecastDay:
    """The planner's forecast of one item's stock on one day."""

    day: date
    p50: float
    p10: float
    p90: float


@dataclass(frozen=True)
class Offer:
    """One line of ``offers.csv``."""

    day: date
    device_id: str
    code: str
    status: str


def write_plots(report_dir: Path, *, items: int = 4, devices: Sequence[str] | None = None) -> list[Path]:
    """Write the run's plots into ``report_dir/plots/``; return their paths, in the order of ``PLOTS``.

    ``stock.png`` shows the ``items`` most eaten items, of the given ``devices`` if any.
    """
    if items < 1:
        raise ValueError(f"items must be at least 1, got {items}")
    truth_path = report_dir / "truth.csv"
    if not truth_path.is_file():
        raise ReportError(f"{truth_path} does not exist: is {report_dir} the report folder of a run?")
    truth = read_truth(truth_path)
    chosen = choose_items(truth.eaten, items, devices)
    # A second pass, for the chosen items only: keeping every item's days until the choice is made
    # would take over 100 MB of Python objects for a run of 100 households over 90 days.
    item_days = read_item_days(truth_path, chosen)
    orders = _optional(report_dir / "orders.csv", read_orders)
    forecast = _optional(report_dir / "forecast.csv", lambda path: read_forecast(path, chosen))
    offers = _optional(report_dir / "offers.csv", read_offers)

    plots_dir = report_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    paths = [plots_dir / name for name in PLOTS]
    figures = [
        _stock_figure(truth, chosen, item_days, forecast, orders),
        _stockouts_figure(truth),
        _waste_figure(truth),
        _orders_figure(truth.days, orders),
        _offers_figure(truth.days, offers),
    ]
    for path, figure in zip(paths, figures, strict=True):
        figure.savefig(path, dpi=DPI)
    return paths


def choose_items(eaten: Mapping[Item, float], items: int, devices: Sequence[str] | None = None) -> list[Item]:
    """Return the ``items`` most eaten items, of ``devices`` if given; ties go by device, then code."""
    if devices is not None:
        unknown = sorted(set(devices) - {device for device, _ in eaten})
        if unknown:
            raise ReportError(f"no rows in truth.csv for device(s) {', '.join(unknown)}")
        wanted = set(devices)
        eaten = {item: packs for item, packs in eaten.items() if item[0] in wanted}
    ranked = sorted(eaten.items(), key=lambda entry: (-entry[1], entry[0]))
    return [item for item, _ in ranked[:items]]


def read_truth(path: Path) -> Truth:
    """Read ``truth.csv`` into daily totals and packs eaten per item."""
    by_day: dict[str, DayTotals] = {}
    eaten: dict[Item, float] = {}
    for line, row in _rows(path, TRUTH_COLUMNS):
        day, device, code, packs_eaten, bought, wasted, missing, _ = row
        try:
            totals = by_day.get(day)
            if totals is None:
                date.fromisoformat(day)  # Once a day, to name the line of a bad date.
                totals = by_day[day] = DayTotals()
            item = (device, code)
            eaten[item] = eaten.get(item, 0.0) + float(packs_eaten)
            packs_missing = float(missing)
            if packs_missing > 0:
                totals.stockouts += 1
                totals.missing += packs_missing
            totals.bought += int(bought)
            totals.wasted += int(wasted)
        except ValueError as error:
            raise ReportError(f"{path}, line {line}: {error}") from None
    totals_by_date = {date.fromisoformat(day): totals for day, totals in by_day.items()}
    return Truth(_every_day(totals_by_date), totals_by_date, eaten)


def read_item_days(path: Path, items: Sequence[Item]) -> dict[Item, ItemDays]:
    """Read the days of ``items`` from ``truth.csv``."""
    found = {item: ItemDays() for item in items}
    for line, row in _rows(path, TRUTH_COLUMNS):
        days = found.get((row[1], row[2]))
        if days is None:
            continue
        try:
            day = date.fromisoformat(row[0])
            days.stock[day] = float(row[7])
            if float(row[6]) > 0:
                days.stockouts.append(day)
            if int(row[5]) > 0:
                days.wasted.append(day)
        except ValueError as error:
            raise ReportError(f"{path}, line {line}: {error}") from None
    return found


def read_orders(path: Path) -> list[OrderLine]:
    """Read the order lines of ``orders.csv``."""
    lines = []
    for line, row in _rows(path, ORDER_COLUMNS):
        order_id, device, placed, due, delivered, status, code, quantity, substitute = row
        try:
            if status not in ORDER_STATUSES:
                raise ValueError(f"status {status!r} is not one of {', '.join(sorted(ORDER_STATUSES))}")
            if status == "delivered" and not delivered:
                raise ValueError("a delivered order without a delivered date")
            lines.append(
                OrderLine(
                    order_id,
                    device,
                    date.fromisoformat(placed),
                    date.fromisoformat(due),
                    date.fromisoformat(delivered) if delivered else None,
                    status,
                    code,
                    float(quantity),
                    substitute,
                )
            )
        except ValueError as error:
            raise ReportError(f"{path}, line {line}: {error}") from None
    return lines


def read_forecast(path: Path, items: Sequence[Item]) -> dict[Item, list[ForecastDay]]:
    """Read the forecast of ``items`` from ``forecast.csv``, by day."""
    found: dict[Item, list[ForecastDay]] = {item: [] for item in items}
    for line, row in _rows(path, FORECAST_COLUMNS):
        days = found.get((row[1], row[2]))
        if days is None:
            continue
        try:
            days.append(ForecastDay(date.fromisoformat(row[0]), float(row[3]), float(row[4]), float(row[5])))
        except ValueError as error:
            raise ReportError(f"{path}, line {line}: {error}") from None
    for days in found.values():
        days.sort(key=lambda forecast: forecast.day)
    return {item: days for item, days in found.items() if days}


def read_offers(path: Path) -> list[Offer]:
    """Read the offers of ``offers.csv``."""
    offers = []
    for line, (day, device, code, status) in _rows(path, OFFER_COLUMNS):
        try:
            if status not in OFFER_STATUSES:
                raise ValueError(f"status {status!r} is not one of {', '.join(sorted(OFFER_STATUSES))}")
            offers.append(Offer(date.fromisoformat(day), device, code, status))
        except ValueError as error:
            raise ReportError(f"{path}, line {line}: {error}") from None
    return offers


# -- figures -------------------------------------------------------------------------------


def _stock_figure(
    truth: Truth,
    items: Sequence[Item],
    item_days: Mapping[Item, ItemDays],
    forecast: Mapping[Item, list[ForecastDay]] | None,
    orders: Sequence[OrderLine] | None,
) -> Figure:
    """Draw each item's true stock against its forecast, one subplot per item."""
    title = "Stock in packs at the end of the day: truth and forecast"
    if not items:
        return _no_data(title, "no items in truth.csv")
    deliveries: dict[Item, set[date]] = {}
    for line in orders or ():
        if line.delivered is not None and line.status == "delivered":
            deliveries.setdefault((line.device_id, line.delivered_code), set()).add(line.delivered)
    columns = 1 if len(items) == 1 else 2
    rows = math.ceil(len(items) / columns)
    figure = _figure(0.5 + 2.7 * rows)
    figure.suptitle(title)
    axes = figure.subplots(rows, columns, squeeze=False).flat
    for ax, item in zip(axes, items, strict=False):
        _stock_axes(
            ax,
            truth.days,
            item,
            truth.eaten[item],
            item_days[item],
            None if forecast is None else forecast.get(item, []),
            sorted(deliveries.get(item, ())),
        )
    for ax in axes[len(items) :]:
        ax.set_visible(False)
    return figure


def _stock_axes(
    ax: Axes,
    days: Sequence[date],
    item: Item,
    eaten: float,
    found: ItemDays,
    forecast: Sequence[ForecastDay] | None,
    deliveries: Sequence[date],
) -> None:
    """Draw one item's stock, forecast (None: the run has none) and events on ``ax``."""
    stock = [found.stock.get(day, 0.0) for day in days]
    top = max(stock, default=0.0)
    ax.step(_dates(days), stock, where="mid", color="C0", label="stock (truth)")
    if forecast:
        x = _dates([day.day for day in forecast])
        low, high = [day.p10 for day in forecast], [day.p90 for day in forecast]
        ax.fill_between(x, low, high, color="C1", alpha=0.25, linewidth=0, label="forecast p10–p90")
        ax.plot(x, [day.p50 for day in forecast], color="C1", linestyle="--", label="forecast p50")
        top = max(top, *high)
    else:
        # An empty entry: the legend then says why there is no forecast line.
        missing = "in this run" if forecast is None else "of this item"
        ax.plot([], [], " ", label=f"no forecast {missing}")
    if found.stockouts:
        ax.scatter(
            _dates(found.stockouts), [0.0] * len(found.stockouts), marker="x", color="C3", label="stockout"
        )
    for events, marker, color, label in (
        (found.wasted, "v", "C5", "wasted"),
        (deliveries, "^", "C2", "delivered"),
    ):
        if events:
            heights = [found.stock.get(day, 0.0) for day in events]
            ax.scatter(_dates(events), heights, marker=marker, color=color, zorder=3, label=label)
    # Headroom above the data, so that the legend does not hide it.
    ax.set_ylim(-0.05 * max(top, 1.0), 1.5 * max(top, 1.0))
    ax.set_title(f"{item[0]} · {item[1]} ({eaten:.1f} packs eaten)", fontsize=10)
    ax.set_ylabel("packs")
    ax.legend(loc="upper left", fontsize=7, ncols=3, framealpha=0.8)
    _date_axis(ax)


def _stockouts_figure(truth: Truth) -> Figure:
    """Draw the daily share of portfolio pairs short of their product, and the packs missing."""
    title = "Stockouts"
    if not truth.days:
        return _no_data(title, "no days in truth.csv")
    pairs = len(truth.eaten)
    totals = [truth.totals.get(day, DayTotals()) for day in truth.days]
    share = [100 * day.stockouts / pairs for day in totals]
    missing = [day.missing for day in totals]
    figure = _figure(5.5)
    figure.suptitle(
        f"{title}: {sum(day.stockouts for day in totals)} (household, product) days short, "
        f"{sum(missing):g} packs missing; {pairs} pairs in portfolios"
    )
    upper, lower = figure.subplots(2, 1, sharex=True)
    x = _dates(truth.days)
    upper.fill_between(x, share, step="mid", color="C3", alpha=0.3, linewidth=0)
    upper.step(x, share, where="mid", color="C3")
    upper.set_ylim(bottom=0)
    upper.set_ylabel("% of pairs short")
    lower.bar(x, missing, width=0.8, color="C3")
    lower.set_ylabel("packs missing")
    _date_axis(lower)
    return figure


def _waste_figure(truth: Truth) -> Figure:
    """Draw packs wasted against packs bought per day, and the cumulative waste share of buys."""
    title = "Waste"
    if not truth.days:
        return _no_data(title, "no days in truth.csv")
    totals = [truth.totals.get(day, DayTotals()) for day in truth.days]
    bought = [day.bought for day in totals]
    wasted = [day.wasted for day in totals]
    cumulative: list[float] = []
    bought_so_far = wasted_so_far = 0
    for day_bought, day_wasted in zip(bought, wasted, strict=True):
        bought_so_far += day_bought
        wasted_so_far += day_wasted
        # Undefined (not 0 %) before the first purchase: the line starts with the first buy.
        cumulative.append(100 * wasted_so_far / bought_so_far if bought_so_far else math.nan)
    share = f" ({wasted_so_far / bought_so_far:.1%})" if bought_so_far else ""
    figure = _figure(5.5)
    figure.suptitle(f"{title}: {wasted_so_far} of {bought_so_far} packs bought thrown away expired{share}")
    upper, lower = figure.subplots(2, 1, sharex=True)
    x = _dates(truth.days)
    upper.bar(x, bought, width=0.8, color="C0", alpha=0.5, label="bought")
    upper.bar(x, wasted, width=0.8, color="C3", label="wasted")
    upper.set_ylabel("packs per day")
    _legend_above_data(upper)
    _integer_axis(upper)
    lower.plot(x, cumulative, color="C3")
    lower.set_ylim(bottom=0)
    lower.set_ylabel("waste so far, % of bought")
    _date_axis(lower)
    return figure


def _orders_figure(run: Sequence[date], orders: Sequence[OrderLine] | None) -> Figure:
    """Draw the orders placed, delivered and failed per day, over the days of the ``run`` at least."""
    title = "Orders"
    if not orders:
        return _no_data(title, "no orders in this run")
    # One order has several lines; its dates and status are on each of them.
    by_id: dict[str, OrderLine] = {}
    for line in orders:  # an order's status is its lines' status, unless a line was out of stock
        if line.order_id not in by_id or by_id[line.order_id].status == "out_of_stock":
            by_id[line.order_id] = line
    placed = Counter(order.placed for order in by_id.values())
    delivered = Counter(
        order.delivered for order in by_id.values() if order.status == "delivered" and order.delivered
    )
    # A failed order has no delivery date: it counts on the day it was due.
    failed = Counter(order.due for order in by_id.values() if order.status == "failed")
    statuses = Counter(order.status for order in by_id.values())
    days = _every_day(dict.fromkeys(run) | placed | delivered | failed)
    figure = _figure(4.0)
    figure.suptitle(
        f"{title}: {len(by_id)} placed, {statuses['delivered']} delivered, {statuses['failed']} failed, "
        f"{statuses['cancelled']} cancelled, {statuses['pending']} pending"
    )
    ax = figure.subplots()
    # Three bars a day, side by side: 8 hours apart, 7 hours wide.
    bars = (
        (placed, "C0", "placed"),
        (delivered, "C2", "delivered"),
        (failed, "C3", "failed (on the due day)"),
    )
    for shift, (counts, color, label) in zip((-8, 0, 8), bars, strict=True):
        ax.bar(_dates(days, shift), [counts[day] for day in days], width=7 / 24, color=color, label=label)
    ax.set_ylabel("orders per day")
    _legend_above_data(ax)
    _integer_axis(ax)
    _date_axis(ax)
    return figure


def _offers_figure(run: Sequence[date], offers: Sequence[Offer] | None) -> Figure:
    """Draw the offers sent and accepted per day, over the days of the ``run`` at least."""
    title = "Offers"
    if not offers:
        return _no_data(title, "no offers in this run")
    sent = Counter(offer.day for offer in offers)
    accepted = Counter(offer.day for offer in offers if offer.status == "accepted")
    statuses = Counter(offer.status for offer in offers)
    days = _every_day(dict.fromkeys(run) | sent)
    figure = _figure(4.0)
    figure.suptitle(
        f"{title}: {len(offers)} sent, {statuses['accepted']} accepted "
        f"({statuses['accepted'] / len(offers):.0%}), {statuses['dismissed']} dismissed, "
        f"{statuses['sent']} unanswered"
    )
    ax = figure.subplots()
    x = _dates(days)
    ax.bar(x, [sent[day] for day in days], width=0.8, color="C0", alpha=0.5, label="sent")
    ax.bar(x, [accepted[day] for day in days], width=0.8, color="C2", label="accepted")
    ax.set_ylabel("offers per day")
    _legend_above_data(ax)
    _integer_axis(ax)
    _date_axis(ax)
    return figure


def _figure(height: float) -> Figure:
    """Return an empty figure, ``WIDTH`` inches wide, drawn by Agg."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A figure of its own rather than pyplot's: no global state, no GUI, safe in threads.
    figure = Figure(figsize=(WIDTH, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _no_data(title: str, message: str) -> Figure:
    """Return a figure that says ``message``, for a plot without data in this run."""
    figure = _figure(2.5)
    figure.suptitle(title)
    figure.text(0.5, 0.45, message, ha="center", va="center", fontsize=16, color="0.35")
    return figure


def _dates(days: Sequence[date], hours: int = 0) -> NDArray[np.datetime64]:
    """Return ``days`` as an array matplotlib draws on a date axis, shifted by ``hours``."""
    import numpy as np

    shift = timedelta(hours=hours)
    return np.array([datetime.combine(day, time()) + shift for day in days], dtype="datetime64[h]")


def _date_axis(ax: Axes) -> None:
    """Label the x axis of ``ax`` with short dates."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    # matplotlib.dates has no type hints yet (matplotlib 3.11): its constructors are untyped.
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def _legend_above_data(ax: Axes) -> None:
    """Put the legend of ``ax`` top left, with room above the data so that it hides none of it."""
    bottom, top = ax.get_ylim()
    ax.set_ylim(min(bottom, 0.0), 1.3 * top)
    ax.legend(loc="upper left", fontsize=8, ncols=3)


def _integer_axis(ax: Axes) -> None:
    """Put ticks of the y axis of ``ax`` on whole numbers only: it counts packs, orders or offers."""
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


# -- reading -------------------------------------------------------------------------------


def _rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """Yield the line number and fields of each row of ``path``, whose header must be ``columns``."""
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header != list(columns):
            got = ",".join(header) if header else "nothing"
            raise ReportError(f"{path}: the header must be {','.join(columns)}, got {got}")
        for row in reader:
            if len(row) != len(columns):
                if not row:
                    continue
                raise ReportError(
                    f"{path}, line {reader.line_num}: {len(columns)} fields expected, got {len(row)}"
                )
            yield reader.line_num, row


def _optional(path: Path, read: Callable[[Path], _T]) -> _T | None:
    """Return what ``read`` reads from ``path``, or None when the run did not write that file."""
    return read(path) if path.is_file() else None


def _every_day(days: Mapping[date, object]) -> list[date]:
    """Return every day from the first of ``days`` to the last, so that quiet days show as zeros."""
    if not days:
        return []
    first, last = min(days), max(days)
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
