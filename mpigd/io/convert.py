"""CSV, LIBSVM/svmlight and NumPy files to mpigd's HDF5 layout, in bounded memory.

Every reader yields blocks of rows ``(X_block, y_block)``; one writer puts them into
datasets ``X`` (rows, features) and ``y`` (rows,) whose chunks are row blocks, the shape
mpigd's ranks read (:mod:`~mpigd.io.text` reads CSV and LIBSVM, :mod:`~mpigd.io.arrays`
NumPy files). Memory holds one block of rows at a time, whatever the file's size; the
output is written under a temporary name and renamed only when complete.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from .._version import __version__
from ..errors import MpigdError
from ..host import available_memory
from . import FORMATS
from .arrays import read_numpy
from .outputs import (
    atomic_path,
    check_outputs,
    create_rows_dataset,
    environment_reason,
    human_bytes,
    space_problem,
)
from .ranges import COMPRESSED
from .source import Progress, Source
from .sparse import CSRWriter
from .text import read_csv, read_libsvm

_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".svm": "libsvm",
    ".libsvm": "libsvm",
    ".svmlight": "libsvm",
    ".light": "libsvm",
    ".npy": "npy",
    ".npz": "npz",
}
#: Bytes of float64 values in one block of rows. The block's text and the parser's work
#: space take about ten times as much again; larger blocks convert no faster.


def guess_format(path: str | os.PathLike) -> str:
    """The input format from the file name's suffix. Collective: no."""
    name = Path(path)
    if name.suffix.lower() in COMPRESSED:  # data.svm.gz is LIBSVM
        name = name.with_suffix("")
    fmt = _SUFFIXES.get(name.suffix.lower())
    if fmt is None:
        raise MpigdError(
            f"cannot tell the format of {path} from its name; name the format "
            f"({', '.join(FORMATS)})"
        )
    return fmt


# -------------------------------------------------------------------------- writing


def write_source(
    source: Source,
    output,
    *,
    dtype: str = "float64",
    contiguous: bool = False,
    compression: str | None = None,
    attrs: dict | None = None,
    progress: Progress = lambda done: None,
) -> None:
    """Write ``source`` into ``output`` (atomically) as X and, if labelled, y. Collective: no."""
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as f:
        layout = {"contiguous": contiguous, "compression": compression}
        if source.sparse:
            if contiguous:
                raise MpigdError("a sparse (CSR) output is written in chunks, not contiguous")
            X = CSRWriter(f, "X", source.n_rows, source.n_features, dtype, compression, source.nnz)
        else:
            X = create_rows_dataset(f, "X", (source.n_rows, source.n_features), dtype, **layout)
        y = None
        start = 0
        for X_block, y_block in source.blocks(progress):
            stop = start + X_block.shape[0]
            X[start:stop] = X_block
            if y_block is not None:
                if y is None:
                    y = create_rows_dataset(f, "y", (source.n_rows,), "float64", **layout)
                y[start:stop] = y_block
            start = stop
        if start != source.n_rows:
            raise MpigdError(
                f"the input changed while converting: {start} rows, expected {source.n_rows}"
            )
        if source.sparse:
            X.finish()
        if source.feature_names:
            X.attrs["feature_names"] = source.feature_names
        if y is not None and source.label_name:
            y.attrs["name"] = source.label_name
        f.attrs.update(attrs or {}, mpigd_version=__version__)


