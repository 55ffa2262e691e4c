"""What a reader of an input format hands the converter: sizes, names and a stream of
row blocks, with the block size shared by every reader."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import MpigdError
from ..partition import CHUNK_BYTES, rows_per_block

Progress = Callable[[int], None]  # called with the number of rows just converted


def block_rows(width: int) -> int:
    """Rows of ``width`` float64 values in one block of a conversion: one output chunk
    (the block's text and the parser's work space take about ten times as much again;
    larger blocks convert no faster). Collective: no."""
    return rows_per_block(8 * width, CHUNK_BYTES)


@dataclass
class Source:
    """What the first pass learned: sizes, names, and how to read the blocks."""

    n_rows: int
    n_features: int
    blocks: Callable[[Progress], Iterator[tuple[np.ndarray, np.ndarray | None]]]
    feature_names: list[str] | None = None
    label_name: str | None = None
    notes: list[str] = field(default_factory=list)
    sparse: bool = False  # blocks are CSR matrices, written as a CSR group
    nnz: int | None = None  # stored values, when the first pass counted them

    def as_sparse(self) -> Source:
        """The same rows, with each dense block turned into CSR (zeros dropped)."""
        dense_blocks = self.blocks

        def blocks(progress: Progress):
            import scipy.sparse as sp  # not at import: the parallel converter needs no SciPy

            for X, y in dense_blocks(progress):
                yield sp.csr_matrix(X), y

        return replace(self, blocks=blocks, sparse=True)

    def as_dense(self) -> Source:
        """The same rows, with each CSR block made dense."""
        sparse_blocks = self.blocks

        def blocks(progress: Progress):
            for X, y in sparse_blocks(progress):
                yield X.toarray(), y

        return replace(self, blocks=blocks, sparse=False, nnz=None)


def label_column(label: str | None, names: list[str] | None, width: int) -> int | None:
    """The label column's index (None: no label column) from a name or an index;
    the last column by default. Collective: no."""
    if label is None:
        return width - 1
    if label.lower() == "none":
        return None
    if names is not None and label in names:
        return names.index(label)
    try:
        index = int(label)
    except ValueError:
        known = f"; the columns are {', '.join(names)}" if names else " (no column names)"
        raise MpigdError(f"label {label!r} is not a column name or index{known}") from None
    if not -width <= index < width:
        raise MpigdError(f"label column {index} is out of range: the file has {width} columns")
    return index % width
