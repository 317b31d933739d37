"""Next-basket prediction: the items a household will buy on its next shop.

Each household's candidates are its own past items (repeat) and items new to it (explore) that its
nearest neighbours bought, that go with what it bought, or that sold most in the latest baskets. Every
candidate gets features (time-decayed personal frequency, neighbours' score, co-occurrence, popularity,
the household's repeat habit, ...), and two logistic regressions, one for repeat and one for explore
candidates, turn them into probabilities of being in the next basket. The top k, repeat and explore
mixed by probability, are the prediction: a household that mostly re-buys gets mostly repeat items.

The regressions learn from the histories themselves: each household's last known basket is the label
and the baskets before it give the features; then the features are computed again on the full
histories to predict the next basket. Nothing is learnt from the baskets being predicted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from cloud.commerce.rowarrays import FloatArray, IntArray, chunks, ragged, row_pointers, sum_by, top_columns

__all__ = ["BasketFeatures", "Histories", "NextBasketModel", "NextBasketParams"]

# The defaults below were chosen by `frigo eval baskets --tune` on Ta Feng's validation split (each
# household's last history basket predicted from the ones before; docs/EVALUATION.md has the search).
# Per-basket recency decay of the personal item vectors. 1.0 (plain counting) won: the regressions
# already see how recent each purchase is (baskets since, in the last basket).
DECAY = 1.0
# Nearest neighbours (Euclidean distance between personal vectors) whose items a household may explore.
NEIGHBOURS = 300
# Degree of the features' polynomial in the regressions: 2 lets features interact (e.g. the
# household's repeat habit with an item's own score), which the validation search found worth it.
DEGREE = 2
# L2 penalty of the regressions, on standardized features.
L2 = 1.0

# Candidate pools, not tuned: more candidates only cost time, the regressions rank them.
# New items taken from the neighbours' mean vector, from co-occurrence, and from the latest baskets.
EXPLORE_FROM_NEIGHBOURS = 50
EXPLORE_FROM_COOCCURRENCE = 30
EXPLORE_POPULAR = 30
# Most similar items kept per item for the co-occurrence scores.
SIMILAR_ITEMS = 50
# Dense work arrays hold at most this many cells (rows of households times items or households).
CHUNK_CELLS = 16_000_000
# Newton steps of the regressions: at most 30, and none once the log-loss can fall by less than
# NEWTON_TOLERANCE per row (they stop after about eight on Ta Feng).
MAX_NEWTON_STEPS = 30
NEWTON_TOLERANCE = 1e-6
# A regression needs this many positive examples (candidates in the next basket) per weight, or it
# memorises them: with fewer it drops to degree 1, and below that stays untrained, so the candidates
# keep their plain score (own items by recency-weighted frequency, then new items by neighbours').
POSITIVES_PER_WEIGHT = 10
# Pseudo-counts that shrink a household's repeat share and an item's re-buy rate toward the mean.
REPEAT_PRIOR_WEIGHT = 5.0
REBUY_PRIOR_USERS = 5.0

# Each household's baskets, oldest first; a basket is a sequence of item ids.
Histories = Sequence[Sequence[Sequence[int]]]
# Called with the name of each long step as it starts.
StepCallback = Callable[[str], None]

# Features of every candidate; a repeat candidate has its own history with the household besides.
EXPLORE_FEATURES = (
    "log_neighbour_score",
    "log_buyers",
    "log_last_basket_buyers",
    "log_new_buyers",
    "log_rebuy_rate",
    "log_baskets",
    "log_cooccurrence",
    "log_last_basket_cooccurrence",
    "repeat_habit",
    "log_basket_size",
    "log_trend",
)
REPEAT_FEATURES = (
    "personal_score",
    "log_purchases",
    "purchase_share",
    "log_baskets_since",
    "in_last_basket",
    *EXPLORE_FEATURES,
)


@dataclass(frozen=True)
class NextBasketParams:
    """The model's tunable parameters; the defaults are the validation search's choice."""

    decay: float = DECAY
    neighbours: int = NEIGHBOURS
    degree: int = DEGREE
    l2: float = L2

    def __post_init__(self) -> None:
        if not 0 < self.decay <= 1:
            raise ValueError(f"decay must be in (0, 1], not {self.decay}")
        if self.neighbours < 0:
            raise ValueError(f"neighbours must be >= 0, not {self.neighbours}")
        if self.degree not in (1, 2):
            raise ValueError(f"degree must be 1 or 2, not {self.degree}")
        if self.l2 < 0:
            raise ValueError(f"l2 must be >= 0, not {self.l2}")

    def as_dict(self) -> dict[str, float | int]:
        """Return the parameters by name."""
        return asdict(self)


@dataclass(frozen=True)
class _Candidates:
    """One kind of candidates (repeat or explore): who, what, features and a fallback score."""

    user: IntArray
    item: IntArray
    features: FloatArray
    prior: FloatArray

    @staticmethod
    def empty(n_features: int) -> _Candidates:
        """Return a set with no candidates."""
        return _Candidates(
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, n_features)), np.zeros(0)
        )

    @staticmethod
    def concat(parts: Sequence[_Candidates], n_features: int) -> _Candidates:
        """Join chunks of candidates."""
        if not parts:
            return _Candidates.empty(n_features)
        return _Candidates(
            np.concatenate([p.user for p in parts]),
            np.concatenate([p.item for p in parts]),
            np.vstack([p.features for p in parts]),
            np.concatenate([p.prior for p in parts]),
        )


@dataclass(frozen=True)
class _Level:
    """The candidates for predicting the basket after the given histories."""

    n_users: int
    repeat: _Candidates
    explore: _Candidates
    popular: IntArray  # item indices, most bought first (to fill short predictions)


@dataclass(frozen=True)
class _Purchases:
    """The histories flattened: one row per item bought, with dense item indices."""

    user: IntArray
    age: IntArray  # baskets between this one and the household's latest (0: the latest)
    item: IntArray
    n_baskets: IntArray  # per household
    n_items: int

    @staticmethod
    def flatten(histories: Histories, index: dict[int, int]) -> _Purchases:
        """Flatten histories, mapping item ids through ``index``; duplicates within a basket count once."""
        users: list[int] = []
        ages: list[int] = []
        items: list[int] = []
        n_baskets = np.zeros(len(histories), np.int64)
        for u, baskets in enumerate(histories):
            n_baskets[u] = len(baskets)
            for j, basket in enumerate(baskets):
                unique = {index[i] for i in basket}
                users.extend([u] * len(unique))
                ages.extend([len(baskets) - 1 - j] * len(unique))
                items.extend(unique)
        return _Purchases(
            np.array(users, np.int64),
            np.array(ages, np.int64),
            np.array(items, np.int64),
            n_baskets,
            len(index),
        )


class _PurchaseStats:
    """Per household-item pair, per item and per household statistics of one set of histories."""

    def __init__(self, purchases: _Purchases, decay: float) -> None:
        p = purchases
        n_users, n_items = len(p.n_baskets), p.n_items
        self.n_users, self.n_items = n_users, n_items
        keys = p.user * n_items + p.item
        pair_keys, inverse = np.unique(keys, return_inverse=True)
        # Pairs sorted by household, then item.
        self.pair_user = pair_keys // n_items
        self.pair_item = pair_keys % n_items
        self.ptr = row_pointers(self.pair_user, n_users)
        # Personal vector: recency-weighted share of the household's baskets holding the item.
        weights = decay ** p.age.astype(np.float64)
        total = np.cumsum(decay ** np.arange(max(1, int(p.n_baskets.max(initial=1))), dtype=np.float64))
        norm = total[np.maximum(p.n_baskets[p.user], 1) - 1]
        self.personal = sum_by(inverse, weights / norm, len(pair_keys))
        self.count = np.bincount(inverse, minlength=len(pair_keys)).astype(np.float64)
        self.last_age = np.full(len(pair_keys), np.iinfo(np.int64).max)
        np.minimum.at(self.last_age, inverse, p.age)
        first_age = np.zeros(len(pair_keys), np.int64)
        np.maximum.at(first_age, inverse, p.age)
        baskets = p.n_baskets[self.pair_user].astype(np.float64)
        self.share = self.count / baskets
        # Items: buyers, buyers in the latest baskets, first-time buyers there, re-buy rate, trend.
        buyers = np.bincount(self.pair_item, minlength=n_items).astype(np.float64)
        last_buyers = np.bincount(p.item[p.age == 0], minlength=n_items).astype(np.float64)
        new_buyers = np.bincount(self.pair_item[first_age == 0], minlength=n_items).astype(np.float64)
        rebuyers = np.bincount(self.pair_item[self.count >= 2], minlength=n_items).astype(np.float64)
        mean_rebuy = rebuyers.sum() / max(buyers.sum(), 1.0)
        self.log_buyers = np.log1p(buyers)
        self.log_last_buyers = np.log1p(last_buyers)
        self.log_new_buyers = np.log1p(new_buyers)
        self.log_rebuy = np.log(
            (rebuyers + REBUY_PRIOR_USERS * mean_rebuy + 1e-3) / (buyers + REBUY_PRIOR_USERS + 1e-3)
        )
        self.log_trend = np.log((last_buyers + 1) / (buyers + 10))
        self.popular = np.lexsort((np.arange(n_items), -last_buyers, -buyers)).astype(np.int64)
        self.latest_popular = np.lexsort((np.arange(n_items), -buyers, -last_buyers)).astype(np.int64)
        # Households: baskets, habit of re-buying (log-odds of the share of repeat purchases), size.
        not_first = p.age < p.n_baskets[p.user] - 1
        repeat = (first_age[inverse] > p.age) & not_first
        repeats = np.bincount(p.user, weights=repeat, minlength=n_users)
        chances = np.bincount(p.user, weights=not_first, minlength=n_users)
        mean_repeat = min(max(repeats.sum() / max(chances.sum(), 1.0), 0.01), 0.99)
        share = (repeats + REPEAT_PRIOR_WEIGHT * mean_repeat) / (chances + REPEAT_PRIOR_WEIGHT)
        self.repeat_habit = np.log(share / (1 - share))
        self.log_baskets = np.log(np.maximum(p.n_baskets, 1).astype(np.float64))
        sizes = np.bincount(p.user, minlength=n_users) / np.maximum(p.n_baskets, 1)
        self.log_basket_size = np.log(np.maximum(sizes, 1.0))

    def neighbours(self, k: int) -> IntArray:
        """Return each household's ``k`` nearest households (Euclidean, personal vectors)."""
        n_users = self.n_users
        k = min(k, n_users - 1)
        if k <= 0:
            return np.zeros((n_users, 0), np.int64)
        by_item = np.lexsort((self.pair_user, self.pair_item))
        item_users = self.pair_user[by_item]
        item_values = self.personal[by_item]
        item_ptr = row_pointers(self.pair_item[by_item], self.n_items)
        norms = np.bincount(self.pair_user, weights=self.personal**2, minlength=n_users)
        result = np.zeros((n_users, k), np.int64)
        for rows in chunks(n_users, n_users, CHUNK_CELLS):
            entries, place = ragged(self.ptr, rows)
            partners, source = ragged(item_ptr, self.pair_item[entries])
            cells = place[source] * n_users + item_users[partners]
            products = self.personal[entries][source] * item_values[partners]
            dots = sum_by(cells, products, len(rows) * n_users).reshape(len(rows), -1)
            # Ranking by -|a-b|² = 2a·b - |b|² (|a|² is the same along a row).
            closeness = 2 * dots - norms[None, :]
            closeness[np.arange(len(rows)), rows] = -np.inf
            result[rows] = top_columns(closeness, k)
        return result

    def similar_items(self) -> tuple[IntArray, IntArray, FloatArray]:
        """Return CSR (pointers, items, cosine) of each item's most co-bought items, over households."""
        n_items = self.n_items
        partners, source = ragged(self.ptr, self.pair_user)
        a = self.pair_item[source]
        b = self.pair_item[partners]
        different = a != b
        pairs, together = np.unique(a[different] * n_items + b[different], return_counts=True)
        first, second = pairs // n_items, pairs % n_items
        buyers = np.bincount(self.pair_item, minlength=n_items).astype(np.float64)
        cosine = together / np.sqrt(buyers[first] * buyers[second])
        order = np.lexsort((-cosine, first))
        first, second, cosine = first[order], second[order], cosine[order]
        ptr = row_pointers(first, n_items)
        keep = np.arange(len(first)) - ptr[first] < SIMILAR_ITEMS
        first, second, cosine = first[keep], second[keep], cosine[keep]
        return row_pointers(first, n_items), second, cosine


