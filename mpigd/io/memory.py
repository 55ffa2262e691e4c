"""Matrices handed in from memory (the estimators, :func:`mpigd.fit` with rows already
read, :meth:`mpigd.LinearModel.decision_function`), checked as a file's rows are when
read (:func:`mpigd.io.sparse.check_rows`) before any kernel follows their indices.

A CSR matrix is three arrays that a caller can fill with anything: an ``indptr`` that
decreases or runs past the stored values, column indices below 0 or beyond the width.
scipy's own products and mpigd's compiled kernels would read and write outside their
vectors with them, so each is refused here with one ``ValueError`` naming the array to
fix. The compiled kernels check again for themselves (``_fused.c``); this is where the
message is good. Pure, no MPI.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from .sparse import first_decrease


def checked_csr(X, name: str = "X"):
    """``X`` (a scipy CSR matrix or array) with its structure checked: ``indptr`` of
    ``m + 1`` integers from 0, never decreasing, ending within the stored values; column
    indices in ``0 .. n - 1``; real values. A matrix whose rows list a column twice or out
    of order comes back as a canonical copy (duplicates summed, as scipy's products
    count them); the caller's arrays are never changed. Raises
    :class:`~mpigd.errors.InvalidInputError` (a ``ValueError``). Collective: no."""
    if len(X.shape) != 2:
        raise InvalidInputError(f"{name} must be 2-D, not of shape {X.shape}")
    m, n = X.shape
    indptr, indices, data = X.indptr, X.indices, X.data
    for part, array in (("indptr", indptr), ("indices", indices)):
        if array.ndim != 1 or array.dtype.kind not in "iu":
            raise InvalidInputError(
                f"{name}.{part} must be a 1-D array of integers, not {array.dtype} {array.shape}"
            )
    if data.ndim != 1 or data.dtype.kind not in "iuf":
        raise InvalidInputError(
            f"{name}.data must be a 1-D array of real numbers, not {data.dtype} {data.shape}"
        )
    if len(indptr) != m + 1:
        raise InvalidInputError(
            f"{name}.indptr has {len(indptr)} entries, but {name} has {m} rows (it needs m + 1)"
        )
    if len(indices) != len(data):
        raise InvalidInputError(
            f"{name}.indices has {len(indices)} entries but {name}.data {len(data)}; "
            "they must be as long"
        )
    if int(indptr[0]) != 0:
        raise InvalidInputError(f"{name}.indptr starts at {int(indptr[0])}; it must start at 0")
    down = first_decrease(indptr)
    if down is not None:
        raise InvalidInputError(
            f"{name}.indptr decreases at row {down} (from {int(indptr[down])} to "
            f"{int(indptr[down + 1])}); it must never decrease"
        )
    nnz = int(indptr[-1])
    if nnz > len(indices):
        raise InvalidInputError(
            f"{name}.indptr ends at {nnz}, but {name} stores only {len(indices)} values"
        )
    used = indices[:nnz]
    if nnz and (int(used.min()) < 0 or int(used.max()) >= n):
        outside = (used < 0) | (used >= n)
        first = int(np.argmax(outside))
        row = int(np.searchsorted(indptr, first, side="right")) - 1
        count = int(np.count_nonzero(outside))
        noun = "column index" if count == 1 else "column indices"
        raise InvalidInputError(
            f"{name} holds {count:,} {noun} outside 0 .. {n - 1} (e.g. {int(used[first])} in "
            f"row {row}); {name}.indices must index its {n:,} columns"
        )
    if {indptr.dtype, indices.dtype} - {np.dtype(np.int32), np.dtype(np.int64)}:
        import scipy.sparse as sp  # other integer types, in range: as scipy computes with

        X = sp.csr_matrix(
            (data[:nnz], indices[:nnz].astype(np.int64), indptr.astype(np.int64)), shape=(m, n)
        )
    if nnz < len(indices) or not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
        X.prune()  # only the nnz values indptr names
    return X


def checked_sparse(X, name: str = "X"):
    """Any scipy sparse matrix or array as a checked CSR matrix (:func:`checked_csr`). A
    CSC matrix's structure and a COO matrix's coordinates are checked before they are
    converted (scipy's conversions follow them unchecked); LIL and DOK hold their indices
    in Python structures and convert to CSR by copying, then checked. DIA and BSR, whose
    conversions follow their own arrays unchecked, are refused. Raises
    :class:`~mpigd.errors.InvalidInputError`. Collective: no."""
    if len(X.shape) != 2:
        raise InvalidInputError(f"{name} must be 2-D, not of shape {X.shape}")
    fmt = X.format
    if fmt == "csc":  # X.T shares its arrays: a CSR matrix of the same structure
        try:
            checked_csr(X.T, f"{name}.T")
        except InvalidInputError as exc:
            raise InvalidInputError(f"{name} is CSC, so {name}.T is CSR: {exc}") from None
    elif fmt == "coo":
        for axis, (what, coords) in enumerate((("row", X.row), ("col", X.col))):
            size = X.shape[axis]
            if coords.ndim != 1 or len(coords) != len(X.data) or coords.dtype.kind not in "iu":
                raise InvalidInputError(
                    f"{name}.{what} must be a 1-D array of integers, one a value"
                )
            if len(coords) and (int(coords.min()) < 0 or int(coords.max()) >= size):
                raise InvalidInputError(
                    f"{name}.{what} holds indices outside 0 .. {size - 1} (e.g. "
                    f"{int(coords.min()) if coords.min() < 0 else int(coords.max())})"
                )
    elif fmt == "dok":
        return checked_sparse(X.tocoo(), name)
    elif fmt not in ("csr", "lil"):
        raise InvalidInputError(
            f"{name} is a sparse {fmt} matrix, which mpigd does not take as it is; pass it "
            "as CSR (X.tocsr())"
        )
    return checked_csr(X if fmt == "csr" else X.tocsr(), name)


def checked_rows(X, y, weights, n_features: int, model: str | None = None, name: str = "X"):
    """In-memory rows as the kernels take them, checked: X 2-D with ``n_features`` columns
    (a CSR matrix through :func:`checked_csr`, else a float32 or float64 array) of finite
    values; ``y`` (needed with ``model``) and ``weights`` (or None) one finite number a
    row, the weights >= 0 and the labels valid for ``model`` (class indices for softmax,
    0/1 for logistic), as a file's rows are checked when read. Returns ``(X, y,
    weights)``, y and weights as float64. Raises :class:`~mpigd.errors.InvalidInputError`
    for anything else, so that ranks can agree on it. Collective: no."""
    import scipy.sparse as sp

    from ..kernels.losses import class_label_problem, make_loss

    if sp.issparse(X):
        if X.format != "csr":
            raise InvalidInputError(f"{name} is a {X.format} matrix; pass it as CSR (X.tocsr())")
        X = checked_csr(X, name)
    elif getattr(X, "ndim", 0) != 2 or X.dtype not in (np.float32, np.float64):
        raise InvalidInputError(
            f"{name} must be a 2-D float32 or float64 array or a CSR matrix, not "
            f"{getattr(X, 'dtype', type(X).__name__)} of shape {np.shape(X)}"
        )
    if X.shape[1] != n_features:
        raise InvalidInputError(
            f"{name} has {X.shape[1]} columns but its DatasetInfo says {n_features} features"
        )
    values = X.data if sp.issparse(X) else X
    if not np.isfinite(values).all():
        count = values.size - int(np.count_nonzero(np.isfinite(values)))
        raise InvalidInputError(f"{name} holds {count:,} NaN or infinite values")
    if y is None and model is not None:
        raise InvalidInputError(f"y is missing: training a {model} model needs a label a row")
    y, weights = (
        _numbers(values, what, X.shape[0]) for what, values in (("y", y), ("weights", weights))
    )
    if weights is not None and (weights < 0).any():
        raise InvalidInputError("weights must be >= 0")
    if y is not None and model is not None:
        check = class_label_problem if model == "softmax" else make_loss(model).label_problem
        problem = check(y)
        if problem:
            raise InvalidInputError(
                f"y: {problem.rule}; found {problem.count:,} other values (e.g. "
                f"{problem.example:g} in row {problem.first})"
            )
    return X, y, weights


def _numbers(values, what: str, rows: int) -> np.ndarray | None:
    """``values`` (or None) as one finite float64 a row, else an InvalidInputError."""
    if values is None:
        return None
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must hold numbers, one a row") from None
    if array.shape != (rows,):
        raise InvalidInputError(f"{what} has shape {array.shape} but X has {rows} rows")
    if not np.isfinite(array).all():
        raise InvalidInputError(f"{what} holds NaN or infinite values")
    return array
