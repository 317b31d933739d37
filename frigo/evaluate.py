"""Offline evaluation commands (`frigo eval`): the cloud's predictions measured on real purchase data.

A Typer app for the main command to mount; it imports the model (and NumPy) only when run, so the
edge install can still load this file (the data loaders need only the standard library). Results go
to stdout as JSON, progress to stderr.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from evaluation.datasets import TransactionFormat

if TYPE_CHECKING:
    from evaluation.nextbasket import NextBasketParams

eval_app = typer.Typer(
    help="Measure the cloud's predictions: next baskets, reorder days and offers of new items on real "
    "purchase data, and reorder policies in closed loop with simulated households.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

TopK = Annotated[int, typer.Option("--k", min=1, max=1000, help="Length of each predicted basket.")]
Decay = Annotated[
    float | None, typer.Option(min=0.01, max=1.0, help="Per-basket recency decay [default: the tuned one]")
]
Neighbours = Annotated[
    int | None, typer.Option(min=0, help="Nearest households to explore from [default: the tuned number]")
]
Degree = Annotated[
    int | None, typer.Option(min=1, max=2, help="Ranker features' polynomial degree [default: tuned]")
]
L2 = Annotated[float | None, typer.Option(min=0.0, help="Ranker L2 penalty [default: the tuned one]")]


@contextmanager
def _progress() -> Iterator[Callable[[str], None]]:
    """Yield the function that names the current step, shown on stderr with the time spent.

    On a terminal a Rich spinner shows it; otherwise (a log, CI) each step is a line of its own.
    """
    import time

    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        started = time.monotonic()
        yield lambda step: typer.echo(f"[{time.monotonic() - started:6.1f} s] {step}", err=True)
        return
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("loading", total=None)
        yield lambda step: bar.update(task, description=step)


def _next_baskets(path: Path, option: str, step: Callable[[str], None]) -> dict[str, list[list[int]]]:
    """Load the next-basket file given as ``option``; a bad file is a usage error that names it."""
    from cloud.errors import EvaluationDataError
    from evaluation.datasets import load_next_baskets

    step(f"loading {path}")
    try:
        return load_next_baskets(path)
    except EvaluationDataError as exc:
        raise _fail(f"{option}: {exc}") from None


def _params(
    decay: float | None, neighbours: int | None, degree: int | None, l2: float | None
) -> NextBasketParams:
    """Return the model's default parameters with the options given on the command line."""
    from evaluation.nextbasket import NextBasketParams

    params = NextBasketParams()
    return NextBasketParams(
        decay=params.decay if decay is None else decay,
        neighbours=params.neighbours if neighbours is None else neighbours,
        degree=params.degree if degree is None else degree,
        l2=params.l2 if l2 is None else l2,
    )


