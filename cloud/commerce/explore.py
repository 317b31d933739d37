"""Explore recommendations: items a household has never bought, ranked, each with the signal behind it.

Three signals score every item ``i`` new to a household, each a share (between 0 and 1):

- **co-purchase**: for each item ``j`` the household bought, the share of ``j``'s buyers who went on
  to buy ``i`` for the first time in a later basket ("households who buy pasta go on to buy
  parmesan"); averaged over the household's items, recent ones weighing more (``decay`` per basket
  since the household last bought ``j``). Each item keeps its ``SIMILAR_ITEMS`` best partners.
- **neighbours**: the household's ``neighbours`` most similar households (cosine between the sets of
  items bought); the similarity-weighted share of them that bought ``i``, recent purchases weighing
  more (``decay`` per basket before the neighbour's latest).
- **popularity** (take-up): the share of baskets, all households' but their first, that hold a first
  purchase of ``i``; recent baskets weigh more (``decay`` per basket before the household's latest).

The score is ``copurchase_weight * co-purchase + neighbours_weight * neighbours + popularity_weight *
popularity``; ties go to the item taken up more, then to the one with more buyers, then to the smaller
id. The weights, the number of neighbours and the decay are chosen on a validation split by
`evaluation.offers`, never on the baskets to predict: where collaborative filtering does not help
(on the Groceries data), the search gives it weight 0 and the ranking falls back to popularity.

A household's candidates are its ``POOL`` best new items by co-purchase, by its ``POOL_NEIGHBOURS``
nearest households' share and by take-up (all without decay), whatever the parameters: every setting
ranks the same candidates, so the validation search scores exactly what the engine recommends. Each
recommendation carries the signal whose weighted term is largest and, for co-purchase, the household's
item that contributed most and its lift, for an offer to say why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from cloud.commerce.rowarrays import (
    FloatArray,
    IntArray,
    best_columns,
    chunks,
    ragged,
    row_pointers,
    sum_by,
    top_columns,
)

__all__ = ["ExploreEngine", "ExploreParams", "ExploreSignals", "Histories", "Recommendation", "Signal"]

# The defaults were chosen by the validation search of `frigo eval offers` on Ta Feng (each household's
# last history basket predicted from the ones before; docs/EVALUATION.md has the search).
NEIGHBOURS = 100
DECAY = 0.5
COPURCHASE_WEIGHT = 0.5
NEIGHBOURS_WEIGHT = 1.0
POPULARITY_WEIGHT = 2.0

# Not tuned: candidates per signal (more only cost time: the blend ranks them), the neighbours whose
# items are candidates, and co-purchase partners kept per item.
POOL = 100
POOL_NEIGHBOURS = 100
SIMILAR_ITEMS = 100
# Dense work arrays hold at most this many cells (rows of households times items or households).
CHUNK_CELLS = 8_000_000

Float32Array = NDArray[np.float32]
BoolArray = NDArray[np.bool_]
# Each household's baskets, oldest first; a basket is a sequence of item ids.
Histories = Sequence[Sequence[Sequence[int]]]
# Called with the name of each long step as it starts.
StepCallback = Callable[[str], None]


class Signal(StrEnum):
    """What put an item in a household's recommendations."""

    COPURCHASE = "co-purchase"
    NEIGHBOURS = "neighbours"
    POPULAR = "popular"


@dataclass(frozen=True)
class ExploreParams:
    """The engine's tunable parameters; the defaults are the validation search's choice on Ta Feng."""

    neighbours: int = NEIGHBOURS
    decay: float = DECAY
    copurchase_weight: float = COPURCHASE_WEIGHT
    neighbours_weight: float = NEIGHBOURS_WEIGHT
    popularity_weight: float = POPULARITY_WEIGHT

    def __post_init__(self) -> None:
        if self.neighbours < 1:
            raise ValueError(f"neighbours must be >= 1, not {self.neighbours}")
        if not 0 < self.decay <= 1:
            raise ValueError(f"decay must be in (0, 1], not {self.decay}")
        weights = (self.copurchase_weight, self.neighbours_weight, self.popularity_weight)
        if min(weights) < 0 or max(weights) == 0:
            raise ValueError(f"the weights must be >= 0 and not all 0, not {weights}")

    def as_dict(self) -> dict[str, float | int]:
        """Return the parameters by name."""
        return asdict(self)


