"""A rank's rows of X left on disk and read again, block by block, on every pass.

When a rank's slice of X does not fit its memory budget (or ``--memory`` asks for less),
the objective does not hold X: it holds a :class:`StreamedRows`, and each evaluation
iterates :func:`chunks` over it. A reader thread fills blocks ``k + 1`` and ``k + 2``
while the caller's kernel (compiled, with the GIL released) sums block ``k``:
:data:`~mpigd.io.budget.BUFFERS` buffers, made for each pass and reused by its blocks, so
a pass costs the larger of reading and computing, and memory stays a few blocks however
large the slice is. The blocks come in the same order on every pass, so a run is
repeatable bit for bit.

Values that HDF5 stores unfiltered, in the dtype the kernels take, contiguously or in
chunks of whole rows (as mpigd writes them), are read with ``os.preadv`` at their
offsets in the file (no HDF5 lock, no copy); anything else (compressed, integer or
big-endian values) through h5py's ``read_direct``, which converts as it reads. CSR rows
keep their ``indptr`` in memory (one integer a row) and read ``data`` and ``indices`` a
block at a time. Rows in memory (an ndarray or a CSR matrix) are one chunk, so every
caller is written once. The blocks' size, from a rank's budget: :mod:`mpigd.io.budget`.
Pure, no MPI.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator

import h5py
import numpy as np

from ..errors import MpigdError
from ..partition import SWEEP_ROWS, float_block_rows, rows_per_block
from . import sparse
from .budget import BUFFERS
from .dataset import DatasetInfo, LocalData, check_finite, read_columns
from .hdf5 import READ_ERRORS


class StreamedRows:
    """Rows ``start:stop`` of ``info``'s X, read from the file on every pass in blocks of
    at most ``block_bytes`` (at least one row). ``shape`` and ``dtype`` are those of the
    rows as they would be in memory; :attr:`passes` and :attr:`bytes_read` count the
    passes made and the bytes of X read by them. Collective: no."""

    def __init__(self, info: DatasetInfo, start: int, stop: int, block_bytes: int):
        self.info, self.start, self.stop = info, start, stop
        self.dtype = sparse.memory_dtype(info.x_dtype)
        self.shape = (stop - start, info.n_features)
        self.passes = 0
        self.bytes_read = 0
        self.indptr = None
        self.index_dtype = np.dtype(np.int32 if info.n_features < 2**31 else np.int64)
        if info.csr:
            self.indptr = _read_indptr(info, start, stop)
            self.value_bytes = self.dtype.itemsize + self.index_dtype.itemsize
            width = max(int(np.diff(self.indptr).max(initial=0)), 1)
            self.block_values = max(block_bytes // self.value_bytes, width)
            self.bounds = _csr_bounds(self.indptr, self.block_values)
        else:
            rows = rows_per_block(self.dtype.itemsize * max(info.n_features, 1), block_bytes)
            # whole blocks of the column sums, else of the compiled sweep, where they fit:
            # their sums continue block for block as over the rows in memory, bit for bit
            for whole in (float_block_rows(info.n_features), SWEEP_ROWS):
                if rows >= whole:
                    rows -= rows % whole
                    break
            k = stop - start
            self.bounds = [(lo, min(lo + rows, k)) for lo in range(0, k, rows)]
        # where the bytes lie in the file, to read them straight from it (found once)
        self.raw_offsets = _raw_offsets(self)

    @property
    def csr(self) -> bool:
        return self.indptr is not None

    @property
    def pass_bytes(self) -> int:
        """Bytes of X one pass reads."""
        if self.csr:
            return int(self.indptr[-1] - self.indptr[0]) * self.value_bytes
        return self.shape[0] * self.shape[1] * self.dtype.itemsize

    def like(self):
        """Zero rows of the layout and dtype of these rows: what kernels are chosen by."""
        if self.csr:
            import scipy.sparse as sp

            empty = (np.zeros(0, self.dtype), np.zeros(0, self.index_dtype), np.zeros(1, np.int32))
            return sp.csr_matrix(empty, shape=(0, self.shape[1]))
        return np.empty((0, self.shape[1]), dtype=self.dtype)

    def head(self, rows: int):
        """The first ``rows`` rows, read into memory (a sample)."""
        for chunk, X in self.blocks(limit=rows):
            return X[: rows - chunk.start].copy()
        return self.like()

    def blocks(self, limit: int | None = None) -> Iterator[tuple[slice, object]]:
        """``(rows, X_b)`` for each block of rows in order, ``rows`` a slice of this
        rank's rows and ``X_b`` the block (a view of a reused buffer: valid until the
        next block is asked for). Only blocks before row ``limit`` with one. Raises
        :class:`~mpigd.errors.MpigdError` when a read fails (the file truncated, removed
        or unreadable)."""
        bounds = [b for b in self.bounds if limit is None or b[0] < limit]
        if not bounds:
            return
        self.passes += limit is None
        reader = _Pass(self, bounds)
        try:
            for lo, hi, X in reader:
                yield slice(lo, hi), X
        finally:
            reader.close()


def chunks(X) -> Iterator[tuple[slice, object]]:
    """``(rows, X_b)`` over X's rows: a :class:`StreamedRows`' blocks, or all rows in
    memory as one chunk. Collective: no."""
    if isinstance(X, StreamedRows):
        yield from X.blocks()
    else:
        yield slice(0, X.shape[0]), X


def like(X):
    """Rows of X's layout and dtype to choose kernels by: X itself if in memory."""
    return X.like() if isinstance(X, StreamedRows) else X