def _shared_features(
    stats: _PurchaseStats,
    scores: tuple[FloatArray, FloatArray, FloatArray],
    user: IntArray,
    item: IntArray,
    row: IntArray,
) -> list[FloatArray]:
    """Return the features both kinds of candidates have (EXPLORE_FEATURES), as columns."""
    neighbour, cooc, cooc_last = scores
    return [
        np.log1p(1000 * neighbour[row, item]),
        stats.log_buyers[item],
        stats.log_last_buyers[item],
        stats.log_new_buyers[item],
        stats.log_rebuy[item],
        stats.log_baskets[user],
        np.log1p(100 * cooc[row, item]),
        np.log1p(100 * cooc_last[row, item]),
        stats.repeat_habit[user],
        stats.log_basket_size[user],
        stats.log_trend[item],
    ]


def _build_level(histories: Histories, index: dict[int, int], params: NextBasketParams) -> _Level:
    """Return the candidates and their features for each household's next basket."""
    stats = _PurchaseStats(_Purchases.flatten(histories, index), params.decay)
    n_users, n_items = stats.n_users, stats.n_items
    neighbours = stats.neighbours(params.neighbours)
    sim_ptr, sim_item, sim_value = stats.similar_items()
    user_total = np.bincount(stats.pair_user, weights=stats.personal, minlength=n_users)
    personal_share = stats.personal / np.maximum(user_total[stats.pair_user], 1e-12)
    in_last = stats.last_age == 0
    popular = stats.latest_popular[: min(EXPLORE_POPULAR, n_items)]
    repeats: list[_Candidates] = []
    explores: list[_Candidates] = []
    for rows in chunks(n_users, n_items, CHUNK_CELLS):
        first, n_rows = int(rows[0]), len(rows)
        lo, hi = int(stats.ptr[first]), int(stats.ptr[first + n_rows])
        own_user, own_item = stats.pair_user[lo:hi], stats.pair_item[lo:hi]
        own_row = own_user - first
        # Neighbours' mean personal vector.
        flat = neighbours[rows].ravel()
        entries, place = ragged(stats.ptr, flat)
        owner = place // max(1, neighbours.shape[1])
        neighbour = sum_by(
            owner * n_items + stats.pair_item[entries],
            stats.personal[entries] / max(1, neighbours.shape[1]),
            n_rows * n_items,
        ).reshape(n_rows, n_items)
        # Co-occurrence with all own items (weighted by personal share) and with the last basket.
        entries, place = ragged(sim_ptr, own_item)
        cooc = sum_by(
            own_row[place] * n_items + sim_item[entries],
            personal_share[lo:hi][place] * sim_value[entries],
            n_rows * n_items,
        ).reshape(n_rows, n_items)
        last = in_last[lo:hi]
        entries, place = ragged(sim_ptr, own_item[last])
        cooc_last = sum_by(
            own_row[last][place] * n_items + sim_item[entries],
            sim_value[entries],
            n_rows * n_items,
        ).reshape(n_rows, n_items)

        scores = (neighbour, cooc, cooc_last)
        common = _shared_features(stats, scores, own_user, own_item, own_row)
        repeats.append(
            _Candidates(
                own_user,
                own_item,
                np.column_stack(
                    [
                        stats.personal[lo:hi],
                        np.log(stats.count[lo:hi]),
                        stats.share[lo:hi],
                        np.log1p(stats.last_age[lo:hi].astype(np.float64)),
                        last.astype(np.float64),
                        *common,
                    ]
                ),
                stats.personal[lo:hi] + 1.0,  # without a trained ranker, own items come first
            )
        )
        explores.append(_explore_candidates(stats, scores, own_row, own_item, first, popular))
    return _Level(
        n_users,
        _Candidates.concat(repeats, len(REPEAT_FEATURES)),
        _Candidates.concat(explores, len(EXPLORE_FEATURES)),
        stats.popular,
    )


