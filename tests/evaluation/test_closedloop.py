"""Closed loop: the policies run the same simulated households, and ours beats the simple rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.closedloop import closed_loop


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], Path]:
    folder = tmp_path_factory.mktemp("closed-loop")
    return closed_loop(12, 30, 7, report_dir=folder), folder


def test_every_policy_is_scored_on_the_same_households(report: tuple[dict[str, object], Path]) -> None:
    figures, _folder = report
    policies = figures["policies"]
    assert isinstance(policies, dict)
    assert set(policies) == {"grocy", "dash", "frigo"}
    # The same households at home on the same days: the item-days differ only by new tastes.
    item_days = [p["item_days"] for p in policies.values()]
    assert max(item_days) - min(item_days) <= 0.02 * max(item_days)
    for figures_of in policies.values():
        assert 0 <= figures_of["stockout_item_days_percent"] <= 100
        assert figures_of["orders"] > 0


def test_ours_runs_out_less_than_both_simple_rules(report: tuple[dict[str, object], Path]) -> None:
    policies = report[0]["policies"]
    assert isinstance(policies, dict)
    ours = policies["frigo"]["stockout_item_days_percent"]
    assert ours < policies["grocy"]["stockout_item_days_percent"]
    assert ours < policies["dash"]["stockout_item_days_percent"]


def test_the_same_seed_gives_the_same_figures(report: tuple[dict[str, object], Path]) -> None:
    again = closed_loop(12, 30, 7)
    assert again["policies"] == report[0]["policies"]


def test_each_policy_gets_a_report_with_plots(report: tuple[dict[str, object], Path]) -> None:
    folder = report[1]
    for policy in ("grocy", "dash", "frigo"):
        assert (folder / policy / "truth.csv").stat().st_size > 0
        assert (folder / policy / "orders.csv").stat().st_size > 0
        assert (folder / policy / "plots" / "stock.png").stat().st_size > 0
    forecast = (folder / "frigo" / "forecast.csv").read_text().splitlines()
    assert len(forecast) > 100  # ours forecasts; the simple rules do not


def test_a_loop_needs_households_and_days() -> None:
    with pytest.raises(ValueError, match="at least one household"):
        closed_loop(0, 10, 1)