@dataclass(frozen=True)
class Recommendation:
    """An item new to the household, its score, and why it is there.

    ``because`` is the household's item whose co-purchase contributed most, when the co-purchase signal
    put the item there (else None); ``lift`` is how much more often that item's buyers took up this one
    than households at large did (1.0: no more often).
    """

    item: int
    score: float
    signal: Signal
    because: int | None = None
    lift: float | None = None


@dataclass(frozen=True)
class _Pairs:
    """The household-item pairs of a set of histories (sorted by household, then item)."""

    user: IntArray
    item: IntArray
    last_age: IntArray  # baskets between the pair's last purchase and the household's latest (0: in it)
    first_age: IntArray  # the same for its first purchase
    ptr: IntArray  # CSR pointers per household
    n_baskets: IntArray  # per household
    n_items: int

    @staticmethod
    def flatten(histories: Histories, vocabulary: Sequence[int] = ()) -> tuple[_Pairs, IntArray]:
        """Flatten histories; return the pairs and the item ids of the item indices (sorted: the items of
        the histories and ``vocabulary``)."""
        n_users = len(histories)
        n_baskets = np.fromiter((len(baskets) for baskets in histories), np.int64, n_users)
        sizes = np.fromiter((len(b) for baskets in histories for b in baskets), np.int64)
        ids = np.fromiter(
            (i for baskets in histories for b in baskets for i in b), np.int64, int(sizes.sum())
        )
        vocab = np.unique(np.concatenate([ids, np.asarray(vocabulary, np.int64)]))
        n_items = len(vocab)
        basket_user = np.repeat(np.arange(n_users, dtype=np.int64), n_baskets)
        # Baskets between each basket and its household's latest (0: the latest).
        basket_age = np.repeat(np.cumsum(n_baskets), n_baskets) - 1 - np.arange(len(basket_user))
        keys = np.repeat(basket_user, sizes) * n_items + np.searchsorted(vocab, ids)
        age = np.repeat(basket_age, sizes)
        pair_keys, inverse = np.unique(keys, return_inverse=True)
        last_age = np.full(len(pair_keys), np.iinfo(np.int64).max)
        np.minimum.at(last_age, inverse, age)
        first_age = np.zeros(len(pair_keys), np.int64)
        np.maximum.at(first_age, inverse, age)
        user = pair_keys // n_items
        pairs = _Pairs(
            user, pair_keys % n_items, last_age, first_age, row_pointers(user, n_users), n_baskets, n_items
        )
        return pairs, vocab

    @property
    def n_users(self) -> int:
        return len(self.n_baskets)


@dataclass(frozen=True)
class _Copurchase:
    """Per item ``j``, CSR of the items ``i`` its buyers took up later and the share of them who did."""

    ptr: IntArray
    item: IntArray
    share: FloatArray

    @staticmethod
    def build(pairs: _Pairs) -> _Copurchase:
        n_items = pairs.n_items
        # Position of each pair's first purchase in the household's baskets (0: its first basket).
        first = pairs.n_baskets[pairs.user] - 1 - pairs.first_age
        # Within each household by first purchase; each pair's partners are the household's pairs
        # first bought in a later basket, a run up to the household's end.
        order = np.lexsort((first, pairs.user))
        user, item, first_sorted = pairs.user[order], pairs.item[order], first[order]
        position = user * (int(pairs.n_baskets.max(initial=0)) + 1) + first_sorted
        starts = np.searchsorted(position, position, side="right")
        lengths = pairs.ptr[user + 1] - starts
        source = np.repeat(np.arange(len(user), dtype=np.int64), lengths)
        partners = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(
            int(lengths.sum()), dtype=np.int64
        )
        keys, together = np.unique(item[source] * n_items + item[partners], return_counts=True)
        j, i = keys // n_items, keys % n_items
        # The buyers of j who had a basket after their first purchase of it: they could take up more.
        could = np.bincount(pairs.item[first < pairs.n_baskets[pairs.user] - 1], minlength=n_items)
        share = together / np.maximum(could[j], 1).astype(np.float64)
        order = np.lexsort((i, -share, j))
        j, i, share = j[order], i[order], share[order]
        keep = np.arange(len(j)) - row_pointers(j, n_items)[j] < SIMILAR_ITEMS
        return _Copurchase(row_pointers(j[keep], n_items), i[keep], share[keep])


