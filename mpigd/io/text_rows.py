"""Training, evaluation and prediction straight from text: each rank parses its byte range
of the inputs (:mod:`~mpigd.io.ranges`) into its rows in memory, with no HDF5 step.

A rank's rows are the lines that start in its range (about equal bytes a rank), parsed
once; the ranks' counts decide the layout (LIBSVM: 0- or 1-based indices and the width,
or the model's width) and the first row of each rank, as in a conversion
(:mod:`~mpigd.io.text_convert`). With ``cache``, the rows are also written to that HDF5
file, the file ``data convert`` would write, so that the next run reads binary.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from ..parallel import on_root, rank_local
from .dataset import DatasetInfo, LocalData
from .ingest import list_inputs, rank_text
from .ranges import COMPRESSED
from .sparse import CSRLayout
from .text_convert import TextInput, counted, counting_pass, text_reader, write_rows
from .text_formats import Csr, Plan

#: Suffixes of text inputs (before a compression suffix).
TEXT_SUFFIXES = {".svm", ".libsvm", ".svmlight", ".light", ".csv", ".tsv", ".txt"}


def is_text(data) -> bool:
    """Whether ``data`` is a :class:`TextInput` or the path of a text file (by its
    suffix, ``.gz``/``.bz2``/``.xz`` after it allowed). Collective: no."""
    if isinstance(data, TextInput):
        return True
    if not isinstance(data, str | os.PathLike):
        return False
    stem, suffix = os.path.splitext(os.fspath(data).lower())
    if suffix in COMPRESSED:
        suffix = os.path.splitext(stem)[1]
    return suffix in TEXT_SUFFIXES


def read_text_rows(
    comm, data, *, labelled: bool = True, n_features: int | None = None
) -> tuple[DatasetInfo, LocalData]:
    """This rank's rows of the text ``data`` (a :class:`TextInput` or a path), as the
    HDF5 reader returns them: float64 values, CSR for LIBSVM and dense for CSV; labels
    unless ``labelled`` is False (a CSV then has no label column unless its ``label``
    names one; a LIBSVM label is read and dropped). ``n_features`` is the width wanted
    (a model's). With ``data.cache``, the rows are also written to that HDF5 file.
    Collective: yes."""
    source = data if isinstance(data, TextInput) else TextInput((os.fspath(data),))
    if n_features is not None and source.n_features is None:
        source = replace(source, n_features=n_features)
    if not labelled and source.label is None:
        source = replace(source, label="none")
    inputs = on_root(comm, lambda: list_inputs(source.patterns, source.cache), share=True)
    reader = text_reader(comm, inputs, source, np.float64, None)
    counts, parsed = counting_pass(comm, reader, rank_text(comm, inputs), keep=True)
    plan = counted(comm, reader, counts)
    on_root(comm, inputs.check_unchanged)
    with rank_local(comm):
        X, y = _assembled(plan, [reader.matrix(rows) for rows in parsed])
    if source.cache is not None:
        write_rows(
            comm, source.cache, plan, plan.attrs(inputs, reader.fmt), np.float64, lambda: [(X, y)]
        )
    if not labelled:
        y = None
    info = DatasetInfo(
        reader.name, "X", "y" if labelled else None, plan.n_rows, plan.n_features,
        np.dtype(np.float64), np.dtype(np.float64) if labelled else None,
        csr=CSRLayout(plan.nnz, np.dtype(np.float64), X.indices.dtype) if plan.sparse else None,
        text=tuple(inputs.paths),
    )  # fmt: skip
    start = plan.first_row
    return info, LocalData(info, start, start + counts.rows, _scipy(X, plan), y)


def _assembled(plan: Plan, blocks: list) -> tuple[np.ndarray | Csr, np.ndarray | None]:
    """One rank's parsed blocks ``(X, y)`` as one matrix and one label vector."""
    ys = [y for _, y in blocks if y is not None]
    y = np.concatenate(ys) if ys else np.zeros(0)
    if not plan.sparse:
        dense = [X if isinstance(X, np.ndarray) else X.dense(0, X.n_rows) for X, _ in blocks]
        return np.vstack([np.zeros((0, plan.n_features)), *dense]), y
    parts = [X if isinstance(X, Csr) else Csr.of(X) for X, _ in blocks]
    index = np.int32 if plan.n_features <= np.iinfo(np.int32).max else np.int64
    indptr = np.zeros(1 + sum(p.n_rows for p in parts), dtype=np.int64)
    row = value = 0
    for part in parts:
        indptr[row + 1 : row + part.n_rows + 1] = part.indptr[1:] + value
        row, value = row + part.n_rows, value + len(part.data)
    data = np.concatenate([np.zeros(0), *(p.data for p in parts)])
    indices = np.concatenate([np.zeros(0, index), *(p.indices for p in parts)]).astype(index)
    return Csr(data, indices, indptr, plan.n_features), y


def _scipy(X, plan: Plan):
    """The matrix the kernels take: a dense array, or a SciPy CSR matrix."""
    if isinstance(X, np.ndarray):
        return X
    import scipy.sparse as sp

    shape = (X.n_rows, plan.n_features)
    return sp.csr_matrix((X.data, X.indices, X.indptr), shape=shape, copy=False)
