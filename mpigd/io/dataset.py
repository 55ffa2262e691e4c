"""Reading the training data: check the file's layout, then read this rank's rows only.

Layout: an HDF5 file with a 2-D dataset ``X`` of shape (m, n) and a 1-D dataset ``y`` of
length m (an (m, 1) column is accepted); the names are options. Every rank opens the
file read-only and reads the contiguous hyperslab of rows that
:func:`mpigd.partition.block_range` gives it, so no rank ever holds all of X.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import h5py
import numpy as np

from ..errors import MpigdError, literal, plural
from ..partition import block_range, rows_per_block
from . import sparse
from .hdf5 import READ_ERRORS, get_dataset, open_input
from .outputs import human_bytes
from .sparse import CSRLayout

if TYPE_CHECKING:
    import scipy.sparse as sp


#: Rows of X are read and checked in blocks of about this many bytes: small enough that
#: the check finds them in cache, large enough that HDF5's per-call cost is noise.
READ_BLOCK_BYTES = 4 << 20


@dataclass(frozen=True)
class DatasetInfo:
    """What every rank learns from the file's metadata, before reading any rows."""

    path: str
    x_key: str
    y_key: str | None  # None: features only (prediction)
    n_rows: int
    n_features: int
    x_dtype: np.dtype
    y_dtype: np.dtype | None
    weight_key: str | None = None
    csr: CSRLayout | None = None  # X is a CSR group (io.sparse); None: a dense dataset
    categorical: bool = False  # y_key names the codes of a categorical column (-1: missing)
    n_categories: int = 0  # of that categorical column: its codes are -1 .. n_categories - 1
    text: tuple[str, ...] = ()  # the text inputs it was parsed from (io.text_rows): no HDF5


@dataclass(frozen=True)
class LocalData:
    """This rank's rows ``start:stop`` of the dataset."""

    info: DatasetInfo
    start: int
    stop: int
    X: np.ndarray | sp.csr_matrix  # (stop - start, n), float32 or float64
    y: np.ndarray | None  # (stop - start,), float64; None without labels
    weights: np.ndarray | None = None  # (stop - start,), float64


def _numeric_problem(name: str, dtype: np.dtype, labels: bool = False) -> str | None:
    """Why dataset ``name`` cannot be read as numbers, or None; booleans are labels 0/1
    (an anndata ``obs`` column of booleans), not features."""
    if dtype.kind in "iuf" or (labels and dtype.kind == "b"):
        return None
    kind = {"c": "complex", "V": "compound"}.get(dtype.kind, "non-numeric")
    return f"dataset '{name}' has {kind} dtype {dtype}; it must hold real numbers"


def inspect_dataset(
    path: str | os.PathLike,
    x_key: str = "X",
    y_key: str | None = "y",
    weight_key: str | None = None,
) -> DatasetInfo:
    """Check that ``path`` holds a valid ``X``, ``y`` (and weights) and describe it.
    ``y_key=None`` checks the features only.

    Reads metadata only, so every rank can call it and reach the same verdict.
    Collective: no.

    Raises
    ------
    MpigdError
        Missing or unreadable file, missing dataset, wrong shapes or dtypes
        (:mod:`mpigd.io.hdf5` names each way a file can fail to open).
    """
    path = str(path)
    with open_input(path) as f:
        n_categories = _categories(f, y_key, path) if y_key else None
        categorical = n_categories is not None
        if categorical:
            y_key = f"{y_key.rstrip('/')}/codes"  # the class labels are the codes
        keys = [x_key] + [key for key in (y_key, weight_key) if key]
        csr, layout = None, {}
        if isinstance(f.get(x_key), h5py.Group):
            m, n, csr = sparse.inspect_csr(f[x_key], x_key, path)
            layout = {x_key: ((m, n), csr.data_dtype)}
        datasets = keys[1:] if csr else keys
        layout |= {key: (ds.shape, ds.dtype) for key in datasets for ds in [get_dataset(f, key)]}

    x_shape, x_dtype = layout[x_key]
    if len(x_shape) != 2:
        raise MpigdError(f"{path}: '{x_key}' must be 2-D (rows, features), got shape {x_shape}")
    m, n = x_shape
    if m == 0 or n == 0:
        raise MpigdError(f"{path}: '{x_key}' has shape {x_shape}; it needs rows and features")
    for key in keys[1:]:
        shape = layout[key][0]
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise MpigdError(f"{path}: '{key}' must be 1-D (rows,), got shape {shape}")
        if shape[0] != m:
            raise MpigdError(
                f"{path}: '{key}' has {shape[0]} rows but '{x_key}' has {m}; they must match"
            )
    for key in keys:
        problem = _numeric_problem(key, layout[key][1], labels=key == y_key)
        if problem:
            raise MpigdError(f"{path}: {problem}")
    y_dtype = layout[y_key][1] if y_key else None
    if categorical and y_dtype.kind not in "iu":
        raise MpigdError(
            f"{path}: the codes of the categorical column '{column_of(y_key)}' are {y_dtype}; "
            "they must be integers (-1 for a missing label, else a category's position)"
        )
    return DatasetInfo(
        path, x_key, y_key, m, n, x_dtype, y_dtype, weight_key, csr, categorical, n_categories or 0
    )


