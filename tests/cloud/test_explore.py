"""The explore engine (items new to a household) and `frigo eval offers`: hand-made households whose
ranking is known, the popularity baseline, the validation search, the CLI, and the real data sets
when they are there."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cloud.commerce.explore import ExploreEngine, ExploreParams, ExploreSignals, Signal
from evaluation import metrics
from evaluation.baskets import validation_split
from evaluation.datasets import (
    TransactionFormat,
    hold_out_last,
    load_next_baskets,
    load_transactions,
)
from evaluation.offers import evaluate_offers, explore_scores, popular_unseen, tune_offers
from frigo.evaluate import eval_app

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

PASTA, PARMESAN, MILK, TEA, BISCUITS = 1, 2, 10, 3, 5
CO_PURCHASE_ONLY = ExploreParams(
    neighbours=5, copurchase_weight=1.0, neighbours_weight=0.0, popularity_weight=0.0
)
POPULARITY_ONLY = ExploreParams(
    neighbours=5, copurchase_weight=0.0, neighbours_weight=0.0, popularity_weight=1.0
)


def _pasta_households() -> list[list[list[int]]]:
    """20 households buy pasta and milk, then parmesan; 30 buy tea and milk, then biscuits; the last
    household has bought pasta and milk once.

    Biscuits are taken up by more households than parmesan, but no pasta buyer ever took them up.
    """
    pasta = [[[PASTA, MILK], [PARMESAN, MILK]] for _ in range(20)]
    tea = [[[TEA, MILK], [BISCUITS, MILK]] for _ in range(30)]
    return [*pasta, *tea, [[PASTA, MILK]]]


def _random_households(count: int = 60, seed: int = 3) -> list[list[list[int]]]:
    """Households of 1 to 6 baskets of 1 to 5 items among 40, some items more popular than others."""
    rng = random.Random(seed)
    weights = [1 / (i + 1) for i in range(40)]
    return [
        [sorted(set(rng.choices(range(40), weights, k=rng.randint(1, 5)))) for _ in range(rng.randint(1, 6))]
        for _ in range(count)
    ]


# -- the engine ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("neighbours", 0, "neighbours must be >= 1"),
        ("decay", 0.0, "decay must be in"),
        ("decay", 1.5, "decay must be in"),
        ("copurchase_weight", -1.0, "the weights must be >= 0 and not all 0"),
    ],
)
def test_params_refuse_values_that_cannot_work(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExploreParams(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not all 0"):
        ExploreParams(copurchase_weight=0.0, neighbours_weight=0.0, popularity_weight=0.0)


@pytest.mark.parametrize("params", [ExploreParams(), CO_PURCHASE_ONLY, POPULARITY_ONLY])
def test_never_recommends_an_item_the_household_bought(params: ExploreParams) -> None:
    households = _random_households()

    recommended = ExploreEngine(params).fit(households).recommend(8)

    assert len(recommended) == len(households)
    for baskets, offers in zip(households, recommended, strict=True):
        items = [offer.item for offer in offers]
        assert not set(items) & {item for basket in baskets for item in basket}
        assert len(items) == len(set(items))
        assert [offer.score for offer in offers] == sorted((offer.score for offer in offers), reverse=True)
    assert ExploreEngine(params).fit(households).recommend_items(8) == [
        [offer.item for offer in offers] for offers in recommended
    ]


def test_co_purchase_finds_the_complement_and_names_the_item_behind_it() -> None:
    households = _pasta_households()

    offers = ExploreEngine(CO_PURCHASE_ONLY).fit(households).recommend(2)[-1]
    popular = ExploreEngine(POPULARITY_ONLY).fit(households).recommend(2)[-1]

    # Pasta buyers went on to buy parmesan, all of them: the share is 1, twice the take-up of parmesan
    # among all households that came back (20 of 50), so the lift is 2.5.
    assert offers[0].item == PARMESAN
    assert offers[0].signal is Signal.COPURCHASE
    assert offers[0].because == PASTA
    assert offers[0].lift == pytest.approx(50 / 20)
    # Popularity alone offers what most households took up: biscuits.
    assert [offer.item for offer in popular] == [BISCUITS, PARMESAN]
    assert popular[0].signal is Signal.POPULAR
    assert popular[0].because is None


def test_neighbours_offer_what_similar_households_bought() -> None:
    households = _pasta_households()
    params = ExploreParams(neighbours=10, copurchase_weight=0.0, neighbours_weight=1.0, popularity_weight=0.0)

    offers = ExploreEngine(params).fit(households).recommend(1)

    assert offers[-1][0].item == PARMESAN  # its nearest households are the pasta buyers
    assert offers[-1][0].signal is Signal.NEIGHBOURS
    assert offers[-1][0].because is None


def test_the_blend_adds_the_weighted_signals() -> None:
    """The pasta household with the default weights (co-purchase 0.5, neighbours 1, popularity 2).

    Co-purchase: parmesan (1 from pasta + 0.4 from milk) / 2 = 0.7, biscuits 0.6 / 2 = 0.3. Neighbours
    (all 50, cosine 2/√6 for pasta buyers and 1/√6 for tea drinkers): parmesan 40/70, biscuits 30/70,
    tea bought a basket before the latest (decay 0.5) 15/70. Take-up: parmesan 0.4, biscuits 0.6.
    """
    offers = ExploreEngine().fit(_pasta_households()).recommend(5)[-1]

    parmesan = 0.5 * 0.7 + 40 / 70 + 2 * 0.4
    biscuits = 0.5 * 0.3 + 30 / 70 + 2 * 0.6
    assert [offer.item for offer in offers] == [BISCUITS, PARMESAN, TEA]
    assert [offer.score for offer in offers] == pytest.approx([biscuits, parmesan, 15 / 70], rel=1e-6)
    assert [offer.signal for offer in offers] == [Signal.POPULAR, Signal.POPULAR, Signal.NEIGHBOURS]


def test_few_items_short_lists_and_households_without_baskets() -> None:
    recommended = ExploreEngine().fit([[[1, 2], [1]], [[1, 3], [1, 2]], [], [[1, 2, 3]]]).recommend_items(5)

    assert recommended[0] == [3]  # the only item it never bought
    assert recommended[1] == []
    assert recommended[2] == [2, 1, 3]  # 2 taken up by a household; then by buyers
    assert recommended[3] == []
    assert ExploreEngine().fit([]).recommend(3) == []


def test_the_engine_is_deterministic_and_needs_fitting() -> None:
    households = _random_households()

    assert ExploreEngine().fit(households).recommend(5) == ExploreEngine().fit(households).recommend(5)
    with pytest.raises(RuntimeError, match="fit the engine first"):
        ExploreEngine().recommend(3)


def test_signals_are_shared_by_settings_they_were_built_for() -> None:
    """Built for several decays and neighbour counts, or for one, the recommendations are the same."""
    households = _random_households(200)
    signals = ExploreSignals.build(households, decays=(0.5, 1.0), neighbours=(5, 150))

    for decay, count in ((0.5, 5), (1.0, 5), (1.0, 150)):
        params = ExploreParams(neighbours=count, decay=decay)
        shared = ExploreEngine(params).fit_signals(signals).recommend_items(6)
        assert shared == ExploreEngine(params).fit(households).recommend_items(6)
    with pytest.raises(ValueError, match=r"not decay 0\.7 with 5"):
        ExploreEngine(ExploreParams(neighbours=5, decay=0.7)).fit_signals(signals)


# -- the evaluation ------------------------------------------------------------------------------


def test_explore_ndcg_ranks_against_the_items_never_bought() -> None:
    # New items 8 and 9, hit at ranks 1 and 3; the ideal is two hits at ranks 1 and 2.
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))

    assert metrics.explore_ndcg([8, 5, 9], {1, 8, 9}, {1, 2}, k=3) == pytest.approx(expected)
    assert metrics.explore_ndcg([8], {1}, {1, 2}, k=3) is None


def test_scores_leave_out_households_without_new_items() -> None:
    scores = explore_scores([[8, 5], [3, 4], [9, 7]], [[1, 8, 9], [1], [7]], [{1}, {1}, set()], k=2)

    assert scores["users"] == 2
    assert scores["explore_recall"] == pytest.approx((1 / 2 + 1) / 2)
    assert scores["explore_ndcg"] == pytest.approx(
        (1 / (1 + 1 / math.log2(3)) + 1 / math.log2(3)) / 2, abs=1e-4
    )


def test_popularity_skips_the_items_the_household_bought() -> None:
    histories = [[[1, 2], [1, 3]], [[2], [2, 3], [2, 4]], [[5]]]

    # Baskets holding each item: 2 in four, 1 and 3 in two, 4 and 5 in one (ties: smaller id).
    assert popular_unseen(histories, 2) == [[4, 5], [1, 5], [2, 1]]


def test_hold_out_last_numbers_items_by_name(tmp_path: Path) -> None:
    path = tmp_path / "members.csv"
    path.write_text(
        "member_id,date,item\n1,01-02-2015,milk\n1,03-02-2015,tea\n1,03-02-2015,buns\n2,05-02-2015,milk\n",
        encoding="utf-8",
    )

    history, future, names = hold_out_last(load_transactions(path, TransactionFormat.MEMBER_BASKETS))

    assert names == ["buns", "milk", "tea"]
    assert history == {"1": [[1]], "2": [[1]]}
    assert future == {"1": [[0, 2]]}


def test_the_search_scores_exactly_what_the_engine_recommends() -> None:
    """The chosen parameters, refitted on the validation split's histories, give the reported score."""
    history = {f"h{n}": baskets for n, baskets in enumerate(_random_households(80, seed=5))}
    grid = {
        "decay": (0.5, 1.0),
        "neighbours": (5, 20),
        "copurchase_weight": (0.0, 1.0),
        "neighbours_weight": (0.0, 1.0),
        "popularity_weight": (0.0, 1.0),
    }

    tuning = tune_offers(history, 3, grid)

    # 7 weight triples (no all-zero one); those without neighbours are tried with one count only.
    assert len(tuning["trials"]) == 2 * (4 * 2 + 3)  # type: ignore[arg-type]
    chosen = tuning["chosen"]
    assert isinstance(chosen, dict)
    train, targets = validation_split(history)
    users = list(train)
    predicted = ExploreEngine(ExploreParams(**chosen)).fit([train[u] for u in users]).recommend_items(3)
    selected = [n for n, u in enumerate(users) if u in targets]
    scores = explore_scores(
        [predicted[n] for n in selected],
        [targets[users[n]] for n in selected],
        [{i for b in train[users[n]] for i in b} for n in selected],
        3,
    )
    assert tuning["chosen_validation"] == {
        "explore_recall": scores["explore_recall"],
        "explore_ndcg": scores["explore_ndcg"],
    }
    assert tuning["validation_users"] == scores["users"]


