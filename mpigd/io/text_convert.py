"""LIBSVM/svmlight and CSV/TSV text to mpigd's HDF5 layout, parsed on every rank.

:func:`convert_text` runs the three steps of :mod:`~mpigd.io.ingest` for one text format:
this rank's lines, their counts (gathered, so that every rank takes the same decisions),
and their rows, written at this rank's offsets. A format is a :class:`_Format`: how a
block of lines becomes rows (:meth:`_Format.rows`), what the counts are, and what they
decide (:meth:`_Format.plan`).
"""

from __future__ import annotations

import csv
import itertools
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .._version import __version__
from ..errors import MpigdError
from ..parallel import gather_all, on_root, rank_local, sums_before
from ..partition import CHUNK_BYTES, rows_per_block
from . import parse
from .convert import guess_format, size_problem
from .ingest import (
    Datasets,
    Inputs,
    RankText,
    create_datasets,
    list_inputs,
    rank_text,
    shared_output,
)
from .ranges import count_newlines, piece_blocks
from .text import CsvHead, csv_head, libsvm_shape

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


class _Sink:
    """This rank's rows, in order, into the output's datasets."""

    def __init__(self, out: Datasets, plan: Plan):
        self.out, self.plan = out, plan
        self.row, self.value = plan.first_row, plan.first_value

    def add(self, X: np.ndarray | Csr, y: np.ndarray | None) -> None:
        """Rows ``X`` (dense, or CSR) with labels ``y``, after the rows added so far."""
        rows = (
            len(y)
            if y is not None
            else (X.shape[0] if isinstance(X, np.ndarray) else len(X.indptr) - 1)
        )
        if self.plan.sparse:
            X = X if isinstance(X, Csr) else Csr.of(X)
            self.out.put("X/data", self.value, X.data)
            self.out.put("X/indices", self.value, X.indices)
            self.out.put("X/indptr", self.row, X.indptr[:-1] + self.value)
            self.value += len(X.data)
        elif isinstance(X, Csr):  # dense rows of a wide LIBSVM file, a slice at a time
            step = rows_per_block(8 * X.width, CHUNK_BYTES)
            for start in range(0, rows, step):
                self.out.put("X", self.row + start, X.dense(start, min(start + step, rows)))
        else:
            self.out.put("X", self.row, X)
        if self.plan.labelled:
            self.out.put("y", self.row, y)
        self.row += rows

    def finish(self) -> None:
        """Check that this rank wrote what it counted; rank 0 closes ``indptr``."""
        plan = self.plan
        if self.row - plan.first_row != plan.rank_rows or (
            plan.sparse and self.value - plan.first_value != plan.rank_values
        ):
            raise MpigdError("the input changed while converting: other rows than counted")
        if plan.sparse and plan.first_row == 0:
            self.out.put("X/indptr", plan.n_rows, np.array([plan.nnz], dtype=np.int64))


@dataclass
class _Counts:
    """One rank's counts: rows, stored values, the smallest and largest index (LIBSVM:
    ``(index, file, line)`` and ``(-index, file, line)``, so that the least is the first
    of each) and a few labels."""

    rows: int = 0
    values: int = 0
    lowest: tuple | None = None
    highest: tuple | None = None
    labels: set = field(default_factory=set)


class _Format:
    """How one text format is read: :meth:`rows` of a block, :meth:`count` of them,
    and the :meth:`plan` the counts of every rank decide."""

    sparse_rows = False

    def __init__(self, inputs: Inputs, dtype, layout: str | None):
        self.inputs, self.dtype, self.layout = inputs, np.dtype(dtype), layout

    @property
    def name(self) -> str:
        paths = self.inputs.paths
        return paths[0] if len(paths) == 1 else f"{paths[0]} (and {len(paths) - 1} more)"

    def blocks(self, text: RankText) -> Iterator[tuple[str, bytes, int]]:
        for piece, block, first in text.blocks():
            yield piece.path, block, first

    def rows(self, path, block: bytes, first: int, *, values: bool = True):
        raise NotImplementedError

    def count(self, counts: _Counts, file: int, parsed) -> None:
        raise NotImplementedError

    def plan(self, counts: list[_Counts]) -> Plan:
        raise NotImplementedError