def _fail(message: str) -> typer.Exit:
    """Print an error to stderr and return the exit to raise (code 2, as for bad options)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@eval_app.command("baskets")
def baskets(
    history: Annotated[
        Path, typer.Option(help="Next-basket JSON of past baskets: {user: [[-1], [item, ...], ..., [-1]]}.")
    ],
    future: Annotated[
        Path | None,
        typer.Option(help="Next-basket JSON with each user's basket to predict (needed unless --tune)."),
    ] = None,
    k: TopK = 10,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune",
            help="Search the parameters on a validation split of --history (each user's last history "
            "basket), print the search, then evaluate on --future with the chosen ones if given.",
        ),
    ] = False,
    decay: Decay = None,
    neighbours: Neighbours = None,
    degree: Degree = None,
    l2: L2 = None,
) -> None:
    """Predict each user's next basket from their history; score our model, G-TopFreq and P-TopFreq.

    Prints JSON: recall@k, NDCG@k, PHR@k (share of users with a hit), and recall on repeat items (bought
    before) and explore items (new to the user), averaged over users. docs/EVALUATION.md defines them.
    """
    from evaluation.baskets import evaluate_baskets, tune_baskets

    if future is None and not tune:
        raise _fail("--future: give the baskets to predict (or --tune alone to search the parameters)")
    params = _params(decay, neighbours, degree, l2)
    report: dict[str, object] = {}
    with _progress() as step:
        past = _next_baskets(history, "--history", step)
        coming = _next_baskets(future, "--future", step) if future is not None else None
        try:
            if tune:
                report["tuning"] = tuning = tune_baskets(past, k, on_step=step)
                chosen = tuning["chosen"]
                assert isinstance(chosen, dict)
                params = _params(chosen["decay"], chosen["neighbours"], chosen["degree"], chosen["l2"])
            if coming is not None:
                report.update(evaluate_baskets(past, coming, k, params, on_step=step))
        except ValueError as exc:
            raise _fail(str(exc)) from None
    typer.echo(json.dumps(report, indent=2))


@eval_app.command("reorder")
def reorder(
    transactions: Annotated[
        Path,
        typer.Option(
            help="CSV of purchases: household_id,day,item_id (day a number or yyyy-mm-dd), one row per item."
        ),
    ],
    k: TopK = 10,
    data_format: Annotated[
        TransactionFormat,
        typer.Option(
            "--format",
            help="transactions: household_id,day,item_id; member-baskets: member_id,date,item with "
            "dd-mm-yyyy dates (the Groceries data set).",
        ),
    ] = TransactionFormat.TRANSACTIONS,
    decay: Decay = None,
    neighbours: Neighbours = None,
    degree: Degree = None,
    l2: L2 = None,
) -> None:
    """Hold out each household's last basket (one per day); score predicted reorder days and top-k baskets.

    Prints JSON: the mean and median absolute error in days of the predicted next purchase of the held-out
    items bought before (our shrunk per-household intervals against two baselines), and recall@k, NDCG@k,
    PHR@k, repeat and explore recall of our model, P-TopFreq and G-TopFreq.
    """
    from cloud.errors import EvaluationDataError
    from evaluation.datasets import load_transactions
    from evaluation.reorder import evaluate_reorder

    params = _params(decay, neighbours, degree, l2)
    with _progress() as step:
        try:
            step(f"loading {transactions}")
            households = load_transactions(transactions, data_format)
        except EvaluationDataError as exc:
            raise _fail(f"--transactions: {exc}") from None
        try:
            report = evaluate_reorder(households, k, params, on_step=step)
        except ValueError as exc:
            raise _fail(str(exc)) from None
    typer.echo(json.dumps(report, indent=2))


@eval_app.command("offers")
def offers(
    history: Annotated[
        Path | None,
        typer.Option(help="Next-basket JSON of past baskets: {user: [[-1], [item, ...], ..., [-1]]}."),
    ] = None,
    future: Annotated[
        Path | None,
        typer.Option(help="Next-basket JSON with each user's basket to predict (with --history)."),
    ] = None,
    transactions: Annotated[
        Path | None,
        typer.Option(
            help="Instead of --history and --future: a CSV of purchases (see --format); each household's "
            "last basket (day) is the one to predict."
        ),
    ] = None,
    data_format: Annotated[
        TransactionFormat,
        typer.Option(
            "--format",
            help="Of --transactions. transactions: household_id,day,item_id; member-baskets: "
            "member_id,date,item with dd-mm-yyyy dates (the Groceries data set).",
        ),
    ] = TransactionFormat.TRANSACTIONS,
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="Items offered per household.")] = 10,
) -> None:
    """Offer each household k items it has never bought; score our explore engine against popularity.

    Only the items of the basket to predict that the household had never bought count: **explore
    recall@k** (the share of them offered) and **explore NDCG@k**, averaged over the households whose
    basket holds at least one. The baseline offers the items in most baskets that the household never
    bought.

    The engine's parameters (`cloud/commerce/explore.py`: weights of co-purchase, neighbours and popularity,
    number of neighbours, recency decay) are searched first on a validation split of the history (each
    household's last history basket predicted from the ones before); the best explore recall there is
    refitted on the full history and scored once on the baskets to predict.

    Prints JSON: `models` (ours and popularity: explore_recall, explore_ndcg, users), `params` (the
    chosen ones), `users`, and `tuning` (every trial's validation scores, popularity's, the choice).

    Example: `frigo eval offers --transactions member_baskets.csv --format member-baskets --k 10`
    """
    from cloud.commerce.explore import ExploreParams
    from cloud.errors import EvaluationDataError
    from evaluation.datasets import hold_out_last, load_transactions
    from evaluation.offers import evaluate_offers, tune_offers

    if transactions is not None and (history is not None or future is not None):
        raise _fail("give either --transactions or --history with --future, not both")
    with _progress() as step:
        if transactions is not None:
            try:
                step(f"loading {transactions}")
                past, coming, _ = hold_out_last(load_transactions(transactions, data_format))
            except EvaluationDataError as exc:
                raise _fail(f"--transactions: {exc}") from None
        elif history is None or future is None:
            raise _fail("give --history and --future (next-basket JSON), or --transactions (a CSV)")
        else:
            past = _next_baskets(history, "--history", step)
            coming = _next_baskets(future, "--future", step)
        try:
            tuning = tune_offers(past, k, on_step=step)
            chosen = tuning["chosen"]
            assert isinstance(chosen, dict)
            report = evaluate_offers(past, coming, k, ExploreParams(**chosen), on_step=step)
        except ValueError as exc:
            raise _fail(str(exc)) from None
    report["tuning"] = tuning
    typer.echo(json.dumps(report, indent=2))


@eval_app.command("closed-loop")
def closed_loop(
    households: Annotated[int, typer.Option(min=1, max=10_000, help="Simulated households.")] = 200,
    days: Annotated[int, typer.Option(min=2, max=730, help="Simulated days.")] = 90,
    seed: Annotated[int, typer.Option(help="Seed of the households (the same for every policy).")] = 1,
    report_dir: Annotated[
        Path | None,
        typer.Option(help="Write each policy's days (truth, forecast, orders) and PNG plots to DIR/POLICY."),
    ] = None,
) -> None:
    """Run simulated households whose true use is known against three reorder policies.

    Grocy's fixed minimum stock, Dash Replenishment's fixed threshold and ours order for the same
    households from the same retailer (delivery the next evening); each sees only what a fridge
    sees. Prints JSON per policy: stockout item-days %, units wasted (expired) %, orders per
    household-month.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from evaluation.closedloop import closed_loop as run
    from evaluation.closedloop import default_policies
    from simulator.catalog import CATALOG

    policies = default_policies({p.code: p for p in CATALOG})
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as bar:
        tasks = {p.name: bar.add_task(p.name, total=days) for p in policies}

        def on_day(policy: str, _day: int) -> None:
            bar.advance(tasks[policy])

        report = run(households, days, seed, policies=policies, report_dir=report_dir, on_day=on_day)
    typer.echo(json.dumps(report, indent=2))