def test_the_search_needs_a_validation_target_with_a_new_item() -> None:
    with pytest.raises(ValueError, match="nothing to validate on"):
        tune_offers({"a": [[1], [1]], "b": [[2]]}, 2)


def test_evaluate_offers_scores_both_models_on_households_with_new_items() -> None:
    history = {"a": [[1, 2], [1, 3]], "b": [[2, 3], [2]], "c": [[1, 4]]}
    future = {"a": [[1, 4]], "b": [[2]], "d": [[1]]}

    report = evaluate_offers(history, future, 2)

    assert report["users"] == {
        "history": 3,
        "future": 3,
        "evaluated": 1,  # b re-buys only; d has no history
        "future_without_history": 1,
        "future_without_new_items": 1,
    }
    models = report["models"]
    assert isinstance(models, dict)
    assert models["popularity"] == {"explore_recall": 1.0, "explore_ndcg": 1.0, "users": 1}  # a gets [4]


# -- command line --------------------------------------------------------------------------------


runner = CliRunner()


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_cli_offers_prints_both_models_the_choice_and_the_search(tmp_path: Path) -> None:
    households = _pasta_households()
    history = {f"u{n}": [[-1], *baskets, [-1]] for n, baskets in enumerate(households)}
    future = {f"u{n}": [[-1], [PARMESAN, MILK], [-1]] for n in range(len(households))}
    files = [
        "--history",
        str(_write(tmp_path, "history.json", json.dumps(history))),
        "--future",
        str(_write(tmp_path, "future.json", json.dumps(future))),
    ]

    result = runner.invoke(eval_app, ["offers", *files, "--k", "2"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["k"] == 2
    for name in ("ours", "popularity"):
        assert set(report["models"][name]) == {"explore_recall", "explore_ndcg", "users"}
    # Only the tea households and the last one have never bought parmesan.
    assert report["models"]["ours"]["users"] == 31
    assert set(report["params"]) == {
        "neighbours",
        "decay",
        "copurchase_weight",
        "neighbours_weight",
        "popularity_weight",
    }
    assert report["params"] == report["tuning"]["chosen"]
    assert set(report["tuning"]) >= {"trials", "popularity", "chosen", "chosen_validation", "grid"}


def test_cli_offers_reads_member_baskets(tmp_path: Path) -> None:
    rows = ["member_id,date,item"]
    for member in range(12):
        rows += [f"{member},0{day}-03-2015,{item}" for day, item in ((1, "milk"), (2, "rolls"), (3, "soda"))]
        rows.append(f"{member},09-03-2015,{'yogurt' if member % 2 else 'butter'}")
    path = _write(tmp_path, "members.csv", "\n".join(rows) + "\n")

    result = runner.invoke(
        eval_app, ["offers", "--transactions", str(path), "--format", "member-baskets", "--k", "2"]
    )

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["users"]["evaluated"] == 12
    assert report["tuning"]["validation_users"] == 12  # soda, new to every member, is the target


def test_cli_offers_wants_one_source_of_baskets(tmp_path: Path) -> None:
    path = _write(tmp_path, "h.json", '{"u1": [[1]]}')

    neither = runner.invoke(eval_app, ["offers"])
    both = runner.invoke(eval_app, ["offers", "--history", str(path), "--transactions", str(path)])
    missing = runner.invoke(eval_app, ["offers", "--history", str(path), "--future", str(tmp_path / "x")])

    assert neither.exit_code == both.exit_code == missing.exit_code == 2
    assert "give --history and --future" in neither.stderr
    assert "not both" in both.stderr
    assert "--future:" in missing.stderr
    assert "no such file" in missing.stderr
    assert neither.stdout == both.stdout == missing.stdout == ""


# -- real data -----------------------------------------------------------------------------------


def _real(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        pytest.skip(f"{path} is not there (see the shared data README)")
    return path


@pytest.mark.slow
def test_on_ta_feng_ours_reaches_the_explore_target() -> None:
    """The whole protocol: the search on the validation split, then one fit and one score."""
    history = load_next_baskets(_real(DATA / "tafeng", "history.json"))
    future = load_next_baskets(_real(DATA / "tafeng", "future.json"))

    chosen = tune_offers(history, 10)["chosen"]
    assert isinstance(chosen, dict)
    report = evaluate_offers(history, future, 10, ExploreParams(**chosen))

    models = report["models"]
    assert isinstance(models, dict)
    assert models["ours"]["explore_recall"] >= 0.080
    assert models["ours"]["explore_recall"] > models["popularity"]["explore_recall"]
    assert models["ours"]["explore_ndcg"] > models["popularity"]["explore_ndcg"]


@pytest.mark.slow
def test_on_groceries_ours_holds_up_against_popularity() -> None:
    members = load_transactions(
        _real(DATA / "groceries", "member_baskets.csv"), TransactionFormat.MEMBER_BASKETS
    )
    history, future, _ = hold_out_last(members)

    chosen = tune_offers(history, 10)["chosen"]
    assert isinstance(chosen, dict)
    report = evaluate_offers(history, future, 10, ExploreParams(**chosen))

    models = report["models"]
    assert isinstance(models, dict)
    assert models["ours"]["explore_recall"] >= models["popularity"]["explore_recall"]
