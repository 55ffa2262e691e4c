"""Whole lines of LIBSVM or numeric CSV text held in memory, parsed into arrays.

The caller hands over a buffer of whole lines (a block of a file, an mmap slice) and the
number of its first line; :func:`libsvm_lines` returns CSR rows, :func:`numeric_lines`
dense rows and :func:`hashed_lines` CSR rows of delimited text whose categorical columns
are hashed as scikit-learn's ``FeatureHasher`` hashes them, each with the line number of
every row. Lines end in ``"\\n"`` or
``"\\r\\n"``; blank lines are skipped but counted. Text is UTF-8 (a byte that is not
reaches the error messages as U+FFFD).

Two parsers share the work. The compiled one (``_text.c``) reads "plain" lines, those
whose meaning is beyond doubt, and stops before the first line that is not plain; that
line goes to the reference, the per-line readers of :mod:`mpigd.io.text` (and of this
module for hashed lines), which accept it
(``qid:`` tokens, unsorted indices, quoted fields) or raise the error that names its file,
line and column; then the compiled parser goes on. The reference is the one place errors
are worded. Without the extension, or with ``MPIGD_KERNELS=numpy`` in the environment, the
reference reads every line: the same arrays, bit for bit, and the same errors. Numbers are
converted exactly as :class:`float` converts them. Pure, no MPI.
"""

from __future__ import annotations

import csv
import operator
import os
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError, MpigdError
from ..kernels.compiled import KernelsUnavailable
from .text import _csv_problem, _libsvm_rows, _Sparse

ABI = 3  # must match TEXT_ABI in _text.c: a stale build is never called
#: Delimiters the compiled CSV parser takes: a blank, or ASCII punctuation that cannot be
#: part of a number or a quote. With any other, the reference reads every line.
PLAIN_DELIMITERS = frozenset(" \t" + string.punctuation) - set('+-."')
#: First guesses of the bytes a row and a LIBSVM pair take (the arrays grow when they
#: were too optimistic, twofold at a time).
BYTES_PER_ROW, BYTES_PER_PAIR, BYTES_PER_FIELD = 64, 8, 4
_NOT_PLAIN, _FULL = 1, 2  # why the compiled parser stopped (0: at the end of the text)
_INT64_MAX = int(np.iinfo(np.int64).max)


def _load():
    """The extension module, or None and why not."""
    try:
        from . import _text
    except ImportError as error:
        return None, f"the compiled text parser is not built ({error}); reinstall mpigd"
    if getattr(_text, "ABI", None) != ABI:
        return None, "the compiled text parser is from another version; reinstall mpigd"
    return _text, None


_text, why_not = _load()


def kernels_choice() -> str:
    """``MPIGD_KERNELS`` as :mod:`mpigd.kernels.compiled` reads it: ``"auto"``,
    ``"compiled"`` or ``"numpy"``; an :class:`~mpigd.errors.InvalidInputError` for any
    other value. Read at every call. Collective: no."""
    choice = os.environ.get("MPIGD_KERNELS", "auto").strip().lower() or "auto"
    if choice not in ("auto", "compiled", "numpy"):
        raise InvalidInputError(f"MPIGD_KERNELS={choice!r}: choose auto, compiled or numpy")
    return choice


def compiled_parser():
    """The compiled parser, or None where the reference reads everything."""
    choice = kernels_choice()
    if choice == "compiled" and _text is None:
        raise KernelsUnavailable(f"MPIGD_KERNELS=compiled, but {why_not}")
    return None if choice == "numpy" else _text


def count_newlines(buf) -> int:
    """The newlines in ``buf`` (any bytes-like object), counted by the compiled parser
    where there is one. Collective: no."""
    parser = compiled_parser()
    if parser is None:
        return int(np.count_nonzero(np.frombuffer(buf, np.uint8) == 10))
    return parser.newlines(buf)


def name() -> str:
    """Which parser reads the plain lines now: ``"compiled"`` or ``"numpy"`` (the
    reference). Collective: no."""
    return "numpy" if compiled_parser() is None else "compiled"


# -- the results --------------------------------------------------------------------------


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