def _explore_candidates(
    stats: _PurchaseStats,
    scores: tuple[FloatArray, FloatArray, FloatArray],
    own_row: IntArray,
    own_item: IntArray,
    first: int,
    popular: IntArray,
) -> _Candidates:
    """Return the explore candidates of a chunk of households (rows from ``first``): items none of
    them bought yet, the top by neighbours and by co-occurrence, and the popular ones."""
    neighbour, cooc, _cooc_last = scores
    n_rows, n_items = neighbour.shape
    owned = np.zeros((n_rows, n_items), bool)
    owned[own_row, own_item] = True
    chosen = np.zeros((n_rows, n_items), bool)
    row_index = np.arange(n_rows)[:, None]
    chosen[row_index, top_columns(np.where(owned, -1.0, neighbour), EXPLORE_FROM_NEIGHBOURS)] = True
    chosen[row_index, top_columns(np.where(owned, -1.0, cooc), EXPLORE_FROM_COOCCURRENCE)] = True
    chosen &= (neighbour > 0) | (cooc > 0)
    chosen[:, popular] = True
    chosen &= ~owned
    row, item = np.nonzero(chosen)
    row, item = row.astype(np.int64), item.astype(np.int64)
    user = row + first
    features = np.column_stack(_shared_features(stats, scores, user, item, row))
    return _Candidates(user, item, features, neighbour[row, item])


