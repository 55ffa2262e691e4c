"""Readers of text formats, CSV/TSV and LIBSVM/svmlight, in bounded memory.

Text is read twice: once to count rows (and, for LIBSVM, features and labels), once to
convert; memory holds one block of rows at a time, whatever the file's size. A malformed
value stops the reader with its line and column.
"""

from __future__ import annotations

import csv
import itertools
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MpigdError
from .source import Progress, Source, block_rows, label_column

# ----------------------------------------------------------------------------- CSV


def _looks_like_header(fields: list[str], text_columns=None) -> bool:
    """Whether a first line is a header: a field that is not a number; with
    ``text_columns`` (columns of text values, read by the hashing trick), a field of
    another column that is neither a number nor empty (a missing value)."""
    for column, value in enumerate(fields):
        if text_columns is not None and (column in text_columns or not value.strip()):
            continue
        try:
            float(value)
        except ValueError:
            return True
    return False


def _numbered_lines(f, first: int) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(f, start=first):
        if line.strip():
            yield number, line


def _csv_problem(path, number: int, line: str, delimiter: str, width: int, names) -> str:
    """What is wrong with one line that NumPy could not read."""
    fields = next(csv.reader([line], delimiter=delimiter))
    if len(fields) != width:
        return f"{path}: line {number} has {len(fields)} fields, expected {width}"
    for column, value in enumerate(fields, start=1):
        try:
            number_value = float(value)
        except ValueError:
            number_value = None
        if number_value is None or not np.isfinite(number_value):
            name = f" ({names[column - 1]!r})" if names else ""
            what = "an empty field" if not value.strip() else f"{value.strip()!r}"
            return f"{path}: line {number}, column {column}{name}: {what} is not a finite number"
    return f"{path}: line {number} cannot be read"


@dataclass(frozen=True)
class CsvHead:
    """What the first line of a CSV file says: the delimiter, whether it is a header
    (and the names it gives), the width, the label column and the feature columns."""

    delimiter: str
    header: bool
    names: list[str] | None
    width: int
    y_column: int | None
    keep: list[int]


def csv_head(
    path,
    *,
    label: str | None = None,
    header: bool | None = None,
    delimiter: str | None = None,
    text_columns=None,
) -> CsvHead:
    """The :class:`CsvHead` of ``path`` from its first line that is not blank; ``header``
    None detects one (a field that is not a number, :func:`_looks_like_header`, outside
    ``text_columns``), ``delimiter`` None is a tab for ``.tsv`` files and a comma
    otherwise. Collective: no."""
    if delimiter is None:
        delimiter = "\t" if Path(path).suffix.lower() == ".tsv" else ","
    with open(path, newline="", encoding="utf-8-sig") as f:
        first = next((line for _, line in _numbered_lines(f, 1)), None)
    if first is None:
        raise MpigdError(f"{path} holds no data")
    fields = next(csv.reader([first], delimiter=delimiter))
    header = _looks_like_header(fields, text_columns) if header is None else header
    names = [name.strip() for name in fields] if header else None
    y_column = label_column(label, names, len(fields))
    keep = [c for c in range(len(fields)) if c != y_column]
    return CsvHead(delimiter, header, names, len(fields), y_column, keep)


def read_csv(
    path, *, label: str | None = None, header: bool | None = None, delimiter: str | None = None
) -> Source:
    """A CSV (or other delimited) text file; ``header`` None detects one (a first line
    with a field that is not a number); ``label`` is a column name or index, "none", or
    None for the last column. Collective: no."""
    head = csv_head(path, label=label, header=header, delimiter=delimiter)
    delimiter, header, names, width = head.delimiter, head.header, head.names, head.width
    y_column, keep = head.y_column, head.keep
    with open(path, newline="", encoding="utf-8-sig") as f:
        n_rows = sum(1 for _ in _numbered_lines(f, 1)) - (1 if header else 0)
    if n_rows == 0:
        raise MpigdError(f"{path} holds a header line but no data rows")
    rows_per_block = block_rows(width)

    def blocks(progress: Progress):
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = _numbered_lines(f, 1)
            if header:
                next(lines)
            while True:
                chunk = list(itertools.islice(lines, rows_per_block))
                if not chunk:
                    return
                text = [line for _, line in chunk]
                try:
                    values = np.loadtxt(
                        text, delimiter=delimiter, ndmin=2, quotechar='"', comments=None
                    )
                    bad = not np.isfinite(values).all() or values.shape[1] != width
                except ValueError:
                    bad = True
                if bad:
                    for number, line in chunk:
                        try:
                            row = np.loadtxt(
                                [line], delimiter=delimiter, ndmin=2, quotechar='"', comments=None
                            )
                            if row.shape[1] == width and np.isfinite(row).all():
                                continue
                        except ValueError:
                            pass
                        raise MpigdError(_csv_problem(path, number, line, delimiter, width, names))
                progress(len(chunk))
                yield values[:, keep], None if y_column is None else values[:, y_column]

    return Source(
        n_rows,
        len(keep),
        blocks,
        [names[c] for c in keep] if names else None,
        names[y_column] if names and y_column is not None else None,
        [
            f"label: column {names[y_column]!r} (index {y_column})"
            if names
            else f"label: column index {y_column}"
        ]
        if y_column is not None
        else ["no label column"],
    )


