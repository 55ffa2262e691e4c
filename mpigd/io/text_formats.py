"""The text formats a rank parses (LIBSVM/svmlight, CSV/TSV): how a block of lines
becomes rows, what a rank counts of them, and the :class:`Plan` that every rank's counts
decide (the output's shape and layout, the same on every rank). Used by the converter
(:mod:`~mpigd.io.text_convert`) and by training from text (:mod:`~mpigd.io.text_rows`).
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .._version import __version__
from ..errors import MpigdError
from . import hashing, parse
from .ingest import Inputs, RankText
from .text import CsvHead, libsvm_shape

_BOM = b"\xef\xbb\xbf"


@dataclass
class Plan:
    """What the counts decided: the output's shape and layout, and this rank's share."""

    n_rows: int
    n_features: int
    nnz: int  # stored values of a sparse X (0 when dense)
    sparse: bool
    notes: list[str]
    first_row: int = 0  # this rank's first row and value in the output
    first_value: int = 0
    rank_rows: int = 0  # and its count of each
    rank_values: int = 0
    feature_names: list[str] | None = None
    label_name: str | None = None
    labelled: bool = True

    def shapes(self, dtype) -> dict:
        """The output's datasets: ``name: (shape, dtype)``."""
        m, n = self.n_rows, self.n_features
        if self.sparse:
            index = np.int32 if n <= np.iinfo(np.int32).max else np.int64
            shapes = {
                "X/data": ((self.nnz,), dtype),
                "X/indices": ((self.nnz,), index),
                "X/indptr": ((m + 1,), np.int64),
            }
        else:
            shapes = {"X": ((m, n), dtype)}
        return {**shapes, **({"y": ((m,), np.float64)} if self.labelled else {})}

    def attrs(self, inputs: Inputs, fmt: str) -> dict:
        """The attributes of the file, X and y."""
        paths = [os.path.abspath(p) for p in inputs.paths]
        attrs = {
            "": {
                "source": paths[0] if len(paths) == 1 else paths,
                "source_format": fmt,
                "mpigd_version": __version__,
            }
        }
        x = {"feature_names": self.feature_names} if self.feature_names else {}
        if self.sparse:
            x.update({
                "encoding-type": "csr_matrix",
                "encoding-version": "0.1.0",
                "shape": (self.n_rows, self.n_features),
            })  # fmt: skip
        attrs["X"] = x
        if self.labelled and self.label_name:
            attrs["y"] = {"name": self.label_name}
        return attrs


@dataclass
class Csr:
    """Rows in compressed sparse row form, without SciPy (whose import alone takes a
    quarter of a second: a conversion's start-up)."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray  # from 0
    width: int

    @classmethod
    def of(cls, X: np.ndarray) -> Csr:
        """Dense rows ``X`` without their zeros."""
        kept = X != 0
        indptr = np.zeros(len(X) + 1, dtype=np.int64)
        np.cumsum(kept.sum(axis=1), out=indptr[1:])
        return cls(X[kept], np.nonzero(kept)[1], indptr, X.shape[1])

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    def dense(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop``, dense."""
        out = np.zeros((stop - start, self.width))
        a, b = self.indptr[start], self.indptr[stop]
        rows = np.repeat(np.arange(stop - start), np.diff(self.indptr[start : stop + 1]))
        out[rows, self.indices[a:b]] = self.data[a:b]
        return out


@dataclass
class Counts:
    """One rank's counts: rows, stored values, the smallest and largest index (LIBSVM:
    ``(index, file, line)`` and ``(-index, file, line)``, so that the least is the first
    of each) and a few labels."""

    rows: int = 0
    values: int = 0
    lowest: tuple | None = None
    highest: tuple | None = None
    labels: set = field(default_factory=set)
    queries: int = 0  # LIBSVM lines with a qid: token

    def renumber(self, before: np.ndarray) -> None:
        """Lines numbered in their files (:meth:`RankText.renumber`)."""
        for name in ("lowest", "highest"):
            found = getattr(self, name)
            if found is not None:
                index, file, line = found
                setattr(self, name, (index, file, line + int(before[file])))