class _DenseRows:
    """Dense rows of ``width`` values being filled, as :class:`SparseRows`."""

    def __init__(self, n_bytes: int, width: int, reused: bool = False):
        rows = n_bytes // (BYTES_PER_FIELD * width) + 16
        self.values, self.numbers = np.empty((rows, width)), np.empty(rows, np.int64)
        self.n_rows, self.reused = 0, reused

    def reset(self, n_bytes: int, width: int) -> _DenseRows:
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
        self.rows: SparseRows | _DenseRows | None = None

    def sparse(self, n_bytes: int, values: bool) -> SparseRows:
        if isinstance(self.rows, SparseRows):
            return self.rows.reset(n_bytes, values)
        self.rows = SparseRows(n_bytes, values, reused=True)
        return self.rows

    def dense(self, n_bytes: int, width: int) -> _DenseRows:
        if isinstance(self.rows, _DenseRows):
            return self.rows.reset(n_bytes, width)
        self.rows = _DenseRows(n_bytes, width, reused=True)
        return self.rows


def sparse_rows(n_bytes: int, values: bool, into: Scratch | None) -> SparseRows:
    """Rows to parse ``n_bytes`` of text into: new ones, or ``into``'s."""
    return SparseRows(n_bytes, values) if into is None else into.sparse(n_bytes, values)


# -- the lines ----------------------------------------------------------------------------


def bytes_of(buf) -> memoryview:
    """``buf`` (bytes, bytearray, mmap, memoryview, ...) as a view of its bytes."""
    return memoryview(buf).cast("B")


def _decode(line) -> str:
    return bytes(line).decode("utf-8", errors="replace")


def _lines(text: memoryview, first: int) -> Iterator[tuple[int, str]]:
    """(number, line) of each line of ``text``, the line with its ``"\\n"``."""
    data = bytes(text)
    start, number = 0, first
    while start < len(data):
        end = data.find(b"\n", start) + 1 or len(data)
        yield number, _decode(data[start:end])
        start, number = end, number + 1


def read_reference(text: memoryview, first_line: int, out, row_of: Callable) -> int:
    """Fills ``out`` with ``row_of(number, line)`` of every line; the lines read."""
    number = first_line - 1
    for number, line in _lines(text, first_line):
        out.append(number, row_of(number, line))
    return number - first_line + 1


def read_compiled(text: memoryview, first_line: int, out, plain: Callable, row_of: Callable) -> int:
    """Fills ``out`` with the rows of ``text``'s lines: ``plain(rest, number)`` parses plain
    lines into ``out.room()`` and returns ``(bytes, lines, status)``; each line it stops
    before goes to ``row_of`` (the reference). The lines read."""
    pos, number = 0, first_line
    while pos < len(text):
        consumed, lines, status = plain(text[pos:], number)
        pos, number = pos + consumed, number + lines
        if status == _FULL:
            out.grow()
        elif status == _NOT_PLAIN:
            end = _text.line_end(text, pos)
            out.append(number, row_of(number, _decode(text[pos:end])))
            pos, number = end, number + 1
    return number - first_line


# -- LIBSVM -------------------------------------------------------------------------------


def _libsvm_row(path, number: int, line: str):
    """The reference reading of one LIBSVM line: ``(label, indices, values)`` with the
    indices in increasing order, or None for a blank or comment line. Raises the
    :class:`~mpigd.errors.MpigdError` of :func:`mpigd.io.text._libsvm_rows`, or of
    :meth:`mpigd.io.text._Sparse.repeated_index_problem` for an index given twice."""
    for _, label, indices, values in _libsvm_rows(path, [(number, line)]):
        too_large = [index for index in indices if index > _INT64_MAX]
        if too_large:
            raise MpigdError(f"{path}: line {number}: index {too_large[0]} is too large")
        index, value = np.array(indices, dtype=np.int64), np.array(values, dtype=np.float64)
        order = np.argsort(index, kind="stable")
        row = np.zeros(len(index), np.int64)
        one = _Sparse(np.array([label]), row, index[order], value[order], np.array([number]))
        problem = one.repeated_index_problem(path)
        if problem:
            raise MpigdError(problem)
        return label, one.index, one.value
    return None