def _neighbours(pairs: _Pairs, count: int) -> tuple[IntArray, FloatArray]:
    """Return each household's ``count`` most similar households (cosine of item sets), most similar first,
    and the similarities (0 where there is none)."""
    n_users, n_items = pairs.n_users, pairs.n_items
    count = min(count, n_users - 1)
    if count <= 0:
        return np.zeros((n_users, 0), np.int64), np.zeros((n_users, 0))
    by_item = np.lexsort((pairs.user, pairs.item))
    item_users = pairs.user[by_item]
    item_ptr = row_pointers(pairs.item[by_item], n_items)
    sizes = np.diff(pairs.ptr).astype(np.float64)
    norms = np.sqrt(sizes)
    found = np.zeros((n_users, count), np.int64)
    similarity = np.zeros((n_users, count))
    for rows in chunks(n_users, n_users, CHUNK_CELLS):
        entries, place = ragged(pairs.ptr, rows)
        partners, source = ragged(item_ptr, pairs.item[entries])
        shared = np.bincount(
            place[source] * n_users + item_users[partners], minlength=len(rows) * n_users
        ).reshape(len(rows), n_users)
        cosine = shared / np.maximum(norms[rows][:, None] * norms[None, :], 1e-12)
        cosine[np.arange(len(rows)), rows] = -1.0
        top = best_columns(cosine, count)
        found[rows] = top
        similarity[rows] = np.maximum(np.take_along_axis(cosine, top, axis=1), 0.0)
    return found, similarity


def _adoption(pairs: _Pairs, decay: float) -> FloatArray:
    """Return each item's rate of first purchases per basket after a household's first, decayed."""
    taken_up = pairs.first_age < pairs.n_baskets[pairs.user] - 1
    weights = decay ** pairs.first_age[taken_up].astype(np.float64)
    adoptions = sum_by(pairs.item[taken_up], weights, pairs.n_items)
    later_baskets = np.maximum(pairs.n_baskets - 1, 0)
    ages = np.arange(int(later_baskets.max(initial=0)), dtype=np.float64)
    chances = np.concatenate([[0.0], np.cumsum(decay**ages)])[later_baskets].sum()
    return adoptions / max(float(chances), 1e-12)


@dataclass(frozen=True)
class _Pool:
    """Each household's candidates (padded with -1) and their scores by every signal, per decay."""

    item: IntArray  # households × candidates, -1 past the end; in the order ties are broken
    copurchase: dict[float, Float32Array]  # by decay
    neighbours: dict[tuple[float, int], Float32Array]  # by decay and number of neighbours
    popularity: dict[float, Float32Array]  # by decay

    def blend(self, params: ExploreParams) -> Float32Array:
        """Return the weighted score of every candidate (-inf on padding)."""
        key = (params.decay, params.neighbours)
        if key not in self.neighbours:
            raise ValueError(
                f"no scores for decay {key[0]} and {key[1]} neighbours (built {list(self.neighbours)})"
            )
        score = (
            np.float32(params.copurchase_weight) * self.copurchase[params.decay]
            + np.float32(params.neighbours_weight) * self.neighbours[key]
            + np.float32(params.popularity_weight) * self.popularity[params.decay]
        )
        return np.where(self.item >= 0, score, np.float32(-np.inf))

    def rank(self, params: ExploreParams, k: int) -> tuple[IntArray, IntArray]:
        """Return the pool columns of each household's top ``k`` candidates, and their item indices (-1
        where it has fewer). Ties go to the earlier column: the item taken up more, then bought more."""
        columns = best_columns(self.blend(params), k)
        return columns, np.take_along_axis(self.item, columns, axis=1)


