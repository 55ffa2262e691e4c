"""Row arithmetic, pure and without communication: which rows each rank owns, in
blocks of how many rows a pass over them works, and which fold of a cross-validation
each row belongs to."""

from collections.abc import Callable

import numpy as np

from .errors import MpigdError

#: Bytes of one block of rows in a pass over a rank's rows (the kernels, ``data info``,
#: ``data split``): about 2 MiB, so that the second product of a kernel with a block
#: (``X_b^T r``) reads it from cache rather than memory.
BLOCK_BYTES = 2**21

#: The compiled sweeps sum rows in blocks whose row counts divide this (their ``BLOCK``):
#: a streamed pass whose blocks begin at multiples of it continues the sums block for
#: block as one sweep over the rows in memory does, so the two give the same bits.
SWEEP_ROWS = 64

#: Parameter vectors an optimiser may hold at once (L-BFGS: 10 curvature pairs, plus the
#: iterate, gradient, direction and line-search points), for the memory estimates.
OPTIMIZER_VECTORS = 32

#: Bytes of one HDF5 chunk of an output dataset, and of one block of a conversion:
#: about 1 MiB of whole rows, the unit in which ranks later read them.
CHUNK_BYTES = 2**20

_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def block_range(n_rows: int, size: int, rank: int) -> tuple[int, int]:
    """Half-open row range ``[start, stop)`` owned by ``rank`` of ``size``.

    Contiguous blocks whose lengths differ by at most one row; the ``n_rows % size``
    remainder rows go to the lowest ranks. With ``size > n_rows`` the highest ranks
    get empty ranges.

    Collective: no.

    Parameters
    ----------
    n_rows : int
        Global number of rows, ``>= 0``.
    size : int
        Number of ranks, ``>= 1``.
    rank : int
        This rank, ``0 <= rank < size``.

    Returns
    -------
    (start, stop) : tuple of int
    """
    if n_rows < 0 or size < 1 or not 0 <= rank < size:
        raise ValueError(f"invalid partition: n_rows={n_rows}, size={size}, rank={rank}")
    base, extra = divmod(n_rows, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def balanced_range(
    cost: Callable[[int], int], n_rows: int, total: int, size: int, rank: int
) -> tuple[int, int]:
    """Half-open row range ``[start, stop)`` of ``rank`` when rows are split by cost.

    ``cost(r)`` is the cost of rows ``0:r``, increasing from ``cost(0) = 0`` to
    ``cost(n_rows) = total`` (for sparse rows: the non-zeros before row r, plus r).
    Boundary k is the row boundary whose cost is nearest ``k / size`` of the total, found
    by binary search, so ``cost`` is called about ``2 log2(n_rows)`` times; ranges are
    contiguous, in rank order, and may be empty. Collective: no.
    """
    if n_rows < 0 or size < 1 or not 0 <= rank < size:
        raise ValueError(f"invalid partition: n_rows={n_rows}, size={size}, rank={rank}")

    def boundary(k: int) -> int:
        if k in (0, size):
            return 0 if k == 0 else n_rows
        low, high = 0, n_rows
        while low < high:
            middle = (low + high) // 2
            if cost(middle) * size >= k * total:
                high = middle
            else:
                low = middle + 1
        if low > 0 and k * total - cost(low - 1) * size < cost(low) * size - k * total:
            return low - 1  # the boundary before the row that crosses is nearer
        return low

    return boundary(rank), boundary(rank + 1)


def rows_per_block(
    row_bytes: int, block_bytes: int = BLOCK_BYTES, n_rows: int | None = None
) -> int:
    """How many rows of ``row_bytes`` bytes make a block of about ``block_bytes``: at
    least 1, and at most ``n_rows`` (when given, and at least 1). Collective: no."""
    rows = max(1, block_bytes // max(int(row_bytes), 1))
    return rows if n_rows is None else min(rows, max(n_rows, 1))


def float_block_rows(n_features: int, block_bytes: int = BLOCK_BYTES) -> int:
    """Rows in a block of about ``block_bytes`` of ``n_features`` float64 values (the
    NumPy kernels' and the column sums' blocks), a multiple of :data:`SWEEP_ROWS` where
    that leaves one: a pass streamed in blocks of a multiple of it sums the same blocks
    as a pass over the rows in memory. Collective: no."""
    rows = rows_per_block(8 * n_features, block_bytes)
    return rows - rows % SWEEP_ROWS if rows >= SWEEP_ROWS else rows


def check_folds(folds: int, n_rows: int | None = None) -> None:
    """Raise for a fold count that cannot cross-validate. Collective: no."""
    if folds < 2:
        raise MpigdError(f"cross-validation needs at least 2 folds, got {folds}")
    if n_rows is not None and folds > n_rows:
        raise MpigdError(f"{folds} folds need at least {folds} rows; the data has {n_rows}")


def hash_folds(seed: int, start: int, stop: int, folds: int) -> np.ndarray:
    """Folds of the global rows ``start:stop``: SplitMix64 (Steele, Lea & Flood, OOPSLA
    2014) of ``seed`` and the row index, mod ``folds``; int64, shape (stop - start,).
    Collective: no."""
    with np.errstate(over="ignore"):
        i = np.arange(start, stop, dtype=np.uint64) + np.uint64(1)
        z = np.uint64(seed % 2**64) + i * np.uint64(_GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
        z ^= z >> np.uint64(31)
    return (z % np.uint64(folds)).astype(np.int64)
