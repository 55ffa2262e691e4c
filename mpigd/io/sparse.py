"""Sparse X on disk: a CSR group in anndata's convention, read one rank's rows at a time.

The group holds datasets ``data`` (nnz,) of float32 or float64, ``indices`` (nnz,) and
``indptr`` (m + 1,) of int32 or int64 (row i holds ``indptr[i]:indptr[i + 1]``), and the
attributes ``encoding-type = "csr_matrix"``, ``encoding-version`` and ``shape = (m, n)``,
as anndata writes ``.h5ad`` files, so files from other tools are read as they are.

Ranks hold contiguous rows of about equal cost, a row costing its non-zeros plus one: the
boundaries come from a binary search on the on-disk ``indptr``, a few dozen single reads,
never all of it. A rank then reads ``indptr`` for its rows and one contiguous hyperslab of
``data`` and of ``indices``; it never reads another rank's values. Everything that can
lie is checked, each as one message naming the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import h5py
import numpy as np

from ..errors import MpigdError, literal
from ..partition import CHUNK_BYTES, balanced_range
from .outputs import create_rows_dataset

if TYPE_CHECKING:  # scipy is imported where a matrix is built: not on dense runs
    import scipy.sparse as sp


@dataclass(frozen=True)
class CSRLayout:
    """What the metadata says of a CSR group."""

    nnz: int
    data_dtype: np.dtype
    index_dtype: np.dtype

    def bytes_per_value(self) -> int:
        """Memory per stored value once read (data as float32/float64 and its index)."""
        return memory_dtype(self.data_dtype).itemsize + self.index_dtype.itemsize


def memory_dtype(dtype: np.dtype) -> np.dtype:
    """How values are held once read, dense or sparse: float32 and float64 stay as they
    are (float32 halves memory; arithmetic is float64 either way), integers become
    float64. Collective: no."""
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def inspect_csr(group: h5py.Group, key: str, path: str) -> tuple[int, int, CSRLayout]:
    """``(m, n, layout)`` of the CSR group ``key``, checked against its metadata: the
    encoding, the three datasets, their lengths and dtypes, the shape attribute, and
    ``indptr`` starting at 0 and ending at nnz. Collective: no."""
    encoding = _text(group.attrs.get("encoding-type", ""))
    where = f"{path}: '{key}'"
    if encoding == "csc_matrix":
        raise MpigdError(
            f"{where} is a CSC matrix (column-compressed, common in .h5ad); mpigd reads rows, "
            "so store it as CSR: in Python, anndata's adata.X = adata.X.tocsr() before "
            "write_h5ad, or scipy's X.tocsr()"
        )
    if encoding != "csr_matrix":
        raise MpigdError(
            f"{where} is a group, not a dataset or a CSR matrix (encoding-type "
            f"{encoding or 'missing'})"
        )
    missing = [name for name in ("data", "indices", "indptr") if name not in group]
    if missing:
        raise MpigdError(f"{where} is a CSR group without {', '.join(missing)}")
    data, indices, indptr = (group[name] for name in ("data", "indices", "indptr"))
    m, n = _shape_attribute(group, where)
    for name, ds, kinds in (
        ("data", data, "iuf"),
        ("indices", indices, "iu"),
        ("indptr", indptr, "iu"),
    ):
        if ds.ndim != 1 or ds.dtype.kind not in kinds:
            what = "real numbers" if kinds == "iuf" else "integers"
            raise MpigdError(
                f"{where}/{name} must be a 1-D array of {what}, not {ds.dtype} {ds.shape}"
            )
    if indptr.shape[0] != m + 1:
        raise MpigdError(
            f"{where}/indptr has {indptr.shape[0]} entries but the shape attribute says "
            f"{m} rows (it needs m + 1)"
        )
    if data.shape[0] != indices.shape[0]:
        raise MpigdError(
            f"{where}: data has {data.shape[0]} values but indices has {indices.shape[0]}"
        )
    nnz = data.shape[0]
    first, last = int(indptr[0]), int(indptr[m])
    if first != 0 or last != nnz:
        raise MpigdError(
            f"{where}/indptr runs from {first} to {last}; it must run from 0 to nnz = {nnz}"
        )
    return m, n, CSRLayout(nnz, data.dtype, indices.dtype)


#: The largest row or column count a shape attribute may give (int64 indices).
MAX_DIMENSION = 2**63 - 1


def _shape_attribute(group: h5py.Group, where: str) -> tuple[int, int]:
    """``(m, n)`` from the group's ``shape`` attribute: two whole numbers, neither negative
    (as anndata writes it); anything else is one error saying what it must be."""
    rule = "it must be (rows, features), two whole numbers >= 0, as anndata writes it"
    if "shape" not in group.attrs:
        raise MpigdError(f"{where} has no shape attribute; {rule}")
    try:
        value = np.asarray(group.attrs["shape"])
    except (OSError, TypeError, ValueError) as exc:  # a type h5py cannot read
        raise MpigdError(
            f"{where} has a shape attribute that cannot be read ({exc}); {rule}"
        ) from exc
    items = np.ravel(value).tolist()
    whole = value.dtype.kind in "iuf" and all(
        float(v).is_integer() and 0 <= v <= MAX_DIMENSION for v in items
    )
    if value.ndim > 1 or len(items) != 2 or not whole:
        shown = ", ".join(repr(_text(v)) if isinstance(v, str | bytes) else str(v) for v in items)
        raise MpigdError(f"{where} has the shape attribute ({shown}); {rule}")
    m, n = (int(v) for v in items)
    return m, n


def rank_rows(group: h5py.Group, m: int, nnz: int, size: int, rank: int) -> tuple[int, int]:
    """Rank ``rank``'s rows: a contiguous range of about ``(nnz + m) / size`` of cost, a
    row costing its non-zeros plus one, found by binary search on the on-disk ``indptr``
    (single reads). Collective: no."""
    indptr = group["indptr"]
    return balanced_range(lambda row: int(indptr[row]) + row, m, nnz + m, size, rank)


def read_rows(
    group: h5py.Group,
    key: str,
    path: str,
    n: int,
    start: int,
    stop: int,
    *,
    finite: bool = True,
) -> sp.csr_matrix:
    """Rows ``start:stop`` as a CSR matrix: ``indptr`` for these rows, then one hyperslab
    of ``data`` and of ``indices``; checked (:func:`check_rows`; NaN and infinite values
    only with ``finite``). Collective: no."""
    import scipy.sparse as sp

    indptr = np.asarray(group["indptr"][start : stop + 1], dtype=np.int64)
    first, last = int(indptr[0]), int(indptr[-1])
    _check_indptr(indptr, key, path, start)
    data = np.empty(last - first, dtype=memory_dtype(group["data"].dtype))
    if last > first:
        group["data"].read_direct(data, np.s_[first:last])
    indices = np.asarray(group["indices"][first:last])
    if indices.dtype.kind == "u" or indices.dtype.itemsize not in (4, 8):
        indices = indices.astype(np.int64)
    X = sp.csr_matrix((data, indices, indptr - first), shape=(stop - start, n), copy=False)
    check_rows(X, key, path, start, stop, finite=finite)
    return X


def first_decrease(indptr: np.ndarray) -> int | None:
    """The first row at which ``indptr`` decreases, or None. Neighbours are compared, not
    subtracted: the difference of two huge entries overflows (or wraps, unsigned) and
    would hide the decrease. Collective: no."""
    values = np.asarray(indptr)  # compared in its own dtype: nothing wraps
    down = np.flatnonzero(values[1:] < values[:-1])
    return int(down[0]) if len(down) else None


def _check_indptr(indptr: np.ndarray, key: str, path: str, start: int) -> None:
    row = first_decrease(indptr)
    if row is not None:
        raise MpigdError(f"{path}: '{key}'/indptr decreases at row {start + row}; it must not")


#: Values checked at a time: the checks' temporaries (a row number and a step per value)
#: stay a few MB however large a rank's share is.
CHECK_VALUES = 1 << 19


def check_rows(
    X: sp.csr_matrix, key: str, path: str, start: int, stop: int, *, finite: bool = True
) -> None:
    """Column indices in [0, n), no index twice in one row, finite values; each problem
    one error naming a row (and, merged over ranks, the counts). Checked in blocks of
    rows of about :data:`CHECK_VALUES` values, so memory beyond X stays small.
    Collective: no."""
    where = f"{literal(path)}: '{literal(key)}'"
    n = X.shape[1]
    outside, repeated, bad = [0, None], [0, None], 0
    for first, block in _row_blocks(X):
        out = (block.indices < 0) | (block.indices >= n)
        if out.any():
            outside[0] += int(np.count_nonzero(out))
            if outside[1] is None:
                outside[1] = str(start + first + _row_of(block, int(np.argmax(out))))
        twice = _repeated(block)
        if twice is not None:
            repeated[0] += twice[0]
            if repeated[1] is None:
                repeated[1] = f"{start + first + twice[1]}, column {twice[2]}"
        bad += block.data.size - int(np.count_nonzero(np.isfinite(block.data)))
    if outside[0]:
        raise MpigdError.in_rows(
            f"{where} holds {{count}} column indices outside 0 .. {n - 1} in rows {{rows}} "
            "(e.g. in row {example})",
            outside[0],
            start,
            stop,
            outside[1],
        )
    if repeated[0]:
        raise MpigdError.in_rows(
            f"{where} holds {{count}} rows that list a column index twice, in rows {{rows}} "
            "(e.g. row {example})",
            repeated[0],
            start,
            stop,
            repeated[1],
        )
    if finite and bad:
        raise MpigdError.in_rows(
            f"{where} holds {{count}} NaN or infinite values in rows {{rows}}", bad, start, stop
        )


def _row_blocks(X: sp.csr_matrix):
    """``(first row, rows)`` of X in consecutive blocks of about :data:`CHECK_VALUES`
    values (at least one row each), as CSR views of X's arrays."""
    import scipy.sparse as sp

    indptr, m = X.indptr, X.shape[0]
    first = 0
    while first < m:
        last = int(np.searchsorted(indptr, indptr[first] + CHECK_VALUES, side="right")) - 1
        last = min(max(last, first + 1), m)
        lo, hi = indptr[first], indptr[last]
        block = sp.csr_matrix(
            (X.data[lo:hi], X.indices[lo:hi], indptr[first : last + 1] - lo),
            shape=(last - first, X.shape[1]),
            copy=False,
        )
        yield first, block
        first = last