class _Libsvm(_Format):
    fmt = "libsvm"

    def __init__(self, inputs, dtype, layout, n_features=None, zero_based=None):
        super().__init__(inputs, dtype, layout)
        self.n_features, self.zero_based, self.base, self.width = n_features, zero_based, 1, 0
        self.files = {p: i for i, p in enumerate(inputs.paths)}

    def rows(self, path, block, first, *, values=True):
        return parse.libsvm_lines(block, path=path, first_line=first, values=values)

    def count(self, counts, path, lines) -> None:
        counts.rows += len(lines.labels)
        counts.values += len(lines.indices)
        if len(lines.indices):
            file = self.files[path]

            def line_of(entry: int) -> int:
                return int(lines.numbers[np.searchsorted(lines.indptr, entry, "right") - 1])

            lo, hi = int(np.argmin(lines.indices)), int(np.argmax(lines.indices))
            low = (int(lines.indices[lo]), file, line_of(lo))
            high = (-int(lines.indices[hi]), file, line_of(hi))
            counts.lowest = min(c for c in (counts.lowest, low) if c is not None)
            counts.highest = min(c for c in (counts.highest, high) if c is not None)
        if len(counts.labels) <= 3:
            counts.labels.update(np.unique(lines.labels)[:4].tolist())

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


class _Csv(_Format):
    fmt = "csv"

    def __init__(self, inputs, dtype, layout, head: CsvHead):
        super().__init__(inputs, dtype, layout)
        self.head = head

    def blocks(self, text):
        """Blocks without a byte-order mark or (when there is a header) the header line
        at the start of each file."""
        for piece, bounds, first in zip(text.pieces, text.bounds, text.first_lines, strict=True):
            pending = bounds[0] == 0  # this piece starts the file
            for block in piece_blocks(piece, bounds):
                number = first
                first += count_newlines(block)
                if pending:
                    block, number, pending = self._headless(piece.path, block, number)
                if block:
                    yield piece.path, block, number

    def _headless(self, path, block: bytes, number: int) -> tuple[bytes, int, bool]:
        """The block without the file's leading byte-order mark and header line (whose
        fields must be the first file's), the number of its first line, and whether the
        header is still to come (the block was blank)."""
        block = bytes(block)  # the first block of a file: a copy, once
        block = block[len(_BOM) :] if block.startswith(_BOM) else block
        if not self.head.header:
            return block, number, False
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
                return block[end:], number + 1, False
            start, number = end, number + 1
        return b"", number, True

    def rows(self, path, block, first, *, values=True):
        head = self.head
        return parse.numeric_lines(
            block, path=path, first_line=first, delimiter=head.delimiter, width=head.width,
            names=head.names,
        )  # fmt: skip

    def count(self, counts, path, parsed) -> None:
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


@dataclass(frozen=True)
class TextInput:
    """Text inputs and how to read them: files or globs (rows in the order given), the
    format ("libsvm" or "csv"; None: from the first file's name) and the options of
    ``data convert`` (``label`` a CSV column name or index, or "none"; ``header`` None
    detects one; ``n_features`` the LIBSVM width; ``zero_based`` None: 0-based exactly
    when an index 0 occurs)."""

    patterns: tuple[str, ...]
    fmt: str | None = None
    label: str | None = None
    header: bool | None = None
    delimiter: str | None = None
    n_features: int | None = None
    zero_based: bool | None = None
    cache: str | None = None  # training from text: also write the rows to this HDF5 file


