"""The report's plots: five readable PNGs from a report folder, the most eaten items, clear errors."""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from matplotlib.image import imread

from simulator.errors import ReportError, SimulatorError
from simulator.plots import (
    FORECAST_COLUMNS,
    OFFER_COLUMNS,
    ORDER_COLUMNS,
    PLOTS,
    TRUTH_COLUMNS,
    choose_items,
    read_forecast,
    read_item_days,
    read_truth,
    write_plots,
)

START = date(2026, 1, 5)
DAYS = [START + timedelta(days=offset) for offset in range(14)]
MILK, EGGS, BREAD = "2000000000015", "2000000000039", "2000000000046"
HOME_1, HOME_2 = "home-0001", "home-0002"
# Packs eaten a day: over the 14 days, bread at home 2 (28) > milk at home 1 (14) > eggs (7) > milk (3.5).
EATEN = {(HOME_1, MILK): 1.0, (HOME_1, EGGS): 0.5, (HOME_2, MILK): 0.25, (HOME_2, BREAD): 2.0}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_BYTES = 200_000


def write_csv(path: Path, header: tuple[str, ...], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)


def truth_rows() -> list[list[object]]:
    """Return a fortnight of two households: buys every 4 days, waste on day 6, bread short on 3, 7, 11."""
    rows: list[list[object]] = []
    stock = dict.fromkeys(EATEN, 0.0)
    for index, day in enumerate(DAYS):
        for item, eaten in EATEN.items():
            bought = (6 if item == (HOME_2, BREAD) else 8) if index % 4 == 0 else 0
            wanted = stock[item] + bought
            missing = max(0.0, eaten - wanted)
            stock[item] = max(0.0, wanted - eaten)
            wasted = 1 if index == 6 and item == (HOME_1, EGGS) else 0
            stock[item] -= wasted
            rows.append([day.isoformat(), *item, eaten, bought, wasted, missing, stock[item]])
    return rows


def write_report(folder: Path, *, orders: bool = True, forecast: bool = True, offers: bool = True) -> Path:
    folder.mkdir(exist_ok=True)
    write_csv(folder / "truth.csv", TRUTH_COLUMNS, truth_rows())
    if orders:
        write_csv(
            folder / "orders.csv",
            ORDER_COLUMNS,
            [
                ["o-1", HOME_2, DAYS[0], DAYS[2], DAYS[2], "delivered", BREAD, 6, ""],
                ["o-1", HOME_2, DAYS[0], DAYS[2], DAYS[2], "delivered", MILK, 2, ""],
                ["o-2", HOME_1, DAYS[3], DAYS[5], "", "failed", MILK, 4, ""],
                ["o-3", HOME_1, DAYS[4], DAYS[6], DAYS[7], "delivered", EGGS, 1, MILK],
                ["o-4", HOME_2, DAYS[9], DAYS[11], "", "cancelled", BREAD, 6, ""],
                ["o-5", HOME_1, DAYS[12], DAYS[14 - 1], "", "pending", MILK, 2, ""],
            ],
        )
    if forecast:
        write_csv(
            folder / "forecast.csv",
            FORECAST_COLUMNS,
            [[day, HOME_2, BREAD, 4.0, 2.5, 6.0] for day in DAYS[1:]]
            + [[DAYS[1], HOME_1, EGGS, 1.0, 0.5, 1.5]],
        )
    if offers:
        write_csv(
            folder / "offers.csv",
            OFFER_COLUMNS,
            [
                [DAYS[2], HOME_1, MILK, "accepted"],
                [DAYS[2], HOME_2, BREAD, "dismissed"],
                [DAYS[8], HOME_1, EGGS, "sent"],
            ],
        )
    return folder


def assert_png(path: Path) -> tuple[int, ...]:
    """Check that ``path`` is a PNG of modest size; return its shape (height, width, channels)."""
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    assert path.stat().st_size < MAX_BYTES, path
    shape = imread(path).shape
    assert len(shape) == 3, path
    assert shape[2] in (3, 4), path
    return tuple(shape)