def _row_of(X: sp.csr_matrix, position: int) -> int:
    return int(np.searchsorted(X.indptr, position, side="right") - 1)


def _repeated(X: sp.csr_matrix) -> tuple[int, int, int] | None:
    """How many rows store an index twice, and the first (row, column), or None. Sorted
    rows (the usual case) need one comparison per value; others a sort."""
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    step = np.diff(X.indices.astype(np.int64))
    same_row = rows[1:] == rows[:-1]
    if not (same_row & (step <= 0)).any():
        return None  # strictly increasing within every row
    order = np.lexsort((X.indices, rows))
    r, c = rows[order], X.indices[order]
    twice = (r[1:] == r[:-1]) & (c[1:] == c[:-1])
    if not twice.any():
        return None
    at = int(np.argmax(twice))
    return len(np.unique(r[1:][twice])), int(r[at]), int(c[at])


def dense_rows(group: h5py.Group, rows: np.ndarray, n: int) -> np.ndarray:
    """Some rows of the group as a dense float64 array (len(rows), n): for a fingerprint
    or row 0. Collective: no."""
    out = np.zeros((len(rows), n))
    indptr = group["indptr"]
    for i, row in enumerate(rows):
        a, b = int(indptr[row]), int(indptr[row + 1])
        out[i, np.asarray(group["indices"][a:b], dtype=np.int64)] = group["data"][a:b]
    return out


