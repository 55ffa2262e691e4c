"""Readers of NumPy files, ``.npy`` (a 2-D array whose label is a column) and ``.npz``
(arrays ``X`` and ``y``, or a CSR matrix written by ``scipy.sparse.save_npz``), block by
block through the files or zip members, never whole."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import ExitStack

import numpy as np

from ..errors import MpigdError
from .source import Progress, Source, block_rows, label_column
from .sparse import MAX_DIMENSION, first_decrease

# --------------------------------------------------------------------------- NumPy


def _npy_header(f, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of the .npy file or member open as ``f``; one
    error naming ``name`` if it is not one."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)
        return np.lib.format.read_array_header_2_0(f)
    except ValueError as exc:
        raise MpigdError(f"{name} is not a NumPy array (.npy): {exc}") from exc


def _array_blocks(name, open_array, label: str | None):
    """Shape and a block reader of one 2-D array stored as .npy (in a file or a zip)."""
    with open_array() as f:
        shape, fortran, dtype = _npy_header(f, name)
    if len(shape) != 2 or dtype.kind not in "iuf":
        raise MpigdError(f"{name}: need a 2-D array of numbers, got shape {shape} {dtype}")
    if fortran:
        raise MpigdError(f"{name} is stored in Fortran order; save it with np.ascontiguousarray")
    y_column = label_column(label, None, shape[1])
    keep = [c for c in range(shape[1]) if c != y_column]
    return shape, keep, y_column, _row_reader(name, open_array, shape, dtype)


def _row_reader(name, open_array, shape, dtype):
    def read(rows_per_block: int) -> Iterator[np.ndarray]:
        with open_array() as f:
            _npy_header(f, name)
            for start in range(0, shape[0], rows_per_block):
                rows = min(rows_per_block, shape[0] - start)
                raw = _read_exactly(f, rows * shape[1] * dtype.itemsize, name)
                yield np.frombuffer(raw, dtype=dtype).reshape(rows, shape[1])

    return read


def _read_exactly(f, n_bytes: int, name: str) -> bytes:
    """``n_bytes`` from ``f``, or one error saying the array ends early."""
    raw = f.read(n_bytes)
    if len(raw) != n_bytes:
        raise MpigdError(f"{name} ends early: it holds fewer values than its header says")
    return raw


#: The arrays ``scipy.sparse.save_npz`` writes, over its formats (csr, csc, bsr, dia, coo).
SAVE_NPZ_MEMBERS = frozenset(
    {"format", "shape", "data", "indices", "indptr", "row", "col", "offsets"}
)


def read_numpy(path, *, label: str | None = None, x_key="X", y_key="y") -> Source:
    """A ``.npy`` 2-D array (the label a column of it), or a ``.npz`` with arrays
    ``x_key`` and ``y_key`` (or a single 2-D array, as for .npy, or a matrix written by
    ``scipy.sparse.save_npz``). Read in row blocks from the file or the zip member, never
    whole. Collective: no."""
    path = str(path)
    if path.endswith(".npz") or zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            members = [m.removesuffix(".npy") for m in z.namelist()]

        def member(key):
            return lambda: _ZipMember(path, f"{key}.npy")

        if x_key not in members and len(members) > 1 and set(members) <= SAVE_NPZ_MEMBERS:
            return _saved_sparse(path, set(members), member)
        if x_key in members:
            name = f"{path}:{x_key}"
            x_shape, keep, _, x_read = _array_blocks(name, member(x_key), "none")
            y_read = None
            if y_key in members:
                with member(y_key)() as f:
                    y_shape, _, y_dtype = _npy_header(f, f"{path}:{y_key}")
                if y_shape not in ((x_shape[0],), (x_shape[0], 1)):
                    raise MpigdError(f"{path}: '{y_key}' has shape {y_shape}; need ({x_shape[0]},)")
                if y_dtype.kind not in "iufb":
                    raise MpigdError(f"{path}: '{y_key}' holds {y_dtype}; it must hold numbers")
                y_read = _row_reader(f"{path}:{y_key}", member(y_key), (x_shape[0], 1), y_dtype)
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


class _ZipMember:
    """One member of a zip file open for reading, closing the zip file with it."""

    def __init__(self, path: str, name: str):
        self.zip = zipfile.ZipFile(path)
        try:
            self.file = self.zip.open(name)
        except BaseException:
            self.zip.close()
            raise

    def read(self, n: int = -1) -> bytes:
        return self.file.read(n)

    def close(self) -> None:
        self.file.close()
        self.zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------ scipy.sparse.save_npz


#: Rows of a CSR matrix read per block from a ``save_npz`` file.
SPARSE_BLOCK_ROWS = 8192

#: How a ``save_npz`` file that breaks a rule of CSR can be found and written again.
REWRITE = "write it again from a valid matrix (scipy's X.check_format() names the fault)"


def _vector_header(open_array, name: str, kinds: str) -> tuple[int, np.dtype]:
    """Length and dtype of a 1-D .npy member whose dtype kind is one of ``kinds``."""
    with open_array() as f:
        shape, _, dtype = _npy_header(f, name)
    if len(shape) != 1 or dtype.kind not in kinds:
        what = "integers" if kinds == "iu" else "numbers"
        raise MpigdError(f"{name}: need a 1-D array of {what}, got shape {shape} {dtype}")
    return shape[0], dtype


def _vector_reader(stack: ExitStack, open_array, name: str, dtype: np.dtype):
    """A reader of consecutive ranges of a 1-D .npy member: ``take(count)`` returns a
    writable copy (scipy sorts a matrix's arrays in place)."""
    f = stack.enter_context(open_array())
    _npy_header(f, name)

    def take(count: int) -> np.ndarray:
        raw = _read_exactly(f, count * dtype.itemsize, name)
        return np.frombuffer(raw, dtype=dtype).copy()

    return take


def _saved_member(path: str, member, key: str) -> np.ndarray:
    """A small member (``format``, ``shape``) read whole."""
    with member(key)() as f:
        shape, _, dtype = _npy_header(f, f"{path}:{key}")
        size = int(np.prod(shape))
        if dtype.hasobject or size > 16:
            raise MpigdError(f"{path}: '{key}' is not what scipy.sparse.save_npz writes there")
        raw = _read_exactly(f, size * dtype.itemsize, f"{path}:{key}")
        return np.frombuffer(raw, dtype=dtype)


def _saved_format(path: str, members: set[str], member) -> str:
    if "format" not in members:
        raise MpigdError(
            f"{path} looks like a scipy.sparse.save_npz file without its 'format' array; "
            "write it again with scipy.sparse.save_npz(path, X.tocsr())"
        )
    value = _saved_member(path, member, "format")
    fmt = value.item() if value.size == 1 else ""
    return fmt.decode("ascii", "replace") if isinstance(fmt, bytes) else str(fmt)


def _saved_shape(path: str, member) -> tuple[int, int]:
    """``(m, n)`` from the ``shape`` array: two whole numbers, neither negative."""
    value = _saved_member(path, member, "shape")
    items = value.tolist()
    if (
        value.dtype.kind not in "iu"
        or len(items) != 2
        or not all(0 <= v <= MAX_DIMENSION for v in items)
    ):
        raise MpigdError(
            f"{path}: the 'shape' array is {tuple(items)}; it must be (rows, features), two "
            f"whole numbers >= 0; {REWRITE}"
        )
    return int(items[0]), int(items[1])


def _saved_sparse(path: str, members: set[str], member) -> Source:
    """A matrix written by ``scipy.sparse.save_npz``: CSR is read in row blocks (features
    only: such a file holds no labels), every rule of CSR checked on the way (a valid
    matrix with unsorted or repeated column indices is sorted and summed, as scipy reads
    it); other formats are refused with the conversion."""
    fmt = _saved_format(path, members, member)
    if fmt != "csr":
        raise MpigdError(
            f"{path} holds a {fmt or 'non-CSR'} matrix; save it as CSR (X.tocsr()): "
            "scipy.sparse.save_npz(path, X.tocsr())"
        )
    missing = [
        f"'{name}'" for name in ("shape", "data", "indices", "indptr") if name not in members
    ]
    if missing:
        raise MpigdError(f"{path} is a save_npz CSR matrix without {', '.join(missing)}; {REWRITE}")
    m, n = _saved_shape(path, member)
    kinds = {"data": "iufb", "indices": "iu", "indptr": "iu"}
    headers = {k: _vector_header(member(k), f"{path}:{k}", kinds[k]) for k in kinds}
    lengths = {k: length for k, (length, _) in headers.items()}
    if lengths["indptr"] != m + 1:
        raise MpigdError(
            f"{path}: 'indptr' has {lengths['indptr']:,} entries but the shape says {m:,} rows "
            f"(it needs rows + 1); {REWRITE}"
        )
    if lengths["data"] != lengths["indices"]:
        raise MpigdError(
            f"{path}: 'data' has {lengths['data']:,} values but 'indices' has "
            f"{lengths['indices']:,}; they must be as long; {REWRITE}"
        )
    nnz = lengths["data"]
    dtypes = {k: dtype for k, (_, dtype) in headers.items()}

    def blocks(progress: Progress):
        import scipy.sparse as sp  # not at import: text conversion needs no SciPy

        with ExitStack() as stack:
            take = {k: _vector_reader(stack, member(k), f"{path}:{k}", dtypes[k]) for k in kinds}
            done = int(take["indptr"](1)[0])
            if done != 0:
                raise MpigdError(
                    f"{path}: 'indptr' starts at {done}; it must start at 0; {REWRITE}"
                )
            for start in range(0, m, SPARSE_BLOCK_ROWS):
                rows = min(SPARSE_BLOCK_ROWS, m - start)
                indptr = np.concatenate([[done], take["indptr"](rows).astype(np.int64)])
                _check_saved_indptr(path, indptr, start, nnz)
                count = int(indptr[-1]) - done
                data = take["data"](count).astype(np.float64, copy=False)
                indices = take["indices"](count).astype(np.int64, copy=False)
                _check_saved_values(path, data, indices, indptr - done, start, n)
                X = sp.csr_matrix((data, indices, indptr - done), shape=(rows, n), copy=False)
                X.sum_duplicates()  # sorts each row's indices, as the CSR writer needs
                done = int(indptr[-1])
                progress(rows)
                yield X, None
            if done != nnz:
                raise MpigdError(
                    f"{path}: 'indptr' ends at {done:,} but 'data' holds {nnz:,} values; it "
                    f"must end at the count of values; {REWRITE}"
                )

    return Source(m, n, blocks, notes=["no label array (a save_npz file)"], sparse=True, nnz=nnz)


def _check_saved_indptr(path: str, indptr: np.ndarray, start: int, nnz: int) -> None:
    """``indptr`` of rows ``start:start + len(indptr) - 1``, after the previous end: it
    never decreases and never passes the count of values."""
    down = first_decrease(indptr)
    if down is not None:
        row = start + down
        raise MpigdError(f"{path}: 'indptr' decreases at row {row:,}; it must not; {REWRITE}")
    if indptr[-1] > nnz:
        row = start + int(np.argmax(indptr[1:] > nnz))
        raise MpigdError(
            f"{path}: 'indptr' reaches {int(indptr[-1]):,} by row {row:,}, beyond the "
            f"{nnz:,} values of 'data'; {REWRITE}"
        )


def _check_saved_values(path, data, indices, indptr, start: int, n: int) -> None:
    """Column indices in [0, n) and finite values, in one block of rows."""
    outside = (indices < 0) | (indices >= n)
    if outside.any():
        at = int(np.argmax(outside))
        row = start + int(np.searchsorted(indptr, at, side="right") - 1)
        count = int(np.count_nonzero(outside))
        raise MpigdError(
            f"{path}: 'indices' holds {count:,} column {'index' if count == 1 else 'indices'} "
            f"outside 0 .. {n - 1:,} (the shape's {n:,} features), e.g. {int(indices[at]):,} "
            f"in row {row:,}; {REWRITE}"
        )
    if not np.isfinite(data).all():
        raise MpigdError(f"{path}: the X values hold NaN or infinity")


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