def libsvm_lines(
    buf, *, path, first_line: int, values: bool = True, into: Scratch | None = None
) -> SparseLines:
    """The data lines of ``buf``, whole lines of LIBSVM text numbered from ``first_line``,
    as CSR rows. A ``#`` starts a comment; blank and comment-only lines give no row.
    ``qid:`` tokens are skipped; each row's pairs are sorted by index, and an index given
    twice in a row is an error, as is anything that is not ``label index:value ...``
    with finite numbers and indices >= 0 (an :class:`~mpigd.errors.MpigdError` naming
    ``path``, the line and the column). ``values=False``, the counting pass of a two-pass
    reader, leaves the values out (``values`` is None) but still checks them, finite
    included. With ``into`` (a :class:`Scratch`), the rows are views of its arrays.
    Collective: no."""
    text, first_line = bytes_of(buf), operator.index(first_line)
    out = sparse_rows(len(text), values, into)
    parser = compiled_parser()

    queries = []

    def row_of(number: int, line: str):
        if "qid:" in line.split("#", 1)[0]:
            queries.append(number)
        return _libsvm_row(path, number, line)

    def plain(rest, number: int):
        consumed, rows, pairs, lines, status = parser.libsvm_plain(
            rest, out.room(), number, out.n_pairs
        )
        out.wrote(rows, pairs)
        return consumed, lines, status

    if parser is None:
        lines = out.result(read_reference(text, first_line, out, row_of))
    else:
        lines = out.result(read_compiled(text, first_line, out, plain, row_of))
    lines.query_lines = len(queries)
    return lines


# -- CSV ----------------------------------------------------------------------------------


def _csv_row(path, number: int, line: str, delimiter: str, width: int, names):
    """The reference reading of one CSV line: its ``width`` values, or None for a blank
    line. A line NumPy cannot read as ``width`` finite numbers raises the
    :class:`~mpigd.errors.MpigdError` of :func:`mpigd.io.text._csv_problem`."""
    if not line.strip():
        return None
    try:
        row = np.loadtxt([line], delimiter=delimiter, ndmin=2, quotechar='"', comments=None)
    except ValueError:
        row = None
    if row is not None and row.shape == (1, width) and np.isfinite(row).all():
        return row[0]
    try:
        problem = _csv_problem(path, number, line, delimiter, width, names)
    except csv.Error as error:  # a lone "\r" inside the line
        problem = f"{path}: line {number} cannot be read ({error})"
    raise MpigdError(problem)


def check_delimiter(delimiter) -> None:
    """An :class:`~mpigd.errors.InvalidInputError` for a delimiter that is not one
    character, or is a quote or a line end. Collective: no."""
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '\r\n"':
        raise InvalidInputError(f"delimiter {delimiter!r}: need one character, not a quote")


def numeric_lines(
    buf,
    *,
    path,
    first_line: int,
    delimiter: str,
    width: int,
    names=None,
    into: Scratch | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """The data lines of ``buf``, whole lines of delimited numeric text numbered from
    ``first_line``, as ``(values, numbers, n_lines)``: values (rows, width) float64, the
    line number of each row (rows,) int64, and the lines in ``buf``, blank ones (which
    give no row) included. Each line is read as ``np.loadtxt`` reads it (quoted fields
    too); one that is not ``width`` finite numbers is an
    :class:`~mpigd.errors.MpigdError` naming ``path``, the line and, where it can, the
    column (by its name in ``names``, if given). With ``into`` (a :class:`Scratch`), the
    values are a view of its arrays. Collective: no."""
    text, first_line = bytes_of(buf), operator.index(first_line)
    check_delimiter(delimiter)
    if operator.index(width) < 1:
        raise InvalidInputError(f"width {width}: need at least one field")
    out = _DenseRows(len(text), width) if into is None else into.dense(len(text), width)
    parser = compiled_parser()
    parser = parser if delimiter in PLAIN_DELIMITERS else None

    def row_of(number: int, line: str):
        return _csv_row(path, number, line, delimiter, width, names)

    def plain(rest, number: int):
        consumed, rows, lines, status = parser.numeric_plain(
            rest, out.room(), number, delimiter, width
        )
        out.wrote(rows)
        return consumed, lines, status

    if parser is None:
        return out.result(read_reference(text, first_line, out, row_of))
    return out.result(read_compiled(text, first_line, out, plain, row_of))
