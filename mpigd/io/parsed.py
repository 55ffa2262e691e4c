"""The arrays that parsed text goes into: CSR rows (:class:`SparseRows`, giving
:class:`SparseLines`) and dense rows (:class:`DenseRows`), filled in place by the compiled
parser and a row at a time by the reference (:mod:`mpigd.io.parse`), made to measure for
one block or filled again block after block (:class:`Scratch`). Pure, no MPI.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: First guesses of the bytes a row and a LIBSVM pair take (the arrays grow when they
#: were too optimistic, twofold at a time).
BYTES_PER_ROW, BYTES_PER_PAIR, BYTES_PER_FIELD = 64, 8, 4


@dataclass
class SparseLines:
    """The data lines of a buffer of LIBSVM text (or of hashed CSV text), as CSR rows."""

    labels: np.ndarray  # (rows,) float64
    indptr: np.ndarray  # (rows + 1,) int64, indptr[0] == 0
    # (nnz,) int64 as the file spells them (LIBSVM) or 0-based output columns (hashed
    # CSV), strictly increasing within a row
    indices: np.ndarray
    values: np.ndarray | None  # (nnz,) float64; None when not asked for
    numbers: np.ndarray  # (rows,) int64: the line number of each row
    n_lines: int  # the lines in the buffer, blank ones included
    query_lines: int = 0  # lines with a qid: token (skipped: for ranking, not mpigd's losses)


def _resized(a: np.ndarray, size: int) -> np.ndarray:
    """A copy of ``a`` with ``size`` rows, its own first."""
    b = np.empty((size, *a.shape[1:]), a.dtype)
    b[: len(a)] = a
    return b


def _trimmed(a: np.ndarray, size: int) -> np.ndarray:
    """The first ``size`` rows of ``a``: a view, or a copy where most of ``a`` is unused."""
    return a[:size] if 2 * size >= len(a) else a[:size].copy()


def _fit(rows, name: str, size: int) -> None:
    """Cut the array ``rows.name`` to its first ``size`` rows: in place where nothing
    else refers to it (NumPy checks, and its ``realloc`` of a shorter array copies
    nothing and gives the rest back), else as :func:`_trimmed` does."""
    a = vars(rows).pop(name)
    try:
        a.resize((size, *a.shape[1:]), refcheck=True)
    except ValueError:  # a view of it is alive (or it is one): never moved under it
        a = _trimmed(a, size)
    setattr(rows, name, a)


class SparseRows:
    """CSR rows being filled: by the compiled parser in place (:meth:`room`), and by the
    reference one row at a time (:meth:`append`)."""

    def __init__(self, n_bytes: int, values: bool, reused: bool = False):
        rows, pairs = n_bytes // BYTES_PER_ROW + 16, n_bytes // BYTES_PER_PAIR + 16
        self.labels, self.numbers = np.empty(rows), np.empty(rows, np.int64)
        self.indptr = np.zeros(rows + 1, np.int64)
        self.indices = np.empty(pairs, np.int64)
        self.values = np.empty(pairs) if values else None
        self.n_rows = self.n_pairs = 0
        self.reused = reused  # by the next parse: results are views (see Scratch)

    def reset(self, n_bytes: int, values: bool) -> SparseRows:
        """Empty again, with room for ``n_bytes`` of text: the arrays are kept where they
        are large enough (a result made before is overwritten), else made anew."""
        rows, pairs = n_bytes // BYTES_PER_ROW + 16, n_bytes // BYTES_PER_PAIR + 16
        if rows > len(self.labels):
            self.labels, self.numbers = np.empty(rows), np.empty(rows, np.int64)
            self.indptr = np.zeros(rows + 1, np.int64)
        if pairs > len(self.indices):
            self.indices = np.empty(pairs, np.int64)
            self.values = None
        if values and self.values is None:
            self.values = np.empty(len(self.indices))
        elif not values:
            self.values = None
        self.n_rows = self.n_pairs = 0
        return self

    def reserve(self, rows: int, pairs: int) -> None:
        """Room for ``rows`` more rows and ``pairs`` more pairs (twice as much, or more,
        as the arrays that were short had)."""
        need = self.n_rows + rows
        if need > len(self.labels):
            size = max(need, 2 * len(self.labels))
            self.labels, self.numbers = _resized(self.labels, size), _resized(self.numbers, size)
            self.indptr = _resized(self.indptr, size + 1)
        need = self.n_pairs + pairs
        if need > len(self.indices):
            size = max(need, 2 * len(self.indices))
            self.indices = _resized(self.indices, size)
            self.values = None if self.values is None else _resized(self.values, size)

    def grow(self) -> None:
        """More room where the compiled parser found none: rows if they ran out, else
        pairs."""
        if self.n_rows == len(self.labels):
            self.reserve(1, 0)
        else:
            self.reserve(0, len(self.indices) - self.n_pairs + 1)

    def room(self) -> tuple:
        """The free tails of the arrays, as the compiled parser takes them."""
        r, p = self.n_rows, self.n_pairs
        values = None if self.values is None else self.values[p:]
        return self.labels[r:], self.indptr[r + 1 :], self.indices[p:], values, self.numbers[r:]

    def wrote(self, rows: int, pairs: int) -> None:
        self.n_rows += rows
        self.n_pairs += pairs

    def append(self, number: int, row) -> None:
        """Adds one row, ``(label, indices, values)``, read from line ``number`` (None: a
        line without data)."""
        if row is None:
            return
        label, index, value = row
        self.reserve(1, len(index))
        r, p, q = self.n_rows, self.n_pairs, self.n_pairs + len(index)
        self.labels[r], self.numbers[r], self.indptr[r + 1] = label, number, q
        self.indices[p:q] = index
        if self.values is not None:
            self.values[p:q] = value
        self.wrote(1, len(index))

    def result(self, n_lines: int) -> SparseLines:
        r, p = self.n_rows, self.n_pairs
        if self.reused:
            values = None if self.values is None else self.values[:p]
            arrays = self.labels[:r], self.indptr[: r + 1], self.indices[:p], values
            return SparseLines(*arrays, self.numbers[:r], n_lines)
        for name, size in (("labels", r), ("indptr", r + 1), ("indices", p), ("numbers", r)):
            _fit(self, name, size)
        if self.values is not None:
            _fit(self, "values", p)
        return SparseLines(
            self.labels, self.indptr, self.indices, self.values, self.numbers, n_lines
        )


class DenseRows:
    """Dense rows of ``width`` values being filled, as :class:`SparseRows`."""

    def __init__(self, n_bytes: int, width: int, reused: bool = False):
        rows = n_bytes // (BYTES_PER_FIELD * width) + 16
        self.values, self.numbers = np.empty((rows, width)), np.empty(rows, np.int64)
        self.n_rows, self.reused = 0, reused

    def reset(self, n_bytes: int, width: int) -> DenseRows:
        """As :meth:`SparseRows.reset`; made anew for another width."""
        rows = n_bytes // (BYTES_PER_FIELD * width) + 16
        if rows > len(self.numbers) or width != self.values.shape[1]:
            self.values, self.numbers = np.empty((rows, width)), np.empty(rows, np.int64)
        self.n_rows = 0
        return self

    def grow(self) -> None:
        size = 2 * len(self.numbers)
        self.values, self.numbers = _resized(self.values, size), _resized(self.numbers, size)

    def room(self) -> tuple:
        return self.values[self.n_rows :].reshape(-1), self.numbers[self.n_rows :]

    def wrote(self, rows: int) -> None:
        self.n_rows += rows

    def append(self, number: int, row) -> None:
        if row is None:
            return
        if self.n_rows == len(self.numbers):
            self.grow()
        self.values[self.n_rows], self.numbers[self.n_rows] = row, number
        self.wrote(1)

    def result(self, n_lines: int) -> tuple[np.ndarray, np.ndarray, int]:
        if self.reused:
            return self.values[: self.n_rows], self.numbers[: self.n_rows], n_lines
        _fit(self, "values", self.n_rows)
        _fit(self, "numbers", self.n_rows)
        return self.values, self.numbers, n_lines


class Scratch:
    """Arrays that one parse after another fills again (``into=`` of the readers), so
    that a pass over many blocks keeps the same few pages warm instead of faulting in
    new ones for every block. What a parse into it returns is made of views of these
    arrays: valid until the next parse into the same scratch."""

    def __init__(self):
        self.rows: SparseRows | DenseRows | None = None

    def sparse(self, n_bytes: int, values: bool) -> SparseRows:
        if isinstance(self.rows, SparseRows):
            return self.rows.reset(n_bytes, values)
        self.rows = SparseRows(n_bytes, values, reused=True)
        return self.rows

    def dense(self, n_bytes: int, width: int) -> DenseRows:
        if isinstance(self.rows, DenseRows):
            return self.rows.reset(n_bytes, width)
        self.rows = DenseRows(n_bytes, width, reused=True)
        return self.rows


def sparse_rows(n_bytes: int, values: bool, into: Scratch | None) -> SparseRows:
    """Rows to parse ``n_bytes`` of text into: new ones, or ``into``'s."""
    return SparseRows(n_bytes, values) if into is None else into.sparse(n_bytes, values)