# -------------------------------------------------------------------------- LIBSVM


def _libsvm_rows(path, lines) -> Iterator[tuple[int, float, list[int], list[float]]]:
    """(line number, label, indices, values) of each data line."""
    for number, line in lines:
        tokens = line.split("#", 1)[0].split()
        if not tokens:
            continue
        try:
            label = float(tokens[0])
            if not np.isfinite(label):
                raise ValueError
        except ValueError:
            raise MpigdError(
                f"{path}: line {number}, column 1: label {tokens[0]!r} is not a finite number"
                + (" (multi-label lines are not supported)" if "," in tokens[0] else "")
            ) from None
        indices, values = [], []
        for column, token in enumerate(tokens[1:], start=2):
            index, colon, value = token.partition(":")
            if index == "qid":
                continue
            try:
                if not colon:
                    raise ValueError
                indices.append(int(index))
                values.append(float(value))
            except ValueError:
                raise MpigdError(
                    f"{path}: line {number}, column {column}: {token!r} is not index:value"
                ) from None
            if not np.isfinite(values[-1]):
                raise MpigdError(
                    f"{path}: line {number}, column {column}: {token!r} is not a finite number"
                )
            if indices[-1] < 0:
                raise MpigdError(f"{path}: line {number}, column {column}: negative index")
        yield number, label, indices, values


@dataclass
class _Sparse:
    """Parsed data lines of one block: labels, and (row, index, value) of every entry."""

    labels: np.ndarray
    row: np.ndarray
    index: np.ndarray
    value: np.ndarray
    numbers: np.ndarray  # the file's line number of each row

    def line_of(self, entry: int) -> int:
        """The file's line number of entry ``entry`` (of ``index`` and ``value``)."""
        return int(self.numbers[self.row[entry]])

    def repeated_index_problem(self, path) -> str | None:
        """Why a row lists one index twice (which densifying would silently resolve to
        the last value), or None."""
        order = np.lexsort((self.index, self.row))
        row, index = self.row[order], self.index[order]
        same = (row[1:] == row[:-1]) & (index[1:] == index[:-1])
        if not same.any():
            return None
        first = int(np.argmax(same))
        number = int(self.numbers[row[first]])
        return f"{path}: line {number}: index {int(index[first])} appears twice in one row"


#: A block of data lines in the plain LIBSVM grammar: a label without colons, then
#: ``index:value`` pairs with integer indices. Anything else (qid, malformed tokens) goes
#: to the per-line parser.
_PLAIN_LIBSVM = re.compile(r"(?:[ \t]*[^\s:]+(?:[ \t]+\d+:[^\s:]+)*[ \t]*\r?\n)*")


def _fast_block(raw: list[tuple[int, str]]) -> _Sparse | None:
    """Parse a block with one regular-expression check and a few NumPy calls; None if
    the block is not plain (the per-line parser then names the problem, or handles qid)."""
    stripped = [(n, line.split("#", 1)[0] + "\n" if "#" in line else line) for n, line in raw]
    kept = [(n, line) for n, line in stripped if not line.isspace()]
    lines = [line if line.endswith("\n") else line + "\n" for _, line in kept]
    text = "".join(lines)
    if not _PLAIN_LIBSVM.fullmatch(text):
        return None
    try:
        numbers = np.array(text.replace(":", " ").split(), dtype=np.float64)
    except ValueError:
        return None
    pairs = np.fromiter((line.count(":") for line in lines), dtype=np.int64, count=len(lines))
    starts = np.cumsum(1 + 2 * pairs) - (1 + 2 * pairs)  # where each line's label is
    labels = numbers[starts]
    entries = np.delete(numbers, starts)
    index, value = entries[0::2], entries[1::2]
    if not (np.isfinite(value).all() and np.isfinite(labels).all()):
        return None
    row = np.repeat(np.arange(len(lines)), pairs)
    numbers = np.array([n for n, _ in kept], dtype=np.int64)
    return _Sparse(labels, row, index.astype(np.int64), value, numbers)