def _is_categorical(obj) -> bool:
    """An anndata categorical column: a group with ``codes`` and ``categories``."""
    return (
        isinstance(obj, h5py.Group)
        and "codes" in obj
        and obj.attrs.get("encoding-type") in ("categorical", b"categorical")
    )


def _categories(f: h5py.File, y_key: str, path: str) -> int | None:
    """How many categories the anndata categorical column ``y_key`` has, or None if it is
    not one."""
    group = f.get(y_key)
    if not _is_categorical(group):
        return None
    categories = group.get("categories")
    if not isinstance(categories, h5py.Dataset) or categories.ndim != 1:
        raise MpigdError(
            f"{path}: the categorical column '{y_key}' has no 1-D array 'categories' beside "
            "its codes; write the column again (anndata writes both)"
        )
    return categories.shape[0]


def column_of(y_key: str) -> str:
    """The column a label key names: ``obs/cell_type`` for ``obs/cell_type/codes``."""
    return y_key.removesuffix("/codes")


def check_codes(
    info: DatasetInfo, y: np.ndarray, start: int, stop: int, *, missing: bool = False
) -> None:
    """The codes of a categorical label column in rows ``start:stop``: each the position
    of one of its categories, or -1 (a missing label, which cannot train: allowed only
    with ``missing``). A code beyond the categories would silently become a class of its
    own. Collective: no."""
    if not info.categorical or len(y) == 0:
        return
    where = f"{literal(info.path)}: column '{literal(column_of(info.y_key))}'"
    k = info.n_categories
    outside = (y >= k) | (y < -1)
    if outside.any():
        allowed = f"-1 (missing) or 0 .. {k - 1}" if k else "-1 (missing): it has none"
        raise MpigdError.in_rows(
            f"{where} holds {{count}} codes outside its {k:,} categor{'y' if k == 1 else 'ies'} "
            f"(e.g. code {{example}}) in rows {{rows}}; a code must be {allowed}, so the column "
            "is damaged: write it again from its labels",
            np.count_nonzero(outside),
            start,
            stop,
            f"{y[outside][0]:g}",
        )
    if not missing and (y < 0).any():
        raise MpigdError.in_rows(
            f"{where} holds {{count}} missing labels (code -1) in rows {{rows}}",
            np.count_nonzero(y < 0),
            start,
            stop,
        )


def data_path(info: DatasetInfo) -> str:
    """What a record names as the data: the file's absolute path, the text inputs'
    (joined by ", "), or "(arrays in memory)". Collective: no."""
    if info.text:
        return ", ".join(os.path.abspath(p) for p in info.text)
    return os.path.abspath(info.path) if info.path else "(arrays in memory)"


def first_row(info: DatasetInfo) -> np.ndarray:
    """Row 0 of X as float64, shape (n,). Collective: no."""
    try:
        with h5py.File(info.path, "r") as f:
            if info.csr:
                return sparse.dense_rows(f[info.x_key], np.array([0]), info.n_features)[0]
            return np.asarray(f[info.x_key][0], dtype=np.float64)
    except READ_ERRORS as exc:
        raise MpigdError(f"reading {info.path} failed: {exc}") from exc


#: Rows read to fingerprint a dataset, spread evenly from the first to the last.
FINGERPRINT_ROWS = 16