class CSRWriter:
    """A CSR group in anndata's layout, filled block by block: ``data`` and ``indices``
    in chunks of about 1 MiB (sized exactly when the count of values is known, else
    grown as blocks come), ``indptr`` chunked by rows. ``writer[a:b] = block`` stores
    rows a:b, in order. Collective: no."""

    def __init__(
        self, f: h5py.File, key: str, n_rows: int, n_features: int, dtype, compression, nnz=None
    ):
        self.group = f.create_group(key)
        self.group.attrs.update(
            {
                "encoding-type": "csr_matrix",
                "encoding-version": "0.1.0",
                "shape": (n_rows, n_features),
            }
        )
        index_dtype = np.int32 if n_features <= np.iinfo(np.int32).max else np.int64
        self.growing = nnz is None
        for name, kind in (("data", np.dtype(dtype)), ("indices", np.dtype(index_dtype))):
            chunk = CHUNK_BYTES // kind.itemsize
            self.group.create_dataset(
                name,
                (0 if self.growing else nnz,),
                maxshape=(None,),  # trimmed by finish() if fewer values come
                dtype=kind,
                chunks=(chunk if self.growing else max(1, min(chunk, nnz)),),
                compression=compression,
                shuffle=compression is not None,
            )
        self.indptr = create_rows_dataset(
            self.group, "indptr", (n_rows + 1,), np.int64, compression=compression
        )
        self.indptr[0] = 0
        self.nnz = 0
        self.attrs = self.group.attrs

    def __setitem__(self, rows: slice, block: sp.csr_matrix) -> None:
        import scipy.sparse as sp

        block = sp.csr_matrix(block)
        end = self.nnz + block.nnz
        if not self.growing and end > self.group["data"].shape[0]:
            raise MpigdError("the input changed while converting: more values than counted")
        for name in ("data", "indices"):
            dataset = self.group[name]
            if self.growing:
                dataset.resize((end,))
            dataset[self.nnz : end] = getattr(block, name)
        self.indptr[rows.start + 1 : rows.stop + 1] = block.indptr[1:] + self.nnz
        self.nnz = end

    def finish(self) -> None:
        """Trim ``data`` and ``indices`` to the values written, when the blocks held fewer
        than counted (a reader that summed repeated column indices)."""
        for name in ("data", "indices"):
            if self.group[name].shape[0] > self.nnz:
                self.group[name].resize((self.nnz,))
