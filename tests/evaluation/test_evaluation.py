"""`frigo eval`: metrics on hand-computed examples, the data loaders, baselines, reorder days, the CLI,
and one run on the real Ta Feng data when it is there."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cloud.errors import EvaluationDataError
from evaluation import metrics
from evaluation.baskets import evaluate_baskets, g_topfreq, p_topfreq, validation_split
from evaluation.datasets import TransactionFormat, load_next_baskets, load_transactions
from evaluation.reorder import IntervalModel, evaluate_reorder
from frigo.evaluate import eval_app

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


# -- metrics -------------------------------------------------------------------------------------


def test_recall_counts_hits_over_the_true_basket() -> None:
    assert metrics.recall([1, 2, 3, 4], {2, 4, 9}, k=4) == pytest.approx(2 / 3)
    assert metrics.recall([1, 2, 3, 4], {2, 4, 9}, k=2) == pytest.approx(1 / 3)
    # A repeated prediction counts once and does not take a second slot.
    assert metrics.recall([2, 2, 4], {2, 4}, k=2) == 1.0


def test_ndcg_uses_binary_relevance_and_an_ideal_of_min_k_and_basket_size() -> None:
    # Hits at ranks 2 and 4; ideal: 2 hits at ranks 1 and 2.
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert metrics.ndcg([1, 2, 3, 4], {2, 4}, k=4) == pytest.approx(expected)
    # Five true items but k = 2: the ideal is two hits, so two hits on top score 1.
    assert metrics.ndcg([1, 2], {1, 2, 3, 4, 5}, k=2) == pytest.approx(1.0)
    assert metrics.ndcg([7, 8], {1}, k=2) == 0.0


def test_hit_repeat_and_explore_recall() -> None:
    past = {1, 2, 3}
    truth = {1, 2, 8, 9}  # repeats 1 and 2, explores 8 and 9

    assert metrics.hit([5, 9], truth, k=2)
    assert not metrics.hit([5, 9], truth, k=1)
    assert metrics.repeat_recall([1, 8, 5], truth, past, k=3) == pytest.approx(1 / 2)
    assert metrics.explore_recall([1, 8, 5], truth, past, k=3) == pytest.approx(1 / 2)
    assert metrics.repeat_recall([1], {8}, past, k=1) is None
    assert metrics.explore_recall([1], {1}, past, k=1) is None


def test_scores_average_over_the_users_each_figure_covers() -> None:
    scores = metrics.score_baskets(
        predictions=[[1, 2], [3, 4]],
        truths=[{1, 5}, {6}],
        pasts=[{1}, {1}],
        k=2,
    )

    assert scores.recall == pytest.approx((1 / 2 + 0) / 2)
    assert scores.phr == pytest.approx(1 / 2)
    assert scores.ndcg == pytest.approx((1 / (1 + 1 / math.log2(3)) + 0) / 2)
    assert (scores.users, scores.repeat_users, scores.explore_users) == (2, 1, 2)
    assert scores.repeat_recall == 1.0  # only user 0 has a repeat item (1), and found it
    assert scores.explore_recall == 0.0
    assert scores.as_dict()["recall"] == 0.25


def test_metrics_refuse_what_is_undefined() -> None:
    with pytest.raises(ValueError, match="true basket is empty"):
        metrics.recall([1], set(), k=1)
    with pytest.raises(ValueError, match="k must be at least 1"):
        metrics.ndcg([1], {1}, k=0)
    with pytest.raises(ValueError, match="one of each per household"):
        metrics.score_baskets([[1]], [{1}, {2}], [set()], k=1)


# -- loaders -------------------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_next_baskets_drop_markers_and_empty_baskets(tmp_path: Path) -> None:
    path = _write(tmp_path, "h.json", '{"u1": [[-1], [1, 2], [], [3], [-1]], "u2": [[4]]}')

    assert load_next_baskets(path) == {"u1": [[1, 2], [3]], "u2": [[4]]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON (line 1, column 2"),
        ("[[1, 2]]", "the top level is a JSON list; expected an object"),
        ("{}", "holds no users"),
        ('{"u1": 5}', "user 'u1' has a int; expected a list of baskets"),
        ('{"u1": [[1], 2]}', "user 'u1', basket 1: a int, not a list of item ids"),
        ('{"u1": [[1, "milk"]]}', "item 'milk' is not an item id"),
        ('{"u1": [[1, true]]}', "item True is not an item id"),
        ('{"u1": [[1, -1]]}', "-1 only as the [-1] marker basket"),
    ],
)
def test_next_baskets_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, "bad.json", text)

    with pytest.raises(EvaluationDataError) as raised:
        load_next_baskets(path)

    assert message in str(raised.value)
    assert str(path) in str(raised.value)


def test_a_missing_file_is_named_with_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(EvaluationDataError, match="no such file; give the path of a next-basket JSON"):
        load_next_baskets(tmp_path / "nope.json")
    with pytest.raises(EvaluationDataError, match="is a directory"):
        load_transactions(tmp_path)


def test_transactions_group_items_into_one_basket_per_household_day(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "t.csv",
        "household_id,day,item_id\nh1,3,milk\nh1,1,eggs\nh1,3,bread\nh1,3,milk\nh2,10,tea\n\n",
    )

    assert load_transactions(path) == {"h1": [(1, ["eggs"]), (3, ["bread", "milk"])], "h2": [(10, ["tea"])]}


def test_transactions_read_iso_dates_and_member_baskets(tmp_path: Path) -> None:
    iso = _write(tmp_path, "t.csv", "household_id,day,item_id\nh1,2015-01-31,milk\nh1,2015-02-02,tea\n")
    groceries = _write(tmp_path, "g.csv", "member_id,date,item\n7,31-01-2015,milk\n7,02-02-2015,tea\n")

    days = [day for day, _ in load_transactions(iso)["h1"]]
    assert days[1] - days[0] == 2
    members = load_transactions(groceries, TransactionFormat.MEMBER_BASKETS)
    assert members == {"7": load_transactions(iso)["h1"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("member_id,date,item\n1,01-01-2015,milk\n", "or use --format member-baskets"),
        ("household_id,day,item_id\n", "no rows after the header"),
        ("household_id,day,item_id\nh1,3\n", "line 2: 2 fields; expected 3"),
        ("household_id,day,item_id\nh1,3,milk\nh1,2015-01-02,tea\n", "line 3: day '2015-01-02' is not a day"),
        ("household_id,day,item_id\nh1,2015-01-02,milk\nh1,4,tea\n", "line 3: day '4' is not a yyyy-mm-dd"),
        ("household_id,day,item_id\nh1,2015-02-30,milk\n", "line 2: day '2015-02-30' is not a yyyy-mm-dd"),
        ("household_id,day,item_id\nh1,3,\n", "line 2: empty item_id"),
    ],
)
def test_transactions_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, "bad.csv", text)

    with pytest.raises(EvaluationDataError) as raised:
        load_transactions(path)

    assert message in str(raised.value)


# -- baselines, split and reorder days ----------------------------------------------------------


def test_baselines_rank_by_baskets_holding_the_item() -> None:
    histories = [[[1, 2], [1, 3]], [[2], [2, 3], [2, 4]], [[5]]]

    assert g_topfreq(histories, 3) == [2, 1, 3]  # 2 in 4 baskets, 1 and 3 in 2 (tie: smaller id)
    # User 2 has one item and is filled with the most popular ones.
    assert p_topfreq(histories, 2) == [[1, 2], [2, 3], [5, 2]]


def test_the_validation_split_holds_out_each_users_last_basket() -> None:
    histories, targets = validation_split({"a": [[1], [2], [3]], "b": [[4]]})

    assert histories == {"a": [[1], [2]], "b": [[4]]}
    assert targets == {"a": [3]}


def test_intervals_shrink_toward_the_item_and_everyone() -> None:
    # Milk: household a every 2 days (two gaps), b every 8 days (one gap).
    model = IntervalModel(
        {"a": [(0, ["milk"]), (2, ["milk"]), (4, ["milk"])], "b": [(0, ["milk"]), (8, ["milk"])]}
    )
    every = (2 * math.log(2) + math.log(8)) / 3  # all gaps are milk's here
    item = (2 * math.log(2) + math.log(8) + 5 * every) / (3 + 5)

    assert model.item_interval("milk") == pytest.approx(math.exp(item))
    assert model.interval("a", "milk") == pytest.approx(math.exp((2 * math.log(2) + 2 * item) / 4))
    assert model.next_day("b", "milk") == pytest.approx(8 + math.exp((math.log(8) + 2 * item) / 3))
    assert model.next_day("a", "tea") is None
    assert model.basket_gap("a") == 2.0


def test_reorder_scores_the_held_out_items_bought_before() -> None:
    households = {
        "a": [(0, ["milk"]), (2, ["milk", "tea"]), (4, ["milk", "bread"])],
        "b": [(0, ["milk"]), (8, ["milk"])],
        "c": [(5, ["tea"])],
    }

    report = evaluate_reorder(households, k=2)

    # Held out: a's day 4 (milk bought before, bread new) and b's day 8 (milk).
    days = report["reorder_days"]
    assert isinstance(days, dict)
    assert days["ours"]["pairs"] == 2
    model = IntervalModel({"a": households["a"][:2], "b": households["b"][:1], "c": households["c"]})
    expected = (abs(2 + model.interval("a", "milk") - 4) + abs(0 + model.interval("b", "milk") - 8)) / 2
    assert days["ours"]["mae_days"] == pytest.approx(expected, abs=0.01)
    assert report["households"] == {"total": 3, "evaluated": 2, "items": 3}


def test_reorder_needs_a_household_with_two_days() -> None:
    with pytest.raises(ValueError, match="no household has baskets on two or more days"):
        evaluate_reorder({"a": [(1, ["milk"])]}, k=2)


def test_evaluate_baskets_scores_every_model_on_users_with_a_future() -> None:
    history = {"a": [[1, 2], [1, 3]], "b": [[2, 3], [2]], "c": [[1]]}
    future = {"a": [[1, 4]], "b": [[2]], "d": [[1]]}

    report = evaluate_baskets(history, future, k=2)

    assert report["users"] == {"history": 3, "future": 3, "evaluated": 2, "future_without_history": 1}
    models = report["models"]
    assert isinstance(models, dict)
    assert set(models) == {"ours", "g_topfreq", "p_topfreq"}
    # P-TopFreq: a gets [1, 2] (1 hit of 2), b gets [2, 3] (1 hit of 1).
    assert models["p_topfreq"]["recall"] == pytest.approx((1 / 2 + 1) / 2)
    assert models["p_topfreq"]["phr"] == 1.0


# -- command line --------------------------------------------------------------------------------


runner = CliRunner()


def _basket_files(tmp_path: Path) -> tuple[Path, Path]:
    history = {f"u{n}": [[-1], [1, 2, n % 5 + 10], [1, 3], [1, n % 5 + 10], [-1]] for n in range(20)}
    future = {f"u{n}": [[-1], [1, n % 5 + 10], [-1]] for n in range(20)}
    return (
        _write(tmp_path, "history.json", json.dumps(history)),
        _write(tmp_path, "future.json", json.dumps(future)),
    )


def test_cli_baskets_prints_json_with_every_model(tmp_path: Path) -> None:
    history, future = _basket_files(tmp_path)

    result = runner.invoke(
        eval_app, ["baskets", "--history", str(history), "--future", str(future), "--k", "3"]
    )

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["k"] == 3
    assert report["users"]["evaluated"] == 20
    for name in ("ours", "g_topfreq", "p_topfreq"):
        assert set(report["models"][name]) >= {"recall", "ndcg", "phr", "repeat_recall", "explore_recall"}
    # Each user re-buys 1 and its own item: both in their history, so P-TopFreq finds them all.
    assert report["models"]["p_topfreq"]["recall"] == 1.0
    assert report["models"]["ours"]["recall"] == 1.0


def test_cli_baskets_tune_searches_without_the_future(tmp_path: Path) -> None:
    history, _ = _basket_files(tmp_path)

    result = runner.invoke(eval_app, ["baskets", "--history", str(history), "--tune", "--k", "2"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    tuning = report["tuning"]
    assert len(tuning["trials"]) == 2 * 3 * 2 * 2
    assert set(tuning["chosen"]) == {"decay", "neighbours", "degree", "l2"}
    assert "models" not in report  # no --future: nothing evaluated


def test_cli_baskets_names_a_missing_or_malformed_file(tmp_path: Path) -> None:
    history, future = _basket_files(tmp_path)

    missing = runner.invoke(
        eval_app, ["baskets", "--history", str(tmp_path / "x.json"), "--future", str(future)]
    )
    malformed = runner.invoke(
        eval_app, ["baskets", "--history", str(history), "--future", str(_write(tmp_path, "f.json", "[1]"))]
    )
    no_future = runner.invoke(eval_app, ["baskets", "--history", str(history)])

    assert missing.exit_code == 2
    assert "no such file; give the path of a next-basket JSON file" in missing.stderr
    assert "--history" in missing.stderr
    assert malformed.exit_code == 2
    assert "the top level is a JSON list" in malformed.stderr
    assert no_future.exit_code == 2
    assert "--tune alone" in no_future.stderr
    assert missing.stdout == malformed.stdout == no_future.stdout == ""


def test_cli_reorder_reads_member_baskets(tmp_path: Path) -> None:
    rows = ["member_id,date,item"]
    for member in range(8):
        for week in range(4):
            rows += [
                f"{member},{1 + 7 * week:02d}-03-2015,whole milk",
                f"{member},{1 + 7 * week:02d}-03-2015,rolls",
            ]
        rows.append(f"{member},29-03-2015,{'soda' if member % 2 else 'yogurt'}")
    path = _write(tmp_path, "members.csv", "\n".join(rows) + "\n")

    result = runner.invoke(
        eval_app, ["reorder", "--transactions", str(path), "--format", "member-baskets", "--k", "2"]
    )

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["households"]["evaluated"] == 8
    assert report["reorder_days"]["ours"]["pairs"] == 0  # the held-out items are all new
    assert set(report["baskets"]) == {"ours", "g_topfreq", "p_topfreq"}


def test_cli_reorder_points_to_the_other_format(tmp_path: Path) -> None:
    path = _write(tmp_path, "members.csv", "member_id,date,item\n1,01-01-2015,milk\n")

    result = runner.invoke(eval_app, ["reorder", "--transactions", str(path)])

    assert result.exit_code == 2
    assert "or use --format member-baskets" in result.stderr
    assert result.stdout == ""


# -- real data -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_on_ta_feng_our_model_beats_p_topfreq() -> None:
    """A deterministic fifth of Ta Feng's users (every fifth in file order), fitted and scored."""
    folder = DATA / "tafeng"
    if not (folder / "history.json").is_file():
        pytest.skip(f"the Ta Feng data is not in {folder} (see the shared data README)")
    history = load_next_baskets(folder / "history.json")
    future = load_next_baskets(folder / "future.json")
    users = list(history)[::5]

    report = evaluate_baskets(
        {u: history[u] for u in users}, {u: future[u] for u in users if u in future}, k=10
    )

    models = report["models"]
    assert isinstance(models, dict)
    ours, baseline = models["ours"], models["p_topfreq"]
    assert ours["recall"] > baseline["recall"]
    assert ours["ndcg"] > baseline["ndcg"]
    assert ours["explore_recall"] > baseline["explore_recall"]