def head(X, rows: int):
    """X's first ``rows`` rows, in memory."""
    return X.head(rows) if isinstance(X, StreamedRows) else X[:rows]


def read_streamed(info: DatasetInfo, start: int, stop: int, block: int) -> LocalData:
    """Rows ``start:stop`` (a rank's: :func:`~mpigd.io.dataset.rank_range`), X left on
    disk as :class:`StreamedRows` of ``block``-byte blocks, their labels and weights read;
    one pass checks X as :func:`~mpigd.io.dataset.read_block` does (finite values; CSR
    indices in range, none twice in a row). Collective: no."""
    X = StreamedRows(info, start, stop, block)
    for rows, X_b in X.blocks():
        first, last = start + rows.start, start + rows.stop
        if info.csr:
            sparse.check_rows(X_b, info.x_key, info.path, first, last)
        else:
            check_finite(info, X_b.size - int(np.count_nonzero(np.isfinite(X_b))), first, last)
    y, weights = read_columns(info, start, stop)
    return LocalData(info, start, stop, X, y, weights)


class _Pass:
    """One pass over a :class:`StreamedRows`: a reader thread fills a free buffer with the
    next block and hands it over; the caller gives a buffer back when it asks for the
    next block. :data:`~mpigd.io.budget.BUFFERS` buffers: the reads of the blocks after
    block k overlap the work on it."""

    def __init__(self, rows: StreamedRows, bounds: list[tuple[int, int]]):
        self.rows, self.bounds = rows, bounds
        self.free: queue.Queue = queue.Queue()
        self.full: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        for _ in range(BUFFERS):
            self.free.put(_buffers(rows))
        self.thread = threading.Thread(target=self._read, name="mpigd-stream", daemon=True)
        self.thread.start()

    def __iter__(self):
        held = None
        for lo, hi in self.bounds:
            item = self.full.get()
            if held is not None:
                self.free.put(held)
            if isinstance(item, BaseException):
                raise _read_error(self.rows, lo, hi, item)
            held = item
            yield lo, hi, _view(self.rows, held, lo, hi)
        if held is not None:
            self.free.put(held)

    def _read(self) -> None:
        rows = self.rows
        try:
            with _Source(rows) as source:
                for lo, hi in self.bounds:
                    buffers = self.free.get()
                    if self.stopping.is_set():
                        return
                    rows.bytes_read += source.fill(rows, buffers, lo, hi)
                    self.full.put(buffers)
        except Exception as exc:  # handed to the caller, who names the rows
            self.full.put(exc)

    def close(self) -> None:
        self.stopping.set()
        self.free.put(None)  # wakes a reader waiting for a buffer
        self.thread.join()


def _buffers(rows: StreamedRows):
    if rows.csr:
        values = rows.block_values
        return np.empty(values, rows.dtype), np.empty(values, rows.index_dtype)
    most = max(hi - lo for lo, hi in rows.bounds)
    return np.empty((most, rows.shape[1]), dtype=rows.dtype)