def _labels(candidates: _Candidates, targets: Sequence[Sequence[int]], index: dict[int, int]) -> FloatArray:
    """Return 1.0 for each candidate in its household's target basket, else 0.0."""
    n_items = len(index)
    keys = [u * n_items + index[i] for u, basket in enumerate(targets) for i in set(basket) if i in index]
    return np.isin(candidates.user * n_items + candidates.item, np.array(keys, np.int64)).astype(np.float64)


@dataclass(frozen=True)
class BasketFeatures:
    """Candidates with features, for training (last known basket) and for predicting the next one.

    Building them is the slow part; models with other regression settings can share them.
    """

    params: NextBasketParams
    vocabulary: IntArray
    train: _Level
    repeat_labels: FloatArray
    explore_labels: FloatArray
    predict: _Level

    @staticmethod
    def build(
        histories: Histories, params: NextBasketParams | None = None, on_step: StepCallback | None = None
    ) -> BasketFeatures:
        """Build the training and prediction candidates of ``histories`` (baskets oldest first)."""
        params = params or NextBasketParams()
        step = on_step or (lambda _name: None)
        vocabulary = np.array(sorted({i for baskets in histories for b in baskets for i in b}), np.int64)
        index = {int(item): n for n, item in enumerate(vocabulary)}
        step("features of the training baskets")
        trained = [baskets for baskets in histories if len(baskets) >= 2]
        train = _build_level([b[:-1] for b in trained], index, params)
        targets = [b[-1] for b in trained]
        step("features of the next baskets")
        predict = _build_level(histories, index, params)
        return BasketFeatures(
            params,
            vocabulary,
            train,
            _labels(train.repeat, targets, index),
            _labels(train.explore, targets, index),
            predict,
        )