class Format:
    """How one text format is read: :meth:`rows` of a block, :meth:`count` of them,
    and the :meth:`plan` the counts of every rank decide."""

    sparse_rows = False

    def __init__(self, inputs: Inputs, dtype, layout: str | None):
        self.inputs, self.dtype, self.layout = inputs, np.dtype(dtype), layout

    @property
    def name(self) -> str:
        paths = self.inputs.paths
        return paths[0] if len(paths) == 1 else f"{paths[0]} (and {len(paths) - 1} more)"

    def blocks(self, text: RankText) -> Iterator[tuple]:
        """:meth:`RankText.blocks`, as this format reads them."""
        return text.blocks()

    def rows(self, path, block: bytes, first: int, *, values: bool = True, into=None):
        """The rows of ``block``, whole lines numbered from ``first`` (``values=False``:
        for counting only; ``into``: a :class:`~mpigd.io.parsed.Scratch` whose arrays
        they are views of)."""
        raise NotImplementedError

    def count(self, counts: Counts, file: int, parsed) -> None:
        raise NotImplementedError

    def plan(self, counts: list[Counts]) -> Plan:
        raise NotImplementedError


class Libsvm(Format):
    fmt = "libsvm"

    def __init__(self, inputs, dtype, layout, n_features=None, zero_based=None):
        super().__init__(inputs, dtype, layout)
        self.n_features, self.zero_based, self.base, self.width = n_features, zero_based, 1, 0

    def rows(self, path, block, first, *, values=True, into=None):
        return parse.libsvm_lines(block, path=path, first_line=first, values=values, into=into)

    def count(self, counts, file, lines) -> None:
        counts.rows += len(lines.labels)
        counts.values += len(lines.indices)
        counts.queries += lines.query_lines
        if len(lines.indices):

            def line_of(entry: int) -> int:
                return int(lines.numbers[np.searchsorted(lines.indptr, entry, "right") - 1])

            lo, hi = int(np.argmin(lines.indices)), int(np.argmax(lines.indices))
            low = (int(lines.indices[lo]), file, line_of(lo))
            high = (-int(lines.indices[hi]), file, line_of(hi))
            counts.lowest = min(c for c in (counts.lowest, low) if c is not None)
            counts.highest = min(c for c in (counts.highest, high) if c is not None)
        if len(counts.labels) <= 3:
            counts.labels.update(_least_distinct(lines.labels, 4).tolist())

    def plan(self, counts):
        n_rows = sum(c.rows for c in counts)
        if n_rows == 0:
            raise MpigdError(f"{self.name} holds no data")
        lows = [c.lowest for c in counts if c.lowest is not None]
        highs = [c.highest for c in counts if c.highest is not None]
        paths = self.inputs.paths
        lowest = min(lows) if lows else None
        highest = min(highs) if highs else None
        self.base, self.width, notes = libsvm_shape(
            self.name,
            None if lowest is None else (lowest[0], f"{paths[lowest[1]]}: line {lowest[2]}"),
            (-1, "")
            if highest is None
            else (-highest[0], f"{paths[highest[1]]}: line {highest[2]}"),
            set().union(*(c.labels for c in counts)),
            self.n_features,
            self.zero_based,
        )
        if self.width < 1:
            raise MpigdError(
                f"{self.name} holds no feature columns: its rows list no index:value pairs; "
                "give --features N for rows of N zeros"
            )
        queries = sum(c.queries for c in counts)
        if queries:
            warnings.warn(
                f"{self.name}: the qid: tokens of {queries:,} lines are ignored (query ids "
                "group rows for ranking; mpigd's losses are per row)",
                stacklevel=2,
            )
        sparse = self.layout != "dense"
        nnz = sum(c.values for c in counts) if sparse else 0
        return Plan(n_rows, self.width, nnz, sparse, notes + ["X stored sparse (CSR)"] * sparse)

    def matrix(self, lines):
        """The rows of parsed ``lines`` as CSR, indices 0-based, and their labels."""
        indices = lines.indices - self.base
        if len(indices) and (indices.min() < 0 or indices.max() >= self.width):
            raise MpigdError(
                "the input changed while converting: an index out of the counted range"
            )
        return Csr(lines.values, indices, lines.indptr, self.width), lines.labels


