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

import numpy as np

from ..errors import InvalidInputError, MpigdError
from ..kernels.compiled import KernelsUnavailable
from .parsed import DenseRows, Scratch, SparseLines, sparse_rows
from .text import _csv_problem, _libsvm_rows, _Sparse

ABI = 3  # must match TEXT_ABI in _text.c: a stale build is never called
#: Delimiters the compiled CSV parser takes: a blank, or ASCII punctuation that cannot be
#: part of a number or a quote. With any other, the reference reads every line.
PLAIN_DELIMITERS = frozenset(" \t" + string.punctuation) - set('+-."')
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
    out = DenseRows(len(text), width) if into is None else into.dense(len(text), width)
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