def convert(
    input_path,
    output,
    *,
    fmt: str | None = None,
    label: str | None = None,
    header: bool | None = None,
    delimiter: str | None = None,
    n_features: int | None = None,
    zero_based: bool | None = None,
    dtype: str = "float64",
    contiguous: bool = False,
    compression: str | None = None,
    layout: str | None = None,
    progress: Callable[[Source], Progress] | None = None,
) -> Source:
    """Convert ``input_path`` to mpigd's HDF5 layout at ``output``; returns what was read.
    ``layout`` is "sparse" (X a CSR group) or "dense"; by default LIBSVM is sparse and
    the other formats dense. ``progress(source)`` gives the callback of the conversion
    pass. Collective: no."""
    if layout not in (None, "sparse", "dense"):
        raise MpigdError(f"layout must be 'sparse' or 'dense', not {layout!r}")
    fmt = fmt or guess_format(input_path)
    if Path(input_path).is_dir():
        raise MpigdError(f"input is a folder, not a file: {input_path}")
    if not Path(input_path).is_file():
        raise MpigdError(f"input file not found: {input_path}")
    check_outputs({"the output": output}, {"the input": input_path})
    try:
        if fmt == "tsv":
            fmt, delimiter = "csv", delimiter or "\t"
        if fmt == "csv":
            source = read_csv(input_path, label=label, header=header, delimiter=delimiter)
        elif fmt == "libsvm":
            source = read_libsvm(
                input_path, n_features=n_features, zero_based=zero_based, sparse=layout != "dense"
            )
        elif fmt in ("npy", "npz"):
            source = read_numpy(input_path, label=label)
        else:
            raise MpigdError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
        _check_sizes(input_path, fmt, source)
        if layout == "sparse" and not source.sparse:
            source = source.as_sparse()
        if layout == "dense" and source.sparse:
            source = source.as_dense()
        if source.sparse:
            source.notes.append("X stored sparse (CSR)")
        problem = size_problem(source, output, dtype, compression)
        if problem:
            raise MpigdError(problem)
        write_source(
            source,
            output,
            dtype=dtype,
            contiguous=contiguous,
            compression=compression,
            attrs={"source": os.path.abspath(input_path), "source_format": fmt},
            progress=progress(source) if progress else (lambda done: None),
        )
    except (UnicodeDecodeError, zipfile.BadZipFile, io.UnsupportedOperation) as exc:
        raise MpigdError(f"cannot read {input_path} as {fmt}: {exc}") from exc
    except OSError as exc:
        reason = environment_reason(exc)
        if reason:
            raise MpigdError(f"cannot write {output}: {reason}") from exc
        raise MpigdError(f"converting {input_path} failed: {exc}") from exc
    return source


def _check_sizes(path, fmt: str, source: Source) -> None:
    """One line for an input with no rows or no feature columns (an HDF5 dataset needs
    both). Collective: no."""
    if source.n_rows == 0:
        raise MpigdError(f"{path} holds no data rows")
    if source.n_features < 1:
        how = (
            "its rows list no index:value pairs; give --features N for rows of N zeros"
            if fmt == "libsvm"
            else "mpigd needs at least one (a label column does not count)"
        )
        raise MpigdError(f"{path} holds no feature columns: {how}")


#: Copies of one dense float64 row that converting a block holds at once (the parsed
#: values, the dense block, HDF5's conversion buffer).
ROW_COPIES = 3


def size_problem(source, output, dtype: str, compression: str | None) -> str | None:
    """Why the dense output would not fit this machine's memory (one row of each block) or
    the free space of its folder (unless compressed, when its size is unknown), or None.
    A LIBSVM index far beyond the others makes every dense row that wide. ``source`` is a
    :class:`~mpigd.io.source.Source` or a :class:`~mpigd.io.text_convert.Plan`.
    Collective: no."""
    if source.sparse:
        if compression or source.nnz is None:
            return None
        value = np.dtype(dtype).itemsize + (4 if source.n_features < 2**31 else 8)
        n_bytes = source.nnz * value + source.n_rows * 16
        return space_problem(output, n_bytes, "converted file")
    row = 8.0 * source.n_features
    free = available_memory()
    if ROW_COPIES * row > free:
        return (
            f"one dense row of {source.n_features:,} features takes {human_bytes(row)}, and "
            f"this machine has {human_bytes(free)} free: mpigd stores X dense (is the "
            "largest index right?)"
        )
    if compression:
        return None
    n_bytes = source.n_rows * (source.n_features * np.dtype(dtype).itemsize + 8)
    return space_problem(output, n_bytes, "converted file")