def _view(rows: StreamedRows, buffers, lo: int, hi: int):
    """Block ``lo:hi`` as the kernels take it: a C-ordered slice of the dense buffer, or
    a CSR matrix over the buffers' first values (no copy)."""
    if not rows.csr:
        return buffers[: hi - lo]
    import scipy.sparse as sp

    indptr = (rows.indptr[lo : hi + 1] - rows.indptr[lo]).astype(rows.index_dtype)
    used = int(indptr[-1])
    data, indices = buffers[0][:used], buffers[1][:used]
    return sp.csr_matrix((data, indices, indptr), shape=(hi - lo, rows.shape[1]), copy=False)


def _read_error(rows: StreamedRows, lo: int, hi: int, exc: BaseException) -> BaseException:
    """What the caller raises for the reader's exception ``exc``: a failed read as one
    :class:`~mpigd.errors.MpigdError` naming the rows; anything else (a bug) as it is."""
    if isinstance(exc, MpigdError) or not isinstance(exc, READ_ERRORS):
        return exc
    first, last = rows.start + lo, rows.start + hi
    return MpigdError(f"reading rows {first}:{last} of {rows.info.path} failed: {exc}")


class _Source:
    """The file of some :class:`StreamedRows`, open for one pass, reading a block's
    bytes into a buffer. Each dataset a pass reads (a CSR group's values and column
    indices: two regions of the file, read block by block in turn) has a descriptor of
    its own: the kernel keeps its read-ahead per open file, and one descriptor going
    back and forth between two regions reads ahead less (cold, a CSR pass's reads took
    0.70 s with two descriptors where one took 1.03 s; ``POSIX_FADV_SEQUENTIAL`` on
    them, 0.93 s)."""

    def __init__(self, rows: StreamedRows):
        info = rows.info
        try:
            self.file = h5py.File(info.path, "r")
        except READ_ERRORS as exc:
            raise MpigdError(f"opening {info.path} for a pass over its rows failed: {exc}") from exc
        self.fds: list[int] = []
        try:
            self.datasets = _datasets(self.file, rows)
            for _ in self.datasets:
                self.fds.append(os.open(info.path, os.O_RDONLY))
        except BaseException:  # nothing left open
            self.__exit__()
            raise
        self.offsets = rows.raw_offsets

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for fd in self.fds:
            os.close(fd)
        self.file.close()

    def fill(self, rows: StreamedRows, buffers, lo: int, hi: int) -> int:
        """Read block ``lo:hi`` into ``buffers``; the bytes read."""
        if not rows.csr:
            first = rows.start + lo
            return self._read(0, buffers[: hi - lo], first, first + hi - lo)
        first, last = int(rows.indptr[lo]), int(rows.indptr[hi])
        n = last - first
        return self._read(0, buffers[0][:n], first, last) + self._read(
            1, buffers[1][:n], first, last
        )

    def _read(self, which: int, out: np.ndarray, first: int, last: int) -> int:
        if last <= first:
            return 0
        layout = self.offsets[which]
        if layout is None:
            self.datasets[which].read_direct(out, np.s_[first:last])
            return out.nbytes
        view, done = memoryview(out).cast("B"), 0
        for at, size in layout.spans(first, last):
            end = done + size
            while done < end:
                got = os.preadv(self.fds[which], [view[done:end]], at + done - (end - size))
                if got == 0:
                    raise OSError(f"the file ends {end - done:,} bytes early")
                done += got
        return done


def _datasets(f: h5py.File, rows: StreamedRows) -> list[h5py.Dataset]:
    """The datasets a pass reads: X, or a CSR group's values and column indices."""
    x = f[rows.info.x_key]
    return [x["data"], x["indices"]] if rows.csr else [x]


def _raw_offsets(rows: StreamedRows) -> list[RawLayout | None]:
    """:func:`raw_layout` of each dataset a pass reads, for the rows (or, for CSR, the
    values) of this rank. Collective: no."""
    if rows.csr:
        wants = (rows.dtype, rows.index_dtype)
        span = (int(rows.indptr[0]), int(rows.indptr[-1]))
    else:
        wants, span = (rows.dtype,), (rows.start, rows.stop)
    try:
        with h5py.File(rows.info.path, "r") as f:
            return [
                raw_layout(d, want, *span)
                for d, want in zip(_datasets(f, rows), wants, strict=True)
            ]
    except READ_ERRORS as exc:
        raise MpigdError(f"reading {rows.info.path} failed: {exc}") from exc