def _least_distinct(a: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` least distinct values of ``a``, as ``np.unique(a)[:k]`` (whose first call
    imports ``numpy.ma``: 20 ms of a conversion's start)."""
    s = np.sort(a)
    first = np.ones(len(s), dtype=bool)  # of its run of equal values
    first[1:] = s[1:] != s[:-1]
    return s[first][:k]


class Csv(Format):
    fmt = "csv"

    def __init__(self, inputs, dtype, layout, head: CsvHead):
        super().__init__(inputs, dtype, layout)
        self.head = head

    def blocks(self, text):
        """Blocks without a byte-order mark or (when there is a header) the header line
        at the start of each file."""
        pending = previous = None  # the piece whose file's header is still to come
        for piece, block, first, newlines in text.blocks():
            if piece is not previous:  # its first block: is it the file's?
                previous = piece
                pending = piece if text.bounds[text.pieces.index(piece)][0] == 0 else None
            if pending is piece:
                block, first, done = self._headless(piece.path, block, first)
                pending = None if done else piece
            if block:
                yield piece, block, first, newlines

    def _headless(self, path, block, number: int) -> tuple[bytes, int, bool]:
        """The block without the file's leading byte-order mark and header line (whose
        fields must be the first file's), the number of its first line, and whether that
        was done (not when the block was blank)."""
        block = bytes(block)  # the first block of a file: a copy, once
        block = block[len(_BOM) :] if block.startswith(_BOM) else block
        if not self.head.header:
            return block, number, True
        start = 0
        while start < len(block):
            end = block.find(b"\n", start)
            end = len(block) if end < 0 else end + 1
            line = block[start:end].decode("utf-8")
            if line.strip():
                fields = next(csv.reader([line.rstrip("\r\n")], delimiter=self.head.delimiter))
                if [f.strip() for f in fields] != self.head.names:
                    raise MpigdError(
                        f"{path}: line {number}: a header that is not {self.inputs.paths[0]}'s"
                    )
                return block[end:], number + 1, True
            start, number = end, number + 1
        return b"", number, False

    def rows(self, path, block, first, *, values=True, into=None):
        head = self.head
        return parse.numeric_lines(
            block, path=path, first_line=first, delimiter=head.delimiter, width=head.width,
            names=head.names, into=into,
        )  # fmt: skip

    def count(self, counts, file, parsed) -> None:
        values, _, _ = parsed
        counts.rows += len(values)
        if self.layout == "sparse":
            counts.values += int(np.count_nonzero(values[:, self.head.keep]))

    def plan(self, counts):
        head = self.head
        n_rows = sum(c.rows for c in counts)
        if n_rows == 0:
            what = "a header line but no data rows" if head.header else "no data rows"
            raise MpigdError(f"{self.name} holds {what}")
        if not head.keep:
            raise MpigdError(
                f"{self.name} holds no feature columns: mpigd needs at least one (a label "
                "column does not count)"
            )
        sparse = self.layout == "sparse"
        names = head.names
        notes = [
            "no label column"
            if head.y_column is None
            else f"label: column {names[head.y_column]!r} (index {head.y_column})"
            if names
            else f"label: column index {head.y_column}"
        ]
        return Plan(
            n_rows, len(head.keep), sum(c.values for c in counts) if sparse else 0, sparse,
            notes + ["X stored sparse (CSR)"] * sparse,
            feature_names=[names[c] for c in head.keep] if names else None,
            label_name=names[head.y_column] if names and head.y_column is not None else None,
            labelled=head.y_column is not None,
        )  # fmt: skip

    def matrix(self, parsed):
        values, _, _ = parsed
        y = None if self.head.y_column is None else values[:, self.head.y_column]
        return values[:, self.head.keep], y


def indices_of(spec: str) -> set[int] | None:
    """The columns of a ``--categorical`` spec of indices and ranges only, or None
    when it names columns. Collective: no."""
    found = set()
    for item in (part.strip() for part in spec.split(",")):
        low, dash, high = item.partition("-")
        if not (low.isdigit() and (not dash or high.isdigit())):
            return None
        found.update(range(int(low), int(high if dash else low) + 1))
    return found


def columns_of(spec: str, names: list[str] | None, width: int) -> list[int]:
    """The columns of ``spec``: comma-separated 0-based indices, ranges ``a-b`` (both
    included) and, with a header, column names; sorted, each once. Collective: no."""
    found = set()
    for item in (part.strip() for part in spec.split(",")):
        if names is not None and item in names:
            found.add(names.index(item))
            continue
        low, dash, high = item.partition("-")
        try:
            first, last = int(low), int(high) if dash else int(low)
        except ValueError:
            known = f"; the columns are {', '.join(names)}" if names else " (no header names)"
            raise MpigdError(
                f"--categorical {item!r} is not a column, range or name{known}"
            ) from None
        if not 0 <= first <= last < width:
            raise MpigdError(f"--categorical {item!r}: the file has columns 0 to {width - 1}")
        found.update(range(first, last + 1))
    if not found:
        raise MpigdError("--categorical names no column")
    return sorted(found)


class Hashed(Csv):
    """Delimited text whose categorical columns are hashed (:mod:`~mpigd.io.hashing`):
    the numeric feature columns first, then ``2**hash_bits`` hashed columns; always
    CSR (an empty numeric field is a missing value, not stored)."""

    def __init__(self, inputs, dtype, head: CsvHead, categorical: str, hash_bits: int):
        super().__init__(inputs, dtype, "sparse", head)
        if not 1 <= hash_bits <= 31:
            raise MpigdError(f"--hash-bits {hash_bits}: give 1 to 31")
        self.categorical = columns_of(categorical, head.names, head.width)
        if head.y_column in self.categorical:
            raise MpigdError(f"--categorical includes the label column, {head.y_column}")
        self.hash_bits = hash_bits
        self.numeric = [c for c in head.keep if c not in self.categorical]

    def rows(self, path, block, first, *, values=True, into=None):
        head = self.head
        return hashing.hashed_lines(
            block, path=path, first_line=first, delimiter=head.delimiter, width=head.width,
            label=head.y_column, categorical=frozenset(self.categorical), names=head.names,
            hash_bits=self.hash_bits, into=into,
        )  # fmt: skip

    def count(self, counts, file, lines) -> None:
        counts.rows += len(lines.labels)
        counts.values += len(lines.indices)

    def plan(self, counts):
        plan = super().plan(counts)
        names = self.head.names
        which = ", ".join(names[c] for c in self.categorical) if names else None
        plan.notes.append(
            f"{len(self.numeric)} numeric columns and 2^{self.hash_bits} hashed columns from "
            f"{len(self.categorical)} categorical ones"
            + (f" ({which})" if which and len(which) < 200 else "")
        )
        plan.n_features = len(self.numeric) + 2**self.hash_bits
        plan.nnz = sum(c.values for c in counts)
        plan.feature_names = None  # 2^B names: too many for an attribute
        return plan

    def matrix(self, lines):
        width = len(self.numeric) + 2**self.hash_bits
        y = lines.labels if self.head.y_column is not None else None
        return Csr(lines.values, lines.indices, lines.indptr, width), y