def _expand(features: FloatArray, degree: int) -> FloatArray:
    """Return the features with, for degree 2, every product of two of them."""
    if degree == 1:
        return features
    n = features.shape[1]
    products = [features[:, a : a + 1] * features[:, a:] for a in range(n)]
    return np.hstack([features, *products])


def _weights(n_features: int, degree: int) -> int:
    """Return the number of weights of a regression on the expanded features, intercept included."""
    return 1 + n_features + (n_features * (n_features + 1) // 2 if degree == 2 else 0)


class _Ranker:
    """A logistic regression on standardized (and expanded) features, fitted by Newton steps."""

    def __init__(self, degree: int, l2: float) -> None:
        self.degree = degree
        self.l2 = l2
        self.weights: FloatArray | None = None
        self.mean = np.zeros(0)
        self.scale = np.ones(0)

    def fit(self, features: FloatArray, labels: FloatArray) -> _Ranker:
        """Fit, at the highest degree up to the asked one that the positive labels can support."""
        positives = float(labels.sum())
        if labels.size == 0 or positives == labels.size:
            return self
        n = features.shape[1]
        supported = [
            d for d in range(self.degree, 0, -1) if positives >= POSITIVES_PER_WEIGHT * _weights(n, d)
        ]
        if not supported:
            return self
        self.degree = supported[0]
        self.mean = features.mean(axis=0)
        std = features.std(axis=0)
        self.scale = np.where(std > 0, std, 1.0)
        x = self._design(features)
        # The Hessian only steers the steps: single precision halves its cost, the exact gradient
        # still decides where they end.
        x32 = x.astype(np.float32)
        weights = np.zeros(x.shape[1])
        penalty = np.full(x.shape[1], self.l2)
        penalty[0] = 0.0
        for _ in range(MAX_NEWTON_STEPS):
            p = 1 / (1 + np.exp(-np.clip(x @ weights, -50, 50)))
            gradient = x.T @ (p - labels) + penalty * weights
            curvature = (p * (1 - p)).astype(np.float32)
            hessian = ((x32 * curvature[:, None]).T @ x32).astype(np.float64) + np.diag(penalty + 1e-9)
            step = np.linalg.solve(hessian, gradient)
            weights -= step
            # The Newton decrement bounds how much the log-loss can still fall.
            if gradient @ step < NEWTON_TOLERANCE * len(labels):
                break
        self.weights = weights
        return self

    def _design(self, features: FloatArray) -> FloatArray:
        expanded = _expand((features - self.mean) / self.scale, self.degree)
        return np.column_stack([np.ones(len(features)), expanded])

    def probability(self, features: FloatArray) -> FloatArray:
        """Return the probability of each row; 0 when untrained."""
        if self.weights is None:
            return np.zeros(len(features))
        logits = np.clip(self._design(features) @ self.weights, -50, 50)
        return 1 / (1 + np.exp(-logits))


class NextBasketModel:
    """Predict each household's next basket from its history and everyone else's."""

    def __init__(self, params: NextBasketParams | None = None) -> None:
        self.params = params or NextBasketParams()
        self._features: BasketFeatures | None = None
        self._repeat = _Ranker(self.params.degree, self.params.l2)
        self._explore = _Ranker(self.params.degree, self.params.l2)

    def fit(self, histories: Histories, on_step: StepCallback | None = None) -> NextBasketModel:
        """Learn from ``histories`` (one list of baskets per household, oldest first)."""
        return self.fit_features(BasketFeatures.build(histories, self.params, on_step), on_step)

    def fit_features(self, features: BasketFeatures, on_step: StepCallback | None = None) -> NextBasketModel:
        """Learn from features already built (with this model's decay and neighbours)."""
        if (features.params.decay, features.params.neighbours) != (self.params.decay, self.params.neighbours):
            raise ValueError("the features were built with another decay or number of neighbours")
        if on_step is not None:
            on_step("fitting the rankers")
        self._features = features
        self._repeat.fit(features.train.repeat.features, features.repeat_labels)
        self._explore.fit(features.train.explore.features, features.explore_labels)
        return self

    def recommend(self, k: int) -> list[list[int]]:
        """Return each household's ``k`` most likely items of its next basket, most likely first."""
        if self._features is None:
            raise RuntimeError("fit the model first")
        level = self._features.predict
        vocabulary = self._features.vocabulary
        user = np.concatenate([level.repeat.user, level.explore.user])
        item = np.concatenate([level.repeat.item, level.explore.item])
        repeat = self._repeat.probability(level.repeat.features)
        probability = np.concatenate([repeat, self._explore.probability(level.explore.features)])
        prior = np.concatenate([level.repeat.prior, level.explore.prior])
        order = np.lexsort((item, -prior, -probability, user))
        user, item = user[order], item[order]
        starts = row_pointers(user, level.n_users)
        fill = level.popular[: k + k].tolist()
        result: list[list[int]] = []
        for u in range(level.n_users):
            chosen = item[starts[u] : min(starts[u] + k, starts[u + 1])].tolist()
            if len(chosen) < k:
                taken = set(chosen)
                chosen += [i for i in fill if i not in taken][: k - len(chosen)]
            result.append([int(vocabulary[i]) for i in chosen])
        return result
