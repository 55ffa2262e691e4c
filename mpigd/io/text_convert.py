"""LIBSVM/svmlight and CSV/TSV text to mpigd's HDF5 layout, parsed on every rank.

:func:`convert_text` runs the three steps of :mod:`~mpigd.io.ingest` for one text format:
this rank's lines, their counts (gathered, so that every rank takes the same decisions),
and their rows, written at this rank's offsets. A format is a :class:`Format`: how a
block of lines becomes rows (:meth:`Format.rows`), what the counts are, and what they
decide (:meth:`Format.plan`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np

from ..errors import MpigdError
from ..parallel import gather_all, on_root, rank_local, sums_before
from ..partition import CHUNK_BYTES, rows_per_block
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
from .outputs import write_errors
from .parsed import Scratch
from .text import csv_head
from .text_formats import Counts, Csr, Csv, Format, Hashed, Libsvm, Plan, indices_of


class _Sink:
    """This rank's rows, in order, into the output's datasets."""

    def __init__(self, out: Datasets, plan: Plan):
        self.out, self.plan = out, plan
        self.row, self.value = plan.first_row, plan.first_value

    def add(self, X: np.ndarray | Csr, y: np.ndarray | None) -> None:
        """Rows ``X`` (dense, or CSR) with labels ``y``, after the rows added so far."""
        rows = X.shape[0] if isinstance(X, np.ndarray) else X.n_rows
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
    categorical: str | None = None  # CSV columns read by the hashing trick (io.hashing)
    hash_bits: int | None = None  # into 2**hash_bits columns


def text_reader(comm, inputs: Inputs, source: TextInput, dtype, layout) -> Format:
    """The reader of ``source``'s format (the CSV header read on rank 0); "tsv" is CSV
    with tabs. Collective: yes."""
    fmt = source.fmt or on_root(comm, lambda: guess_format(inputs.paths[0]), share=True)
    if (source.categorical is None) != (source.hash_bits is None):
        raise MpigdError("--categorical and --hash-bits go together: the columns, and 2^B")
    if fmt == "libsvm" and source.categorical is None:
        return Libsvm(inputs, dtype, layout, source.n_features, source.zero_based)
    if fmt not in ("csv", "tsv"):
        reads = "CSV or TSV (the hashing trick)" if source.categorical else "LIBSVM, CSV or TSV"
        raise MpigdError(f"{inputs.paths[0]}: format {fmt}; text here is {reads}")
    delimiter = source.delimiter or ("\t" if fmt == "tsv" else None)
    header, text_columns = source.header, None
    if header is None and source.categorical is not None:  # hex tokens are no header
        text_columns = indices_of(source.categorical)
        header = True if text_columns is None else None  # names need a header
    head = on_root(
        comm,
        lambda: csv_head(
            inputs.paths[0], label=source.label, header=header, delimiter=delimiter,
            text_columns=text_columns,
        ),
        share=True,
    )  # fmt: skip
    if source.categorical is not None:
        if layout == "dense":
            raise MpigdError("hashed columns are stored sparse (CSR), not --dense")
        return Hashed(inputs, dtype, head, source.categorical, source.hash_bits)
    return Csv(inputs, dtype, layout, head)


def counted(comm, reader: Format, counts: Counts) -> Plan:
    """The plan of every rank's ``counts``, with this rank's first row and value and its
    counts of each. Collective: yes."""
    plan = _decided(comm, reader, gather_all(comm, counts))
    plan.first_row, plan.first_value = map(int, sums_before(comm, [counts.rows, counts.values]))
    plan.rank_rows, plan.rank_values = counts.rows, counts.values
    return plan


def write_rows(comm, output, plan: Plan, attrs: dict, dtype, rows, check=None) -> None:
    """Write ``output`` (atomically) with ``plan``'s datasets, each rank its ``rows``:
    ``(X, y)`` pairs in order, which must add up to its counts; ``check`` (on rank 0,
    once every rank has written) may still refuse the output, which is then never put
    in place. Collective: yes."""
    on_root(comm, lambda: _fits(plan, output, dtype))
    with shared_output(comm, output) as tmp:
        shapes = plan.shapes(dtype)

        def create() -> dict:
            with write_errors(output):
                return create_datasets(tmp, shapes, attrs)

        layout = on_root(comm, create, share=True)
        with rank_local(comm), Datasets(tmp, layout, output) as out:
            sink = _Sink(out, plan)
            for X, y in rows():
                sink.add(X, y)
            sink.finish()
        if check is not None:
            on_root(comm, check)


def convert_text(comm, source: TextInput, output, *, dtype="float64", layout=None) -> Plan:
    """Convert ``source`` to ``output`` on every rank of ``comm`` (``layout`` "sparse"
    or "dense"; by default LIBSVM is sparse and CSV dense); returns what was written.
    Two passes over each rank's text, each parsing a block at a time into the same
    arrays: the first counts, the second writes as it parses, so that a rank's memory
    is a few blocks whatever the input's size (measured faster than keeping the first
    pass's rows: fresh pages cost more than parsing again). Collective: yes."""
    inputs = on_root(comm, lambda: list_inputs(source.patterns, output), share=True)
    reader = text_reader(comm, inputs, source, dtype, layout)
    text = rank_text(comm, inputs)
    counts, _ = counting_pass(comm, reader, text, keep=False)
    plan = counted(comm, reader, counts)

    def rows():  # each block's rows are written before the next is parsed into scratch
        scratch = Scratch()
        for piece, block, first, _ in reader.blocks(text):
            yield reader.matrix(reader.rows(piece.path, block, first, into=scratch))

    attrs = plan.attrs(inputs, reader.fmt)
    # an input changed since it was listed (the text is read twice): no output
    write_rows(comm, output, plan, attrs, dtype, rows, check=inputs.check_unchanged)
    return plan