def fingerprint(info: DatasetInfo) -> dict[str, str | int]:
    """A cheap description that tells one dataset from another.

    Shape, dtypes, dataset names and a SHA-256 of ``FINGERPRINT_ROWS`` rows spread over
    the file: cheap at any size, and different for a different or modified file in
    practice. Collective: no (call on one rank).
    """
    if info.text:
        return _text_fingerprint(info)
    rows = np.unique(np.linspace(0, info.n_rows - 1, FINGERPRINT_ROWS).astype(np.int64))
    digest = hashlib.sha256(f"{info.x_dtype}{info.y_dtype}".encode())
    try:
        with h5py.File(info.path, "r") as f:
            X = f[info.x_key]
            sample = sparse.dense_rows(X, rows, info.n_features) if info.csr else X[rows]
            digest.update(np.ascontiguousarray(sample).tobytes())
            digest.update(np.ascontiguousarray(f[info.y_key][rows]).tobytes())
    except READ_ERRORS as exc:
        raise MpigdError(f"reading {info.path} failed: {exc}") from exc
    return {
        "data_path": os.path.abspath(info.path),
        "x_key": info.x_key,
        "y_key": info.y_key,
        "data_shape": f"{info.n_rows}x{info.n_features}",
        "data_dtypes": f"{info.x_dtype},{info.y_dtype}",
        "data_sample_sha256": digest.hexdigest(),
    }


def _text_fingerprint(info: DatasetInfo) -> dict[str, str | int]:
    """:func:`fingerprint` of text inputs: their sizes and first 64 KiB."""
    digest = hashlib.sha256()
    try:
        for path in info.text:
            with open(path, "rb") as f:
                digest.update(f"{os.fstat(f.fileno()).st_size}".encode() + f.read(2**16))
    except OSError as exc:
        raise MpigdError(f"reading {path} failed: {exc}") from exc
    return {
        "data_path": ", ".join(os.path.abspath(p) for p in info.text),
        "data_shape": f"{info.n_rows}x{info.n_features}",
        "data_sample_sha256": digest.hexdigest(),
    }


