"""What an offer run spends on its statistics, and what the scheduler's cache saves.

Each offer run needs co-purchase statistics and cloud.commerce.explore's new items per household, fitted on
the baskets of every household that consents to analytics (``cloud.commerce.offers.fit``). This times that
fit on real baskets (Ta Feng's history, one basket a day per household), for fleets of growing
size, and a run's lookup in a ``LiftCache`` that holds it (the scheduler's: refitted every 6 hours
or when a household withdraws). Prints one JSON object.

    .venv/bin/python -m bench.offers_fit [--history ../shared/data/tafeng/history.json]
        [--households 1000 4000 13000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from cloud.commerce.offers import fit
from evaluation.datasets import load_next_baskets

FIRST_DAY = date(2026, 1, 1)


def baskets_of(histories: dict[str, list[list[int]]], households: int) -> dict[tuple[str, str], set[str]]:
    """Return the first ``households`` users' baskets keyed as the offer run keys them."""
    out: dict[tuple[str, str], set[str]] = {}
    for user in sorted(histories, key=int)[:households]:
        for day, basket in enumerate(histories[user]):
            items = {str(code) for code in basket if code >= 0}
            if items:
                out[(user, (FIRST_DAY + timedelta(days=day)).isoformat())] = items
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--history", type=Path, default=Path("../shared/data/tafeng/history.json"))
    parser.add_argument("--households", type=int, nargs="+", default=[1000, 4000, 13000])
    parser.add_argument("--repeat", type=int, default=3, help="fits per size; the median is printed")
    args = parser.parse_args()
    histories = load_next_baskets(args.history)
    sizes = []
    for households in args.households:
        baskets = baskets_of(histories, households)
        seconds = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            fitted = fit(baskets)
            seconds.append(time.perf_counter() - started)
        sizes.append(
            {
                "households": len({household for household, _day in baskets}),
                "baskets": len(baskets),
                "fit_s": round(statistics.median(seconds), 3),
                "households_with_new_items": len(fitted.explore),
            }
        )
        print(json.dumps(sizes[-1]), flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine,
                "history": str(args.history),
                "sizes": sizes,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
