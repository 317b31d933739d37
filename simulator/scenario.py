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

A load scenario (``load-10k``) has a ``[load]`` table instead and runs a swarm of bare
connections rather than households (see simulator/load/run.py)::

    [load]
    devices = 10000     # connections, each logged in as its own device
    rate = 2000         # events a second for the whole swarm
    duration_s = 60     # seconds of sending, the ramp included
    connect_rate = 1000 # new connections a second while ramping up
    cloud = false       # true: a cloud worker stores and acknowledges the events
"""

from __future__ import annotations

import tomllib
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulator.errors import ScenarioError
from simulator.faults import Faults
from simulator.load.settings import LoadSettings
from simulator.retailer import RetailerSettings


class OfferSettings(BaseModel):
    """Offers made to the simulated households; a scenario's ``[offers]`` table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: Literal["frigo", "popular"] = Field(
        default="frigo",
        description="frigo: the cloud's offer engine; popular: the baseline, the most bought items a "
        "household never bought, under the same rules and caps.",
    )
    consent_share: float = Field(
        default=1.0, ge=0, le=1, description="Share of households that allow offers (and analytics)."
    )
    weekly_cap: int = Field(default=3, ge=1, le=50, description="Most offers a household gets a week.")


class Scenario(BaseModel):
    """One scenario's settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = Field(default="", description="One line saying what the scenario shows.")
    households: int = Field(default=1, ge=1, le=10_000, description="Households, each with its fridge.")
    days: int = Field(default=7, ge=1, le=3650, description="Virtual days they live.")
    start: date = Field(default=date(2026, 1, 5), description="The first virtual day (a TOML date).")
    seed: int = Field(default=1, description="The same seed gives the same households and events.")
    weight_shelf: bool = Field(
        default=True,
        description="Each fridge has a weight shelf in its door: bottles and tubs there are weighed as "
        "they are used, and taken away empty without a scan.",
    )
    consumption_detail_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Share of households whose fridge may share how food is used (partial amounts "
        "weighed on the shelf, openings); the others keep the default consent.",
    )
    faults: Faults = Faults()
    retailer: RetailerSettings | None = None
    offers: OfferSettings | None = None
    load: LoadSettings | None = None


def describe_keys() -> str:
    """Return every key a scenario file takes, with its default and meaning, as Markdown lines."""
    tables: list[tuple[str, type[BaseModel]]] = [
        ("", Scenario),
        ("[faults] ", Faults),
        ("[retailer] ", RetailerSettings),
        ("[offers] ", OfferSettings),
        ("[load] ", LoadSettings),
    ]
    lines = []
    for table, model in tables:
        for key, info in model.model_fields.items():
            if info.description is None:
                continue  # the name, and the tables themselves
            default = info.get_default(call_default_factory=True)
            shown = "" if info.is_required() or default == "" else f" (default {default})"
            lines.append(f"* {table}`{key}`: {info.description}{shown}")
    return "\n".join(lines)


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