def text_reader(comm, inputs: Inputs, source: TextInput, dtype, layout) -> _Format:
    """The reader of ``source``'s format (the CSV header read on rank 0). Collective: yes."""
    fmt = source.fmt or on_root(comm, lambda: guess_format(inputs.paths[0]), share=True)
    if fmt == "libsvm":
        return _Libsvm(inputs, dtype, layout, source.n_features, source.zero_based)
    if fmt != "csv":
        raise MpigdError(f"{inputs.paths[0]}: format {fmt!r} is not text (libsvm or csv)")
    head = on_root(
        comm,
        lambda: csv_head(
            inputs.paths[0], label=source.label, header=source.header, delimiter=source.delimiter
        ),
        share=True,
    )
    return _Csv(inputs, dtype, layout, head)


def counted(comm, reader: _Format, counts: _Counts) -> Plan:
    """The plan of every rank's ``counts``, with this rank's first row and value.
    Collective: yes."""
    plan = _decided(comm, reader, gather_all(comm, counts))
    plan.first_row, plan.first_value = map(int, sums_before(comm, [counts.rows, counts.values]))
    return plan


def write_rows(comm, output, plan: Plan, attrs: dict, dtype, rows) -> None:
    """Write ``output`` (atomically) with ``plan``'s datasets, each rank its ``rows``:
    ``(X, y)`` pairs in order, which must add up to its counts. Collective: yes."""
    on_root(comm, lambda: _fits(plan, output, dtype))
    with shared_output(comm, output) as tmp:
        shapes = plan.shapes(dtype)
        layout = on_root(comm, lambda: create_datasets(tmp, shapes, attrs), share=True)
        with rank_local(comm), Datasets(tmp, layout) as out:
            sink = _Sink(out, plan)
            for X, y in rows():
                sink.add(X, y)
            sink.finish()


#: Bytes of parsed rows a rank keeps from its counting pass, so that the writing pass
#: need not parse them again; the blocks after them are parsed twice, so that memory
#: stays bounded whatever the input's size.
KEEP_BYTES = 160 * 2**20


def convert_text(comm, source: TextInput, output, *, dtype="float64", layout=None) -> Plan:
    """Convert ``source`` to ``output`` on every rank of ``comm`` (``layout`` "sparse"
    or "dense"; by default LIBSVM is sparse and CSV dense); returns what was written.
    Collective: yes."""
    inputs = on_root(comm, lambda: list_inputs(source.patterns, output), share=True)
    reader = text_reader(comm, inputs, source, dtype, layout)
    text = rank_text(comm, inputs)
    counts, kept, room = _Counts(), [], KEEP_BYTES
    with rank_local(comm):
        for path, block, first in reader.blocks(text):
            parsed = reader.rows(path, block, first, values=room > 0)
            reader.count(counts, path, parsed)
            size = _nbytes(parsed)
            room = room - size if room >= size else 0  # the kept blocks: a prefix
            if room > 0:
                kept.append(parsed)
    plan = counted(comm, reader, counts)
    plan.rank_rows, plan.rank_values = counts.rows, counts.values

    def rows():
        yield from map(reader.matrix, kept)
        for path, block, first in itertools.islice(reader.blocks(text), len(kept), None):
            yield reader.matrix(reader.rows(path, block, first))

    write_rows(comm, output, plan, plan.attrs(inputs, reader.fmt), dtype, rows)
    on_root(comm, lambda: _unchanged(inputs))
    return plan


def _nbytes(parsed) -> int:
    """The bytes of a parsed block's arrays."""
    arrays = parsed.__dict__.values() if hasattr(parsed, "__dict__") else parsed
    return sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))


def _decided(comm, reader: _Format, counts: list[_Counts]) -> Plan:
    """The plan every rank takes from every rank's counts; its warnings from rank 0."""
    with warnings.catch_warnings():
        if comm.rank != 0:
            warnings.simplefilter("ignore")
        return reader.plan(counts)


def _unchanged(inputs: Inputs) -> None:
    problem = inputs.changed()
    if problem:
        raise MpigdError(problem)


def _fits(plan: Plan, output, dtype) -> None:
    problem = size_problem(plan, output, dtype, None)
    if problem:
        raise MpigdError(problem)