def counting_pass(comm, reader: Format, text: RankText, *, keep: bool):
    """``(counts, kept)``: this rank's counts of its rows (:meth:`Format.count`) and,
    with ``keep``, its parsed blocks, in order (without, each block is parsed into the
    arrays of the one before, and LIBSVM's values are checked but not stored). Each block
    is parsed once, its lines numbered from the piece's start; then an exclusive scan of
    each file's newlines numbers them in their files, and a block that failed is parsed
    again with those numbers, for its error to name its line. Collective: yes."""
    counts, kept, failed = Counts(), [], None
    scratch = None if keep else Scratch()
    newlines = np.zeros(len(reader.inputs.paths), dtype=np.int64)
    with rank_local(comm):
        for piece, block, first, n in reader.blocks(text):
            newlines[piece.file] += n
            if failed is not None:
                continue
            try:
                parsed = reader.rows(piece.path, block, first, values=keep, into=scratch)
            except MpigdError:
                failed = piece, bytes(block), first
                continue
            reader.count(counts, piece.file, parsed)
            if keep:
                kept.append(compact(parsed))
    before = sums_before(comm, newlines)
    text.renumber(before)
    counts.renumber(before)
    with rank_local(comm):
        if failed is not None:
            piece, block, first = failed
            reader.rows(piece.path, block, first + int(before[piece.file]))  # raises
            raise MpigdError(f"{piece.path}: a block failed once and then parsed")  # a bug
    return counts, kept


def compact(parsed):
    """A parsed block as it is kept: its own arrays, no larger than they need be (the
    parser's are, unless they are views of larger ones, which are copied), indices as
    int32 where they fit, without the line numbers (the counts have used them)."""
    if isinstance(parsed, tuple):  # CSV: (values, line numbers, lines)
        return _own(parsed[0]), np.zeros(0, np.int64), parsed[2]
    fits = len(parsed.indices) == 0 or parsed.indices.max() <= np.iinfo(np.int32).max
    return replace(
        parsed,
        labels=_own(parsed.labels),
        indptr=_own(parsed.indptr),
        indices=parsed.indices.astype(np.int32) if fits else _own(parsed.indices),
        values=None if parsed.values is None else _own(parsed.values),
        numbers=np.zeros(0, np.int64),
    )


def _own(a: np.ndarray) -> np.ndarray:
    """``a`` if it holds its own memory, else a copy: a kept view would keep all of the
    array it is a view of."""
    return a if a.base is None else a.copy()


def _decided(comm, reader: Format, counts: list[Counts]) -> Plan:
    """The plan every rank takes from every rank's counts; its warnings from rank 0."""
    with warnings.catch_warnings():
        if comm.rank != 0:
            warnings.simplefilter("ignore")
        return reader.plan(counts)


def _fits(plan: Plan, output, dtype) -> None:
    problem = size_problem(plan, output, dtype, None)
    if problem:
        raise MpigdError(problem)