@dataclass(frozen=True)
class _Base:
    """What the scores are computed from, whatever the decay: pairs, co-purchases and neighbours."""

    vocabulary: IntArray
    pairs: _Pairs
    copurchase: _Copurchase
    neighbours: IntArray  # households × most similar households, most similar first
    similarity: FloatArray


@dataclass(frozen=True)
class ExploreSignals:
    """The candidates of every household and their signals, for several decays and neighbour counts.

    Building them is the slow part; engines with other weights (and any of the decays and neighbour
    counts built) share them and rank the same candidates.
    """

    decays: tuple[float, ...]
    counts: tuple[int, ...]
    base: _Base
    pool: _Pool

    @property
    def vocabulary(self) -> IntArray:
        """The item ids, in the order of the item indices."""
        return self.base.vocabulary

    @staticmethod
    def build(
        histories: Histories,
        decays: Sequence[float] = (DECAY,),
        neighbours: Sequence[int] = (NEIGHBOURS,),
        on_step: StepCallback | None = None,
        vocabulary: Sequence[int] | None = None,
    ) -> ExploreSignals:
        """Score the new items of each household of ``histories`` (baskets oldest first).

        ``vocabulary`` names every item that may be recommended (default: the items of the histories).
        """
        step = on_step or (lambda _name: None)
        if not decays or not all(0 < d <= 1 for d in decays):
            raise ValueError(f"give one or more decays in (0, 1], not {list(decays)}")
        if not neighbours or min(neighbours) < 1:
            raise ValueError(f"give one or more neighbour counts >= 1, not {list(neighbours)}")
        step("household-item pairs")
        pairs, vocab = _Pairs.flatten(histories, vocabulary or ())
        step("co-purchases")
        copurchase = _Copurchase.build(pairs)
        counts = tuple(sorted({int(n) for n in neighbours}))
        most = max(*counts, POOL_NEIGHBOURS)
        step(f"{most} nearest households")
        found, similarity = _neighbours(pairs, most)
        base = _Base(vocab, pairs, copurchase, found, similarity)
        unique_decays = tuple(sorted({float(d) for d in decays}))
        step(f"scoring new items (decay {', '.join(map(str, unique_decays))})")
        return ExploreSignals(unique_decays, counts, base, _build_pool(base, counts, unique_decays))

    def take_up(self) -> FloatArray:
        """Return each item's take-up share among all households that could take it up (undecayed)."""
        p = self.base.pairs
        could = float((p.n_baskets >= 2).sum())
        taken_up = p.first_age < p.n_baskets[p.user] - 1
        return np.bincount(p.item[taken_up], minlength=p.n_items) / max(could, 1.0)


@dataclass(frozen=True)
class _Entries:
    """Weighted entries of a block of households, each adding to one candidate's score."""

    candidate: IntArray
    weight: FloatArray
    age: IntArray  # baskets since the purchase behind each entry, for the recency weights
    rank: IntArray  # of the neighbour behind each entry (0 for co-purchases)

    @staticmethod
    def keep(
        lookup: NDArray[np.int32], cells: IntArray, weight: FloatArray, age: IntArray, rank: IntArray
    ) -> _Entries:
        """Return the entries whose cell (household × item) is a candidate, by ``lookup`` (-1: none)."""
        candidate = lookup[cells]
        kept = candidate >= 0
        return _Entries(candidate[kept].astype(np.int64), weight[kept], age[kept], rank[kept])

    def total(self, n_candidates: int, powers: FloatArray, count: int | None = None) -> FloatArray:
        """Sum the entries times ``powers[age]`` (of the first ``count`` neighbours) per candidate."""
        if count is None:
            return sum_by(self.candidate, self.weight * powers[self.age], n_candidates)
        inside = self.rank < count
        return sum_by(self.candidate[inside], self.weight[inside] * powers[self.age[inside]], n_candidates)


