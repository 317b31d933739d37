"""Planning at fleet scale: forecast and reorder decision for every household's items at once.

Builds ``--households`` × ``--items`` items with ``--days`` of daily use (intermittent, seeded),
then times what a planning run does with them: the forecast (``cloud.planning.forecast.forecast``, TSB over
the days) and the policy (``cloud.planning.replenishment.plan``: due items, consolidated baskets, waste
cap, days until empty p10/p50/p90). Prints one JSON object; the target (issue 6) is 100,000
households × 30 items in 60 s or less.

    .venv/bin/python -m bench.plan [--households 100000] [--items 30] [--days 56]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime

import numpy as np

from cloud.planning.forecast import forecast
from cloud.planning.replenishment import PlanItems, PolicyParams, plan

# Items are forecast and planned in chunks of this many: memory stays near 1 GB whatever the fleet.
CHUNK = 500_000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=30, help="items per household")
    parser.add_argument("--days", type=int, default=56, help="days of use history per item")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    n = args.households * args.items
    started = time.perf_counter()
    # Intermittent use: each item is used on a share of days, a portion each time.
    rate = rng.lognormal(np.log(0.15), 0.8, n)
    portion = rng.choice([0.2, 0.25, 0.5, 1.0], n)
    chance = np.minimum(rate / portion, 1.0)
    household = np.repeat(np.arange(args.households, dtype=np.int64), args.items)
    stock = rng.uniform(0, 3, n)
    on_order = np.zeros(n)
    shelf_life = rng.choice([3.0, 7.0, 14.0, 30.0, 180.0], n)
    first_day = rng.integers(0, args.days // 2, n)
    prior = rate * rng.lognormal(0, 0.3, n)
    built = time.perf_counter() - started

    forecast_s = plan_s = 0.0
    ordered = due = 0
    baskets = np.zeros(args.households, dtype=bool)
    step = max(CHUNK // args.items, 1) * args.items  # whole households in every chunk
    for start in range(0, n, step):
        end = min(start + step, n)
        usage = (rng.random((end - start, args.days)) < chance[start:end, None]) * portion[start:end, None]
        t0 = time.perf_counter()
        result = forecast(usage, first_day[start:end], prior[start:end], last_weekday=6)
        t1 = time.perf_counter()
        local = household[start:end] - household[start]
        decision = plan(
            PlanItems(local, stock[start:end], on_order[start:end], shelf_life[start:end]),
            result,
            PolicyParams(),
        )
        t2 = time.perf_counter()
        forecast_s += t1 - t0
        plan_s += t2 - t1
        ordered += int(decision.quantity.sum())
        due += int(decision.due.sum())
        baskets[household[start:end][decision.quantity > 0]] = True
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "numpy": np.__version__,
        "households": args.households,
        "items": n,
        "days_of_history": args.days,
        "forecast_s": round(forecast_s, 2),
        "policy_s": round(plan_s, 2),
        "planning_s": round(forecast_s + plan_s, 2),
        "data_generation_s": round(built, 2),
        "items_due": due,
        "households_ordering": int(baskets.sum()),
        "packs_ordered": ordered,
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