# -- write_plots ----------------------------------------------------------------------------


def test_writes_the_five_plots_as_png(tmp_path: Path) -> None:
    report = write_report(tmp_path / "report")

    paths = write_plots(report)

    assert paths == [report / "plots" / name for name in PLOTS]
    for path in paths:
        height, width, _ = assert_png(path)
        assert width == 1000, path
        assert height > 250, path  # Not the figure that says there is no data.


@pytest.mark.parametrize("items", [1, 3, 8])
def test_stock_plot_has_one_subplot_per_item_up_to_the_portfolio(tmp_path: Path, items: int) -> None:
    report = write_report(tmp_path / "report")

    [stock, *_] = write_plots(report, items=items)

    height, _, _ = assert_png(stock)
    rows = (min(items, len(EATEN)) + 1) // 2
    assert height == round(100 * (0.5 + 2.7 * rows))


def test_absent_optional_files_still_yield_every_plot(tmp_path: Path) -> None:
    report = write_report(tmp_path / "report", orders=False, forecast=False, offers=False)

    paths = write_plots(report, items=2)

    assert [path.name for path in paths] == list(PLOTS)
    shapes = {path.name: assert_png(path) for path in paths}
    # orders.png and offers.png are then the short figures that say "no orders/offers in this run".
    assert shapes["orders.png"][0] == 250
    assert shapes["offers.png"][0] == 250
    assert shapes["stock.png"][0] > 250


def test_empty_orders_file_yields_orders_png(tmp_path: Path) -> None:
    report = write_report(tmp_path / "report", orders=False)
    write_csv(report / "orders.csv", ORDER_COLUMNS, [])

    paths = write_plots(report)

    assert assert_png(paths[PLOTS.index("orders.png")])[0] == 250


def test_writes_over_the_plots_of_an_earlier_call(tmp_path: Path) -> None:
    report = write_report(tmp_path / "report")
    write_plots(report)

    assert write_plots(report, items=1) == [report / "plots" / name for name in PLOTS]


def test_import_does_not_load_matplotlib() -> None:
    code = "import sys, simulator.plots; assert 'matplotlib' not in sys.modules, 'matplotlib loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- choosing the items ---------------------------------------------------------------------


def test_chosen_items_are_the_most_eaten(tmp_path: Path) -> None:
    report = write_report(tmp_path / "report")

    truth = read_truth(report / "truth.csv")

    assert truth.eaten == pytest.approx({item: 14 * packs for item, packs in EATEN.items()})
    assert choose_items(truth.eaten, 2) == [(HOME_2, BREAD), (HOME_1, MILK)]
    assert choose_items(truth.eaten, 10) == [(HOME_2, BREAD), (HOME_1, MILK), (HOME_1, EGGS), (HOME_2, MILK)]


def test_chosen_items_of_given_devices() -> None:
    eaten = {(HOME_1, MILK): 14.0, (HOME_1, EGGS): 7.0, (HOME_2, BREAD): 28.0}

    assert choose_items(eaten, 4, [HOME_1]) == [(HOME_1, MILK), (HOME_1, EGGS)]


def test_ties_go_by_device_then_code() -> None:
    eaten = {(HOME_2, EGGS): 3.0, (HOME_1, MILK): 3.0, (HOME_1, EGGS): 3.0}

    assert choose_items(eaten, 3) == [(HOME_1, MILK), (HOME_1, EGGS), (HOME_2, EGGS)]


def test_unknown_device_is_an_error() -> None:
    with pytest.raises(ReportError, match="home-0009"):
        choose_items({(HOME_1, MILK): 1.0}, 4, [HOME_1, "home-0009"])