class RawLayout:
    """Where rows ``first:last`` of a dataset lie in its file: each chunk of
    ``chunk_rows`` rows (one chunk of all rows when contiguous) at ``offsets[c]``, rows
    of ``row_bytes`` one after the other within it."""

    def __init__(self, offsets: np.ndarray, chunk_rows: int, row_bytes: int, first_chunk: int):
        self.offsets, self.chunk_rows, self.row_bytes = offsets, chunk_rows, row_bytes
        self.first_chunk = first_chunk

    def spans(self, first: int, last: int) -> list[tuple[int, int]]:
        """``(file offset, bytes)`` of rows ``first:last`` in order, runs of chunks that
        lie one after the other in the file merged into one span."""
        spans: list[list[int]] = []
        rows = self.chunk_rows
        for chunk in range(first // rows, (last - 1) // rows + 1):
            lo, hi = max(first, chunk * rows), min(last, (chunk + 1) * rows)
            at = int(self.offsets[chunk - self.first_chunk]) + (lo - chunk * rows) * self.row_bytes
            size = (hi - lo) * self.row_bytes
            if spans and spans[-1][0] + spans[-1][1] == at:
                spans[-1][1] += size
            else:
                spans.append([at, size])
        return [(at, size) for at, size in spans]


def raw_layout(dataset: h5py.Dataset, want: np.dtype, first: int, last: int) -> RawLayout | None:
    """Where ``dataset``'s rows ``first:last`` lie in the file, when they can be read as
    bytes: values of the native dtype ``want``, unfiltered, stored contiguously or in
    chunks of whole rows, every chunk of these rows written; else None (read through
    h5py, which converts and fills). Collective: no."""
    if dataset.dtype != want or not want.isnative:
        return None
    row_bytes = want.itemsize * int(np.prod(dataset.shape[1:], dtype=np.int64))
    if dataset.chunks is None:
        offset = dataset.id.get_offset()
        if offset is None:  # never written
            return None
        return RawLayout(np.array([offset]), max(dataset.shape[0], 1), row_bytes, 0)
    if dataset.id.get_create_plist().get_nfilters() or dataset.chunks[1:] != dataset.shape[1:]:
        return None
    rows = dataset.chunks[0]
    chunks = range(first // rows, max(first // rows, (last - 1) // rows + 1))
    offsets = np.empty(len(chunks), dtype=np.int64)
    tail = (0,) * (len(dataset.shape) - 1)
    for i, chunk in enumerate(chunks):
        info = dataset.id.get_chunk_info_by_coord((chunk * rows, *tail))
        if info.byte_offset is None or info.filter_mask:
            return None
        offsets[i] = info.byte_offset
    return RawLayout(offsets, rows, row_bytes, chunks.start)


def _read_indptr(info: DatasetInfo, start: int, stop: int) -> np.ndarray:
    try:
        with h5py.File(info.path, "r") as f:
            indptr = np.asarray(f[info.x_key]["indptr"][start : stop + 1], dtype=np.int64)
    except READ_ERRORS as exc:
        raise MpigdError(f"reading {info.path} (rows {start}:{stop}) failed: {exc}") from exc
    bad = sparse.first_decrease(indptr)
    if bad is not None:
        raise MpigdError(
            f"{info.path}: '{info.x_key}'/indptr decreases at row {start + bad}; it must not"
        )
    return indptr


def _csr_bounds(indptr: np.ndarray, values: int) -> list[tuple[int, int]]:
    """Consecutive row ranges of at most ``values`` stored values (at least one row),
    each ending at a multiple of :data:`~mpigd.partition.SWEEP_ROWS` rows where that
    leaves it a row (so that the compiled sweep continues the sums bit for bit)."""
    bounds, first, m = [], 0, len(indptr) - 1
    while first < m:
        last = int(np.searchsorted(indptr, indptr[first] + values, side="right")) - 1
        last = min(max(last, first + 1), m)
        if last < m and last - last % SWEEP_ROWS > first:
            last -= last % SWEEP_ROWS
        bounds.append((first, last))
        first = last
    return bounds