def memory_problem(info: DatasetInfo, rank: int, size: int, budget: float) -> str | None:
    """Why rank ``rank``'s block would not fit in ``budget`` bytes, or None.

    Estimated from the metadata before anything is read; the message says how many
    ranks with this budget each would hold the whole dataset. Collective: no.
    """
    if info.csr:
        return _sparse_memory_problem(info, size, budget)
    row_bytes = (
        info.n_features * sparse.memory_dtype(info.x_dtype).itemsize + np.dtype(np.float64).itemsize
    )
    start, stop = block_range(info.n_rows, size, rank)
    need = (stop - start) * row_bytes
    if need <= budget:
        return None
    largest = -(-info.n_rows // size)  # the same words on every rank that fails
    ranks = int(np.ceil(info.n_rows / max(1, budget // row_bytes)))
    return (
        f"{info.path}: blocks of up to {largest:,} rows need {human_bytes(largest * row_bytes)}"
        f" of memory at {plural(size, 'rank')} but a rank has about {human_bytes(budget)}; use "
        f"at least {plural(ranks, 'rank')} with that much memory each"
    )


def _sparse_memory_problem(info: DatasetInfo, size: int, budget: float) -> str | None:
    """The same test for CSR: ranks hold about equal shares of the values and rows."""
    total = info.csr.nnz * info.csr.bytes_per_value() + info.n_rows * 3 * 8
    share = total / size
    if share <= budget:
        return None
    return (
        f"{info.path}: a rank's share of the sparse data needs about {human_bytes(share)} of "
        f"memory at {plural(size, 'rank')} but a rank has about {human_bytes(budget)}; use at "
        f"least {plural(int(np.ceil(total / budget)), 'rank')} with that much memory each"
    )


def read_csr_rows(
    info: DatasetInfo, rank: int, size: int, *, finite: bool = True
) -> tuple[sp.csr_matrix, int, int]:
    """Rank ``rank``'s rows of a CSR group (balanced by non-zeros, checked; NaN and
    infinite values only with ``finite``) and where they are. Collective: no."""
    start, stop = rank_range(info, rank, size)
    try:
        with h5py.File(info.path, "r") as f:
            X = sparse.read_rows(
                f[info.x_key], info.x_key, info.path, info.n_features, start, stop, finite=finite
            )
    except READ_ERRORS as exc:
        raise MpigdError(f"reading {info.path} (rank {rank}'s rows) failed: {exc}") from exc
    return X, start, stop


def _non_finite(values: np.ndarray) -> int:
    """How many of ``values`` are NaN or infinite. A finite sum proves there are none
    (a NaN or inf makes the sum NaN or inf), which costs a fraction of a count; only an
    infinite or NaN sum (or one that overflowed) is counted exactly."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(values)):
            return 0
    return values.size - int(np.count_nonzero(np.isfinite(values)))


def _read_finite(dataset: h5py.Dataset, X: np.ndarray, start: int) -> int:
    """Read ``X`` from ``dataset`` rows ``start:start + len(X)`` in blocks, checking each
    while it is in cache (one pass over memory instead of two); the count of NaN and
    infinite values read. HDF5 converts the type (integer files to float64)."""
    rows = rows_per_block(X.itemsize * max(X.shape[1], 1), READ_BLOCK_BYTES)
    bad = 0
    for first in range(0, len(X), rows):
        last = min(first + rows, len(X))
        dataset.read_direct(X, np.s_[start + first : start + last], np.s_[first:last])
        bad += _non_finite(X[first:last])
    return bad


def read_block(info: DatasetInfo, rank: int, size: int) -> LocalData:
    """Read rank ``rank``'s block of rows (of ``size`` ranks) as one hyperslab per dataset.

    ``X`` keeps a float32 or float64 file dtype (float32 halves memory; the arithmetic is
    float64 either way); integer features are converted to float64 as they are read.
    Labels and weights are always float64. Collective: no.

    Raises
    ------
    MpigdError
        The read failed, or the block holds NaN or infinite values or negative weights.
    """
    if info.csr:
        X, start, stop = read_csr_rows(info, rank, size)
    else:
        start, stop = block_range(info.n_rows, size, rank)
        X = np.empty((stop - start, info.n_features), dtype=sparse.memory_dtype(info.x_dtype))
        if stop > start:
            try:
                with h5py.File(info.path, "r") as f:
                    bad_x = _read_finite(f[info.x_key], X, start)
            except READ_ERRORS as exc:
                raise MpigdError(
                    f"reading rows {start}:{stop} of {info.path} failed: {exc}"
                ) from exc
            check_finite(info, bad_x, start, stop)
    y, weights = read_columns(info, start, stop)
    return LocalData(info, start, stop, X, y, weights)


def rank_range(info: DatasetInfo, rank: int, size: int) -> tuple[int, int]:
    """Rank ``rank``'s rows ``start, stop`` of ``size`` ranks: equal counts of dense rows,
    CSR rows balanced by non-zeros (:func:`mpigd.io.sparse.rank_rows`). Collective: no."""
    if not info.csr:
        return block_range(info.n_rows, size, rank)
    try:
        with h5py.File(info.path, "r") as f:
            return sparse.rank_rows(f[info.x_key], info.n_rows, info.csr.nnz, size, rank)
    except READ_ERRORS as exc:
        raise MpigdError(f"reading {info.path} (rank {rank}'s rows) failed: {exc}") from exc


def check_finite(info: DatasetInfo, bad: int, start: int, stop: int) -> None:
    """Raise the error for ``bad`` NaN or infinite values of X in rows ``start:stop``
    (nothing when there are none). Collective: no."""
    if bad:
        raise MpigdError.in_rows(
            f"{literal(info.path)}: '{literal(info.x_key)}' holds {{count}} NaN or infinite "
            "values in rows {rows}",
            bad,
            start,
            stop,
        )


def read_columns(
    info: DatasetInfo, start: int, stop: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Labels and weights of rows ``start:stop`` as float64 (None for those the dataset
    has not), checked: finite, class codes in range, weights >= 0. Collective: no."""
    columns = {key: np.empty(stop - start) for key in (info.y_key, info.weight_key) if key}
    if stop > start:
        try:
            with h5py.File(info.path, "r") as f:
                for key, values in columns.items():
                    values[:] = f[key].astype(np.float64)[start:stop].reshape(-1)
        except READ_ERRORS as exc:
            raise MpigdError(f"reading rows {start}:{stop} of {info.path} failed: {exc}") from exc
    for key, values in columns.items():
        bad = _non_finite(values)
        if bad:
            raise MpigdError.in_rows(
                f"{literal(info.path)}: '{literal(key)}' holds {{count}} NaN or infinite "
                "values in rows {rows}",
                bad,
                start,
                stop,
            )
    if info.categorical:
        check_codes(info, columns[info.y_key], start, stop)
    weights = columns.get(info.weight_key) if info.weight_key else None
    if weights is not None and (weights < 0).any():
        raise MpigdError.in_rows(
            f"{literal(info.path)}: '{literal(info.weight_key)}' holds {{count}} negative "
            "weights in rows {rows}",
            np.count_nonzero(weights < 0),
            start,
            stop,
        )
    return columns.get(info.y_key), weights