def test_items_must_be_positive(tmp_path: Path) -> None:
    report = write_report(tmp_path / "report")

    with pytest.raises(ValueError, match="items must be at least 1"):
        write_plots(report, items=0)


# -- reading --------------------------------------------------------------------------------


def test_truth_totals_per_day(tmp_path: Path) -> None:
    report = write_report(tmp_path / "report")

    truth = read_truth(report / "truth.csv")

    assert truth.days == DAYS
    assert truth.totals[DAYS[0]].bought == 3 * 8 + 6
    assert truth.totals[DAYS[1]].bought == 0
    assert truth.totals[DAYS[6]].wasted == 1
    short = [day for day in DAYS if truth.totals[day].stockouts]
    assert short == [DAYS[3], DAYS[7], DAYS[11]]
    assert truth.totals[DAYS[3]].stockouts == 1
    assert truth.totals[DAYS[3]].missing == pytest.approx(2.0)


def test_quiet_days_are_in_the_days_of_the_run(tmp_path: Path) -> None:
    rows = [[DAYS[0], HOME_1, MILK, 1, 2, 0, 0, 1], [DAYS[4], HOME_1, MILK, 1, 0, 0, 0, 0]]
    write_csv(tmp_path / "truth.csv", TRUTH_COLUMNS, rows)

    truth = read_truth(tmp_path / "truth.csv")

    assert truth.days == DAYS[:5]


def test_item_days_and_forecast_of_the_chosen_items_only(tmp_path: Path) -> None:
    report = write_report(tmp_path / "report")

    found = read_item_days(report / "truth.csv", [(HOME_1, EGGS)])
    forecast = read_forecast(report / "forecast.csv", [(HOME_1, EGGS), (HOME_1, MILK)])

    assert list(found) == [(HOME_1, EGGS)]
    assert found[(HOME_1, EGGS)].wasted == [DAYS[6]]
    assert found[(HOME_1, EGGS)].stock.keys() == set(DAYS)
    assert list(forecast) == [(HOME_1, EGGS)]
    assert [day.p50 for day in forecast[(HOME_1, EGGS)]] == [1.0]


def test_missing_truth_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"truth\.csv does not exist") as raised:
        write_plots(tmp_path)

    assert isinstance(raised.value, SimulatorError)
    assert not (tmp_path / "plots").exists()


@pytest.mark.parametrize(
    ("header", "rows", "match"),
    [
        (("day", "device_id", "code", "eaten"), [], r"truth\.csv: the header must be day,device_id,code"),
        ((), [], r"the header must be .*, got nothing"),
        (
            TRUTH_COLUMNS,
            [["2026-01-05", HOME_1, MILK, 1, 0, 0]],
            r"truth\.csv, line 2: 8 fields expected, got 6",
        ),
        (TRUTH_COLUMNS, [["2026-01-05", HOME_1, MILK, "lots", 0, 0, 0, 1]], r"line 2: .*'lots'"),
        (TRUTH_COLUMNS, [["5/1/2026", HOME_1, MILK, 1, 0, 0, 0, 1]], r"line 2: .*5/1/2026"),
    ],
)
def test_malformed_truth_is_an_error(
    tmp_path: Path, header: tuple[str, ...], rows: list[list[object]], match: str
) -> None:
    if header:
        write_csv(tmp_path / "truth.csv", header, rows)
    else:
        (tmp_path / "truth.csv").write_text("", encoding="utf-8")

    with pytest.raises(ReportError, match=match):
        write_plots(tmp_path)


def test_malformed_orders_are_an_error(tmp_path: Path) -> None:
    report = write_report(tmp_path / "report", orders=False)
    write_csv(
        report / "orders.csv", ORDER_COLUMNS, [["o-1", HOME_1, DAYS[0], DAYS[2], "", "lost", MILK, 1, ""]]
    )

    with pytest.raises(ReportError, match=r"orders\.csv, line 2: status 'lost' is not one of"):
        write_plots(report)
