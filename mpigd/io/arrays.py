"""Readers of NumPy files, ``.npy`` (a 2-D array whose label is a column) and ``.npz``
(arrays ``X`` and ``y``, or a CSR matrix written by ``scipy.sparse.save_npz``), block by
block through the files or zip members, never whole."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

from ..errors import MpigdError
from .source import Progress, Source, block_rows, label_column

# --------------------------------------------------------------------------- NumPy


def _npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _array_blocks(name, open_array, label: str | None):
    """Shape and a block reader of one 2-D array stored as .npy (in a file or a zip)."""
    with open_array() as f:
        shape, fortran, dtype = _npy_header(f)
    if len(shape) != 2 or dtype.kind not in "iuf":
        raise MpigdError(f"{name}: need a 2-D array of numbers, got shape {shape} {dtype}")
    if fortran:
        raise MpigdError(f"{name} is stored in Fortran order; save it with np.ascontiguousarray")
    y_column = label_column(label, None, shape[1])
    keep = [c for c in range(shape[1]) if c != y_column]
    return shape, keep, y_column, _row_reader(open_array, shape, dtype)


def _row_reader(open_array, shape, dtype):
    def read(rows_per_block: int) -> Iterator[np.ndarray]:
        with open_array() as f:
            _npy_header(f)
            for start in range(0, shape[0], rows_per_block):
                rows = min(rows_per_block, shape[0] - start)
                raw = f.read(rows * shape[1] * dtype.itemsize)
                yield np.frombuffer(raw, dtype=dtype).reshape(rows, shape[1])

    return read


def read_numpy(path, *, label: str | None = None, x_key="X", y_key="y") -> Source:
    """A ``.npy`` 2-D array (the label a column of it), or a ``.npz`` with arrays
    ``x_key`` and ``y_key`` (or a single 2-D array, as for .npy). Read in row blocks from
    the file or the zip member, never whole. Collective: no."""
    path = str(path)
    if path.endswith(".npz") or zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            members = [m.removesuffix(".npy") for m in z.namelist()]

        def member(key):
            return lambda: zipfile.ZipFile(path).open(f"{key}.npy")

        if {"data", "indices", "indptr", "format", "shape"} <= set(members):
            return _saved_sparse(path, member)
        if x_key in members:
            x_shape, keep, _, x_read = _array_blocks(f"{path}:{x_key}", member(x_key), "none")
            y_read = None
            if y_key in members:
                with member(y_key)() as f:
                    y_shape, _, y_dtype = _npy_header(f)
                if y_shape not in ((x_shape[0],), (x_shape[0], 1)):
                    raise MpigdError(f"{path}: '{y_key}' has shape {y_shape}; need ({x_shape[0]},)")
                y_read = _row_reader(member(y_key), (x_shape[0], 1), y_dtype)
            source = _numpy_source(path, x_shape, keep, None, x_read, y_read)
            source.notes = [f"label: array {y_key!r}" if y_read else "no label array"]
            return source
        if len(members) != 1:
            raise MpigdError(
                f"{path} has arrays {', '.join(members)}; need '{x_key}' (and '{y_key}')"
            )
        opener = member(members[0])
    else:

        def opener():
            return open(path, "rb")

    shape, keep, y_column, read = _array_blocks(path, opener, label)
    return _numpy_source(path, shape, keep, y_column, read, None)


#: Rows of a CSR matrix read per block from a ``save_npz`` file.
SPARSE_BLOCK_ROWS = 8192


def _vector_reader(open_array, name: str):
    """A reader of consecutive ranges of a 1-D .npy member: ``take(count)``."""
    f = open_array()
    shape, _, dtype = _npy_header(f)
    if len(shape) != 1 or dtype.kind not in "iuf":
        raise MpigdError(f"{name}: need a 1-D array of numbers, got shape {shape} {dtype}")

    def take(count: int) -> np.ndarray:
        return np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype)

    return f, shape[0], take


def _saved_sparse(path: str, member) -> Source:
    """A matrix written by ``scipy.sparse.save_npz``: CSR is read in row blocks (features
    only: such a file holds no labels); other formats are refused with the conversion."""
    with member("format")() as f:
        dtype = _npy_header(f)[2]
        value = np.frombuffer(f.read(), dtype=dtype)
        fmt = value.item() if value.size == 1 else ""
        fmt = fmt.decode("ascii", "replace") if isinstance(fmt, bytes) else str(fmt)
    if fmt != "csr":
        raise MpigdError(
            f"{path} holds a {fmt or 'non-CSR'} matrix; save it as CSR "
            "(scipy.sparse.save_npz(path, X.tocsr()))"
        )
    with member("shape")() as f:
        shape_header = _npy_header(f)
        m, n = (int(v) for v in np.frombuffer(f.read(), dtype=shape_header[2]))
    with member("data")() as f:
        nnz = _npy_header(f)[0][0]

    def blocks(progress: Progress):
        handles = []
        try:
            takes = {}
            for name in ("indptr", "data", "indices"):
                handle, _, takes[name] = _vector_reader(member(name), f"{path}:{name}")
                handles.append(handle)
            first = int(takes["indptr"](1)[0])
            for start in range(0, m, SPARSE_BLOCK_ROWS):
                rows = min(SPARSE_BLOCK_ROWS, m - start)
                ends = takes["indptr"](rows).astype(np.int64)
                count = int(ends[-1]) - first
                data, indices = takes["data"](count), takes["indices"](count)
                if not np.isfinite(data).all():
                    raise MpigdError(f"{path}: the X values hold NaN or infinity")
                indptr = np.concatenate([[0], ends - first])
                X = sp.csr_matrix((data, indices, indptr), shape=(rows, n))
                X.sum_duplicates()
                first = int(ends[-1])
                progress(rows)
                yield X, None
        finally:
            for handle in handles:
                handle.close()

    return Source(m, n, blocks, notes=["no label array (a save_npz file)"], sparse=True, nnz=nnz)


def _numpy_source(path, shape, keep, y_column, x_read, y_read) -> Source:
    rows_per_block = block_rows(shape[1])

    def blocks(progress: Progress):
        ys = y_read(rows_per_block) if y_read else None
        for block in x_read(rows_per_block):
            y = next(ys)[:, 0] if ys else None if y_column is None else block[:, y_column]
            X = block[:, keep]
            for name, values in (("X", X), ("y", y)):
                if (
                    values is not None
                    and values.dtype.kind == "f"
                    and not np.isfinite(values).all()
                ):
                    raise MpigdError(f"{path}: the {name} values hold NaN or infinity")
            progress(len(block))
            yield X, y

    notes = (
        []
        if y_read
        else ["no label column"]
        if y_column is None
        else [f"label: column index {y_column}"]
    )
    return Source(shape[0], len(keep), blocks, notes=notes)