def _slow_block(path, raw: list[tuple[int, str]]) -> _Sparse:
    labels, row, index, value, numbers = [], [], [], [], []
    for number, label, indices, values in _libsvm_rows(path, raw):
        row += [len(labels)] * len(indices)
        numbers.append(number)
        labels.append(label)
        index += indices
        value += values
    return _Sparse(
        np.array(labels, dtype=np.float64),
        np.array(row, dtype=np.int64),
        np.array(index, dtype=np.int64),
        np.array(value, dtype=np.float64),
        np.array(numbers, dtype=np.int64),
    )


#: Lines per block when LIBSVM is read as CSR (its memory follows the values, not the width).
SPARSE_BLOCK_LINES = 8192


def _libsvm_blocks(path, lines_per_block: int) -> Iterator[_Sparse]:
    with open(path) as f:
        numbered = enumerate(f, start=1)
        while raw := list(itertools.islice(numbered, lines_per_block)):
            yield _fast_block(raw) or _slow_block(path, raw)


def read_libsvm(
    path, *, n_features: int | None = None, zero_based: bool | None = None, sparse: bool = True
) -> Source:
    """A LIBSVM/svmlight file, as CSR blocks (or dense with ``sparse=False``). Indices are
    1-based unless ``zero_based`` (None: 0-based exactly when an index 0 occurs). Labels
    are kept as the file spells them (-1/+1 stay -1/+1: ``train --labels auto`` maps any
    two values to classes and predicts them back). The feature count is the largest index
    unless ``n_features`` is given. Collective: no."""
    n_rows, labels, nnz = 0, set(), 0
    lowest, highest = None, (-1, "")  # (index, where: "file: line N")
    for block in _libsvm_blocks(path, SPARSE_BLOCK_LINES):
        problem = block.repeated_index_problem(path)
        if problem:
            raise MpigdError(problem)
        n_rows += len(block.labels)
        nnz += len(block.index)
        if len(block.index):
            low, high = int(np.argmin(block.index)), int(np.argmax(block.index))
            if lowest is None or block.index[low] < lowest[0]:
                lowest = (int(block.index[low]), f"{path}: line {block.line_of(low)}")
            if block.index[high] > highest[0]:
                highest = (int(block.index[high]), f"{path}: line {block.line_of(high)}")
        if len(labels) <= 3:
            labels.update(np.unique(block.labels)[:4].tolist())
    if n_rows == 0:
        raise MpigdError(f"{path} holds no data")
    base, width, notes = libsvm_shape(path, lowest, highest, labels, n_features, zero_based)
    lines_per_block = SPARSE_BLOCK_LINES if sparse else block_rows(width)

    def blocks(progress: Progress):
        import scipy.sparse as sp  # not at import: the parallel converter needs no SciPy

        for block in _libsvm_blocks(path, lines_per_block):
            shape = (len(block.labels), width)
            X = sp.csr_matrix((block.value, (block.row, block.index - base)), shape=shape)
            X.sort_indices()
            progress(len(block.labels))
            yield X if sparse else X.toarray(), block.labels

    return Source(n_rows, width, blocks, None, None, notes, sparse=sparse, nnz=nnz)


def libsvm_shape(
    path, lowest, highest, labels: set, n_features: int | None, zero_based: bool | None
) -> tuple[int, int, list[str]]:
    """``(base, width, notes)`` of LIBSVM data ``path`` (one file, or several) from its
    smallest and largest index, each ``(index, "file: line N")`` (``lowest`` None: no
    index at all; ``highest`` (-1, "") then), and
    up to four of its labels: indices 0- or 1-based (``zero_based`` None: 0-based
    exactly when an index 0 occurs, with a warning when none does), and the feature
    count (the largest index, or ``n_features``). Collective: no."""
    low = None if lowest is None else lowest[0]
    base = (0 if low == 0 else 1) if zero_based is None else (0 if zero_based else 1)
    if low is not None and low < base:
        raise MpigdError(
            f"{lowest[1]}: index {low} with 1-based indices (are they 0-based? "
            "say so: --zero-based)"
        )
    ambiguous = zero_based is None and low is not None and low > 0
    width = highest[0] + 1 - base
    if n_features is not None:
        if width > n_features:
            raise MpigdError(
                f"{highest[1]}: index {highest[0]} exceeds the given number of "
                f"features, {n_features} (--features)"
            )
        width = n_features
    if ambiguous:
        warnings.warn(
            f"{path}: no feature index 0 occurs, so the indices were read as 1-based (the "
            f"LIBSVM convention: index i is column i - 1 of {width}); if they are 0-based, "
            "convert again with --zero-based",
            stacklevel=2,
        )
    notes = [f"{width} features from {'0' if base == 0 else '1'}-based indices"]
    if labels == {-1.0, 1.0}:
        notes.append("labels -1/+1 kept as they are (train a classifier with --labels auto)")
    return base, width, notes
