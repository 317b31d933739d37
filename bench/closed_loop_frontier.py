"""Service against waste: each closed-loop policy at several settings, on the same households.

One setting per policy hides the trade between stockouts and waste; this runs Grocy's minimum
stock, Dash's threshold and ours at stronger and weaker settings (``evaluation/closedloop.py``)
and prints one JSON line per run, then a table. Figures in docs/EVALUATION.md.

    .venv/bin/python -m bench.closed_loop_frontier [--households 200] [--days 90] [--seed 1]
"""

from __future__ import annotations

import argparse
import json

from cloud.planning.replenishment import PolicyParams
from evaluation.closedloop import FixedThreshold, Frigo, MinimumStock, Policy, run_policy
from simulator.catalog import CATALOG

GROCY_MINIMUMS = (1, 2, 3, 4)
DASH_SETTINGS = ((1, 2), (2, 2), (2, 3), (3, 3))  # (threshold, quantity)
# Ours: service level, and the share of the shelf life the waste cap allows, loosened in step.
FRIGO_SETTINGS = ((0.95, 1.0), (0.98, 1.0), (0.99, 1.3), (0.995, 1.6), (0.999, 2.0))


def policies() -> list[tuple[str, Policy]]:
    """Return every (label, policy) the sweep runs."""
    by_code = {p.code: p for p in CATALOG}

    def shelf_life(code: str) -> float:
        product = by_code.get(code)
        return float(product.shelf_life_days) if product is not None else 7.0

    chosen: list[tuple[str, Policy]] = [
        (f"grocy minimum {m}", MinimumStock(min_stock=float(m))) for m in GROCY_MINIMUMS
    ]
    chosen += [
        (f"dash threshold {t} quantity {q}", FixedThreshold(threshold=float(t), quantity=q))
        for t, q in DASH_SETTINGS
    ]
    chosen += [
        (
            f"frigo service {s} share {f}",
            Frigo(shelf_life, policy_params=PolicyParams(service_level=s, shelf_life_share=f)),
        )
        for s, f in FRIGO_SETTINGS
    ]
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=200)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for label, policy in policies():
        summary = run_policy(policy, args.households, args.days, args.seed).summary()
        print(json.dumps({"setting": label, **summary}), flush=True)
        rows.append((label, summary))
    for label, s in rows:
        print(
            f"{label:34s} stockouts {s['stockout_item_days_percent']:6.2f} %  "
            f"waste {s['units_wasted_percent']:6.2f} %  "
            f"orders/household-month {s['orders_per_household_month']:.1f}"
        )


if __name__ == "__main__":
    main()
