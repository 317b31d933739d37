"""Scenarios: TOML files naming how many households live how many days, from which seed.

The built-in ones are in ``simulator/scenarios/``; ``frigo sim run NAME`` takes one of their names
or the path of a file of your own with the same keys::

    description = "One household for seven days."
    households = 1      # 1-10,000
    days = 7            # 1-3,650
    start = 2026-01-05  # the first virtual day (a TOML date)
    seed = 1            # the same seed gives the same households and the same events

    [faults]            # optional, all off by default (see simulator/faults.py)
    broker_restarts_per_day = 0.5
    power_losses_per_fridge_day = 0.05
    malformed_per_day = 2
    network_drops_per_fridge_day = 0.3
    network_drop_minutes = 45
    duplicates_per_day = 3
    out_of_order_per_day = 2
    clock_skew_s = 120
    resend_after_s = 1.0

    [retailer]          # optional: households that order online (see simulator/retailer.py)
    online_share = 0.5
    lead_time_days = 1
    late_rate = 0.05
    failure_rate = 0.02
    out_of_stock_rate = 0.03
    substitution_rate = 0.05
"""

from __future__ import annotations

import tomllib
from datetime import date
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulator.errors import ScenarioError
from simulator.faults import Faults
from simulator.retailer import RetailerSettings


class Scenario(BaseModel):
    """One scenario's settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    households: int = Field(ge=1, le=10_000)
    days: int = Field(ge=1, le=3650)
    start: date = date(2026, 1, 5)
    seed: int = 1
    faults: Faults = Faults()
    retailer: RetailerSettings | None = None


def builtin_names() -> list[str]:
    """Return the names of the scenarios shipped with Frigo."""
    folder = resources.files("simulator") / "scenarios"
    return sorted(
        entry.name.removesuffix(".toml") for entry in folder.iterdir() if entry.name.endswith(".toml")
    )


def load_scenario(name_or_path: str) -> Scenario:
    """Return the built-in scenario of that name, or the scenario in that file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ScenarioError(f"no scenario file {path}")
        text, name = path.read_text(encoding="utf-8"), path.stem
    else:
        entry = resources.files("simulator") / "scenarios" / f"{name_or_path}.toml"
        if not entry.is_file():
            raise ScenarioError(
                f"no built-in scenario {name_or_path!r}: choose one of {', '.join(builtin_names())} "
                "or give the path of a .toml file"
            )
        text, name = entry.read_text(encoding="utf-8"), name_or_path
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"scenario {name}: not valid TOML: {exc}") from None
    try:
        return Scenario.model_validate({"name": name, **data})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ScenarioError(f"scenario {name}: {problems}") from None
