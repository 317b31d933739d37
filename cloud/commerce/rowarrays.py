"""Array pieces the basket models (``evaluation/nextbasket.py``, ``cloud/commerce/explore.py``)
share: pointers of rows in CSR form, the entries of some rows, sums per cell, runs of rows whose
dense form fits in memory, and each row's highest columns."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


def row_pointers(sorted_rows: IntArray, n_rows: int) -> IntArray:
    """Return CSR pointers of row indices sorted ascending."""
    return np.searchsorted(sorted_rows, np.arange(n_rows + 1)).astype(np.int64)


def sum_by(cells: IntArray, weights: FloatArray, size: int) -> FloatArray:
    """Return the sum of ``weights`` per cell, for cells 0 to ``size - 1``."""
    return np.bincount(cells, weights=weights, minlength=size).astype(np.float64, copy=False)


def chunks(n_rows: int, row_cells: int, max_cells: int) -> list[IntArray]:
    """Split ``range(n_rows)`` into runs of at most ``max_cells`` cells as dense rows of ``row_cells``."""
    size = max(1, max_cells // max(1, row_cells))
    return [np.arange(s, min(s + size, n_rows), dtype=np.int64) for s in range(0, n_rows, size)]


def top_columns(scores: FloatArray, count: int) -> IntArray:
    """Return, per row, the columns of the ``count`` highest scores (in no order)."""
    if count >= scores.shape[1]:
        return np.broadcast_to(np.arange(scores.shape[1], dtype=np.int64), scores.shape).copy()
    return np.argpartition(-scores, count, axis=1)[:, :count].astype(np.int64)


def best_columns(scores: NDArray[np.floating], count: int) -> IntArray:
    """Return, per row, the columns of the ``count`` highest scores, best first; ties go to the smaller
    column, so the best ``n`` are the first ``n`` of the best ``count`` for any ``n < count``."""
    n_rows, width = scores.shape
    if count >= width:
        return np.argsort(-scores, axis=1, kind="stable").astype(np.int64)
    # The count-th best score of each row: every better one is in, then the ties in column order.
    kth = -np.partition(-scores, count - 1, axis=1)[:, count - 1 : count]
    above = scores > kth
    tied = scores == kth
    room = count - above.sum(axis=1, keepdims=True)
    taken = above | (tied & (np.cumsum(tied, axis=1) <= room))
    columns = np.nonzero(taken)[1].reshape(n_rows, count).astype(np.int64)
    order = np.argsort(-np.take_along_axis(scores, columns, axis=1), axis=1, kind="stable")
    return np.take_along_axis(columns, order, axis=1)


def ragged(ptr: IntArray, rows: IntArray) -> tuple[IntArray, IntArray]:
    """Return the entry positions of CSR ``rows`` (in order) and, for each, its place in ``rows``."""
    starts = ptr[rows]
    lengths = ptr[rows + 1] - starts
    place = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
    offsets = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return starts[place] + offsets, place