def _popular_picks(owned: BoolArray, popular_first: IntArray) -> tuple[IntArray, IntArray]:
    """Return the cells (rows, items) of each row's ``POOL`` most taken-up items it does not own."""
    columns = popular_first[: POOL + int(owned.sum(axis=1).max(initial=0))]
    new = ~owned[:, columns]
    rows, places = np.nonzero(new & (np.cumsum(new, axis=1) <= POOL))
    return rows.astype(np.int64), columns[places]


def _build_pool(base: _Base, counts: Sequence[int], decays: Sequence[float]) -> _Pool:
    """Pick each household's candidates by the undecayed signals, then score them for every decay."""
    pairs, copurchase = base.pairs, base.copurchase
    n_users, n_items = pairs.n_users, pairs.n_items
    most = base.neighbours.shape[1]
    picking = min(POOL_NEIGHBOURS, most)
    adoption = {d: _adoption(pairs, d) for d in (1.0, *decays)}
    buyers = np.bincount(pairs.item, minlength=n_items)
    popular_first = np.lexsort((np.arange(n_items), -buyers, -adoption[1.0])).astype(np.int64)
    popular_rank = np.empty(n_items, np.int64)
    popular_rank[popular_first] = np.arange(n_items)
    ages = np.arange(int(pairs.n_baskets.max(initial=1)) + 1, dtype=np.float64)
    powers = {d: d**ages for d in decays}
    rows_out: list[IntArray] = []
    items_out: list[IntArray] = []
    co_out: dict[float, list[FloatArray]] = {d: [] for d in decays}
    nb_out: dict[tuple[float, int], list[FloatArray]] = {(d, c): [] for d in decays for c in counts}
    for rows in chunks(n_users, n_items, CHUNK_CELLS):
        first, n_rows = int(rows[0]), len(rows)
        shape, size = (n_rows, n_items), n_rows * n_items
        lo, hi = int(pairs.ptr[first]), int(pairs.ptr[first + n_rows])
        own_row, own_item, own_age = pairs.user[lo:hi] - first, pairs.item[lo:hi], pairs.last_age[lo:hi]
        # Co-purchase: the (recency-weighted) mean, over the household's items, of their partners' shares.
        entries, place = ragged(copurchase.ptr, own_item)
        co_cells = own_row[place] * n_items + copurchase.item[entries]
        co_share, co_age = copurchase.share[entries], own_age[place]
        # Neighbours: the similarity-weighted share of them that bought the item, recent purchases
        # weighing more.
        entries, place = ragged(pairs.ptr, base.neighbours[rows].ravel())
        nb_rank = place % max(1, most)
        nb_cells = (place // max(1, most)) * n_items + pairs.item[entries]
        nb_similarity = base.similarity[rows].ravel()[place]
        nb_age = pairs.last_age[entries]
        similarity_sums = np.cumsum(base.similarity[rows], axis=1)
        # Candidates: the best new items by each undecayed signal (and by take-up).
        owned = np.zeros(shape, bool)
        owned[own_row, own_item] = True
        picked = np.zeros(shape, bool)
        row_index = np.arange(n_rows)[:, None]
        co_plain = sum_by(co_cells, co_share, size).reshape(shape)
        if picking < most:
            inside = nb_rank < picking
            nb_plain = sum_by(nb_cells[inside], nb_similarity[inside], size).reshape(shape)
        else:
            nb_plain = sum_by(nb_cells, nb_similarity, size).reshape(shape)
        if picking:
            nb_plain /= np.maximum(similarity_sums[:, picking - 1], 1e-12)[:, None]
        for signal in (co_plain, nb_plain):
            picked[row_index, top_columns(np.where(owned, -1.0, signal), POOL)] = True
        picked &= (co_plain > 0) | (nb_plain > 0)
        del co_plain, nb_plain
        picked[_popular_picks(owned, popular_first)] = True
        picked &= ~owned
        del owned
        cells = np.flatnonzero(picked)
        row, item = cells // n_items, cells % n_items
        rows_out.append(row + first)
        items_out.append(item)
        # Their scores, for every decay and number of neighbours.
        lookup = np.full(size, -1, np.int32)
        lookup[cells] = np.arange(len(cells), dtype=np.int32)
        co = _Entries.keep(lookup, co_cells, co_share, co_age, np.zeros(len(co_cells), np.int64))
        nb = _Entries.keep(lookup, nb_cells, nb_similarity, nb_age, nb_rank)
        del lookup
        for d in decays:
            own_weight = sum_by(own_row, powers[d][own_age], n_rows)
            co_out[d].append(co.total(len(cells), powers[d]) / np.maximum(own_weight[row], 1e-12))
            for c in counts:
                reach = min(c, most)
                norm = similarity_sums[row, reach - 1] if reach else np.zeros(len(row))
                nb_out[(d, c)].append(nb.total(len(cells), powers[d], reach) / np.maximum(norm, 1e-12))
    return _padded_pool(base, rows_out, items_out, co_out, nb_out, adoption, popular_rank)


def _padded_pool(
    base: _Base,
    rows_out: list[IntArray],
    items_out: list[IntArray],
    co_out: dict[float, list[FloatArray]],
    nb_out: dict[tuple[float, int], list[FloatArray]],
    adoption: dict[float, FloatArray],
    popular_rank: IntArray,
) -> _Pool:
    """Return the chunks' candidates and scores as households × candidates, padded, each row in the
    order ties are broken (taken up, buyers, id)."""
    n_users = base.pairs.n_users
    decays = list(co_out)
    if not rows_out:  # no households
        rows_out, items_out = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        co_out = {d: [np.zeros(0)] for d in decays}
        nb_out = {key: [np.zeros(0)] for key in nb_out}
    row = np.concatenate(rows_out)
    item = np.concatenate(items_out)
    order = np.lexsort((popular_rank[item], row))
    row, item = row[order], item[order]
    ptr = row_pointers(row, n_users)
    column = np.arange(len(row)) - ptr[row]
    width = int(np.diff(ptr).max(initial=0))

    def padded(values: FloatArray) -> Float32Array:
        out = np.zeros((n_users, width), np.float32)
        out[row, column] = values
        return out

    items = np.full((n_users, width), -1, np.int64)
    items[row, column] = item
    return _Pool(
        items,
        {d: padded(np.concatenate(co_out[d])[order]) for d in decays},
        {key: padded(np.concatenate(parts)[order]) for key, parts in nb_out.items()},
        {d: padded(adoption[d][item]) for d in decays},
    )


class ExploreEngine:
    """Recommend to each household items it has never bought."""

    def __init__(self, params: ExploreParams | None = None) -> None:
        self.params = params or ExploreParams()
        self._signals: ExploreSignals | None = None

    def fit(
        self,
        histories: Histories,
        on_step: StepCallback | None = None,
        vocabulary: Sequence[int] | None = None,
    ) -> ExploreEngine:
        """Learn from ``histories`` (one list of baskets per household, oldest first)."""
        params = self.params
        return self.fit_signals(
            ExploreSignals.build(histories, (params.decay,), (params.neighbours,), on_step, vocabulary)
        )

    def fit_signals(self, signals: ExploreSignals) -> ExploreEngine:
        """Use signals already built (with this engine's decay and number of neighbours among theirs)."""
        if self.params.decay not in signals.decays or self.params.neighbours not in signals.counts:
            raise ValueError(
                f"the signals were built for decays {list(signals.decays)} and neighbour counts "
                f"{list(signals.counts)}, not decay {self.params.decay} with {self.params.neighbours}"
            )
        self._signals = signals
        return self

    def _fitted(self) -> ExploreSignals:
        if self._signals is None:
            raise RuntimeError("fit the engine first")
        return self._signals

    def recommend_items(self, k: int) -> list[list[int]]:
        """Return each household's ``k`` best new items (ids), best first."""
        signals = self._fitted()
        _, items = signals.pool.rank(self.params, k)
        vocabulary = signals.vocabulary
        return [[int(vocabulary[i]) for i in row if i >= 0] for row in items]

    def recommend(self, k: int) -> list[list[Recommendation]]:
        """Return each household's ``k`` best new items, best first, with the signal behind each."""
        signals = self._fitted()
        pool, params = signals.pool, self.params
        columns, items = pool.rank(params, k)
        terms = np.stack(
            [
                weight * np.take_along_axis(values, columns, axis=1).astype(np.float64)
                for weight, values in (
                    (params.copurchase_weight, pool.copurchase[params.decay]),
                    (params.neighbours_weight, pool.neighbours[(params.decay, params.neighbours)]),
                    (params.popularity_weight, pool.popularity[params.decay]),
                )
            ]
        )
        score = terms.sum(axis=0)
        # The largest weighted term; none at all (no neighbours, an item nobody took up) is popular.
        strongest = np.where(terms.max(axis=0) > 0, terms.argmax(axis=0), 2)
        because, lift = self._because(items, (strongest == 0) & (items >= 0))
        vocabulary = signals.vocabulary
        kinds = (Signal.COPURCHASE, Signal.NEIGHBOURS, Signal.POPULAR)
        result: list[list[Recommendation]] = []
        for u in range(items.shape[0]):
            row: list[Recommendation] = []
            for c in range(items.shape[1]):
                if items[u, c] < 0:
                    break
                kind = kinds[int(strongest[u, c])]
                reason = int(because[u, c])
                explained = kind is Signal.COPURCHASE and reason >= 0
                row.append(
                    Recommendation(
                        int(vocabulary[items[u, c]]),
                        float(score[u, c]),
                        kind,
                        int(vocabulary[reason]) if explained else None,
                        float(lift[u, c]) if explained else None,
                    )
                )
            result.append(row)
        return result

    def _because(self, items: IntArray, wanted: BoolArray) -> tuple[IntArray, FloatArray]:
        """Return, where ``wanted``, the household's item with the largest recency-weighted co-purchase
        share toward the recommended item (-1 if none; ties: the smaller item), and that share's lift."""
        signals = self._fitted()
        pairs, co = signals.base.pairs, signals.base.copurchase
        n_users, n_items = pairs.n_users, pairs.n_items
        because = np.full(items.shape, -1, np.int64)
        lift = np.zeros(items.shape)
        take_up = signals.take_up()
        for rows in chunks(n_users, n_items, CHUNK_CELLS):
            first, n_rows = int(rows[0]), len(rows)
            row, slot = np.nonzero(wanted[rows])
            if len(row) == 0:
                continue
            # Which wanted recommendation each (household, item) cell is, if any.
            lookup = np.full(n_rows * n_items, -1, np.int32)
            lookup[row * n_items + items[rows][row, slot]] = np.arange(len(row), dtype=np.int32)
            lo, hi = int(pairs.ptr[first]), int(pairs.ptr[first + n_rows])
            entries, place = ragged(co.ptr, pairs.item[lo:hi])
            target = lookup[(pairs.user[lo:hi][place] - first) * n_items + co.item[entries]]
            hit = target >= 0
            target, own, share = target[hit], pairs.item[lo:hi][place[hit]], co.share[entries[hit]]
            weight = share * self.params.decay ** pairs.last_age[lo:hi][place[hit]].astype(np.float64)
            best = np.lexsort((own, -weight, target))
            best = best[np.r_[True, target[best][1:] != target[best][:-1]]]
            found = target[best]
            because[first + row[found], slot[found]] = own[best]
            offered = items[first + row[found], slot[found]]
            lift[first + row[found], slot[found]] = share[best] / np.maximum(take_up[offered], 1e-12)
        return because, lift
