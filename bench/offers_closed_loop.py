"""Offers in closed loop: the offer engine against the popularity baseline on the same households.

Runs the ``offers-month`` scenario twice with the same seed, once with the cloud's offer engine and
once with the baseline (the most bought items a household never bought), under the same consents,
rules and caps; each simulated household takes an offer as its habits say (``Household.takes_offer``).
Prints each run's offers and acceptance, and the ratio; figures in docs/EVALUATION.md.

    .venv/bin/python -m bench.offers_closed_loop [--households 12] [--days 30] [--seed 5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from simulator.runner import run_scenario
from simulator.scenario import load_scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=None)
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    base = load_scenario("offers-month")
    overrides = {
        k: v for k, v in {"households": args.households, "days": args.days, "seed": args.seed}.items() if v
    }
    rates = {}
    with tempfile.TemporaryDirectory() as folder:
        for strategy in ("frigo", "popular"):
            assert base.offers is not None
            scenario = base.model_copy(
                update={**overrides, "offers": base.offers.model_copy(update={"strategy": strategy})}
            )
            summary = run_scenario(scenario, Path(folder) / strategy)
            offers = summary["offers"]
            rates[strategy] = offers["acceptance_rate"] or 0.0
            print(
                json.dumps(
                    {
                        "households": scenario.households,
                        "days": scenario.days,
                        "seed": scenario.seed,
                        **offers,
                    }
                )
            )
    ratio = rates["frigo"] / rates["popular"] if rates["popular"] else float("inf")
    print(f"acceptance: frigo {rates['frigo']:.3f}, popular {rates['popular']:.3f}, ratio {ratio:.1f}x")


if __name__ == "__main__":
    main()
