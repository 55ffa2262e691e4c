"""CSV, LIBSVM/svmlight and NumPy files to mpigd's HDF5 layout, in bounded memory.

Every reader yields blocks of rows ``(X_block, y_block)``; one writer puts them into
datasets ``X`` (rows, features) and ``y`` (rows,) whose chunks are row blocks, the shape
mpigd's ranks read. Text is read twice: once to count rows (and, for LIBSVM, features and
labels), once to convert; memory holds one block of rows at a time, whatever the file's
size. A malformed value stops the conversion with its line and column; the output is
written under a temporary name and renamed only when complete.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from . import __version__
from .errors import MpigdError
from .files import atomic_path, create_rows_dataset

FORMATS = ("csv", "libsvm", "npy", "npz")
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
BLOCK_BYTES = 2**20

Progress = Callable[[int], None]  # called with the number of rows just converted


def guess_format(path: str | os.PathLike) -> str:
    """The input format from the file name's suffix. Collective: no."""
    fmt = _SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise MpigdError(
            f"cannot tell the format of {path} from its name; give --format ({', '.join(FORMATS)})"
        )
    return fmt


@dataclass
class Source:
    """What the first pass learned: sizes, names, and how to read the blocks."""

    n_rows: int
    n_features: int
    blocks: Callable[[Progress], Iterator[tuple[np.ndarray, np.ndarray | None]]]
    feature_names: list[str] | None = None
    label_name: str | None = None
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- CSV


def _parse_label(label: str | None, names: list[str] | None, width: int) -> int | None:
    """The label column's index (None: no label column) from a name or an index."""
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
        raise MpigdError(f"--label {label!r} is not a column name or index{known}") from None
    if not -width <= index < width:
        raise MpigdError(f"--label {index} is out of range: the file has {width} columns")
    return index % width


def _looks_like_header(fields: list[str]) -> bool:
    for value in fields:
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


def read_csv(
    path, *, label: str | None = None, header: bool | None = None, delimiter: str | None = None
) -> Source:
    """A CSV (or other delimited) text file; ``header`` None detects one (a first line
    with a field that is not a number); ``label`` is a column name or index, "none", or
    None for the last column. Collective: no."""
    if delimiter is None:
        delimiter = "\t" if Path(path).suffix.lower() == ".tsv" else ","
    with open(path, newline="") as f:
        first = next((line for _, line in _numbered_lines(f, 1)), None)
        if first is None:
            raise MpigdError(f"{path} holds no data")
        fields = next(csv.reader([first], delimiter=delimiter))
        header = _looks_like_header(fields) if header is None else header
        names = [name.strip() for name in fields] if header else None
        n_rows = sum(1 for _ in _numbered_lines(f, 2)) + (0 if header else 1)
    width = len(fields)
    y_column = _parse_label(label, names, width)
    keep = [c for c in range(width) if c != y_column]
    rows_per_block = max(1, BLOCK_BYTES // (8 * width))

    def blocks(progress: Progress):
        with open(path, newline="") as f:
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


#: A block of data lines in the plain LIBSVM grammar: a label without colons, then
#: ``index:value`` pairs with integer indices. Anything else (qid, malformed tokens) goes
#: to the per-line parser.
_PLAIN_LIBSVM = re.compile(r"(?:[ \t]*[^\s:]+(?:[ \t]+\d+:[^\s:]+)*[ \t]*\r?\n)*")


def _fast_block(raw: list[tuple[int, str]]) -> _Sparse | None:
    """Parse a block with one regular-expression check and a few NumPy calls; None if
    the block is not plain (the per-line parser then names the problem, or handles qid)."""
    lines = [line.split("#", 1)[0] + "\n" if "#" in line else line for _, line in raw]
    lines = [line if line.endswith("\n") else line + "\n" for line in lines if not line.isspace()]
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
    return _Sparse(labels, row, index.astype(np.int64), value)


def _slow_block(path, raw: list[tuple[int, str]]) -> _Sparse:
    labels, row, index, value = [], [], [], []
    for _, label, indices, values in _libsvm_rows(path, raw):
        row += [len(labels)] * len(indices)
        labels.append(label)
        index += indices
        value += values
    return _Sparse(
        np.array(labels, dtype=np.float64),
        np.array(row, dtype=np.int64),
        np.array(index, dtype=np.int64),
        np.array(value, dtype=np.float64),
    )


def _libsvm_blocks(path, lines_per_block: int) -> Iterator[_Sparse]:
    with open(path) as f:
        numbered = enumerate(f, start=1)
        while raw := list(itertools.islice(numbered, lines_per_block)):
            yield _fast_block(raw) or _slow_block(path, raw)


def read_libsvm(path, *, n_features: int | None = None, zero_based: bool | None = None) -> Source:
    """A LIBSVM/svmlight file, densified. Indices are 1-based unless ``zero_based`` (None:
    0-based exactly when an index 0 occurs). Labels -1/+1 become 0/1. The feature count
    is the largest index unless ``n_features`` is given. Collective: no."""
    n_rows, lowest, highest, labels = 0, None, -1, set()
    for block in _libsvm_blocks(path, 8192):
        n_rows += len(block.labels)
        if len(block.index):
            low = int(block.index.min())
            lowest = low if lowest is None else min(lowest, low)
            highest = max(highest, int(block.index.max()))
        if len(labels) <= 3:
            labels.update(np.unique(block.labels)[:4].tolist())
    if n_rows == 0:
        raise MpigdError(f"{path} holds no data")
    base = (0 if lowest == 0 else 1) if zero_based is None else (0 if zero_based else 1)
    if lowest is not None and lowest < base:
        raise MpigdError(f"{path}: index {lowest} with 1-based indices (use --zero-based)")
    width = highest + 1 - base
    if n_features is not None:
        if width > n_features:
            raise MpigdError(f"{path}: index {highest} exceeds --features {n_features}")
        width = n_features
    notes = [f"{width} features from {'0' if base == 0 else '1'}-based indices"]
    flip = labels <= {-1.0, 1.0} and -1.0 in labels
    if flip:
        notes.append("labels -1/+1 mapped to 0/1")
    lines_per_block = max(1, BLOCK_BYTES // (8 * max(width, 1)))

    def blocks(progress: Progress):
        for block in _libsvm_blocks(path, lines_per_block):
            X = np.zeros((len(block.labels), width))
            X[block.row, block.index - base] = block.value
            progress(len(block.labels))
            yield X, (block.labels + 1) / 2 if flip else block.labels

    return Source(n_rows, width, blocks, None, None, notes)


# --------------------------------------------------------------------------- NumPy


def _npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _array_blocks(name, open_array, label: str | None):
    """Shape and a block reader of one 2-D array stored as .npy (in a file or a zip)."""
    with open_array() as f:
        shape, fortran, dtype = _npy_header(f)
    if len(shape) != 2 or dtype.kind not in "iuf":
        raise MpigdError(f"{name}: need a 2-D array of numbers, got shape {shape} {dtype}")
    if fortran:
        raise MpigdError(f"{name} is stored in Fortran order; save it with np.ascontiguousarray")
    y_column = _parse_label(label, None, shape[1])
    keep = [c for c in range(shape[1]) if c != y_column]
    return shape, keep, y_column, _row_reader(open_array, shape, dtype)


def _row_reader(open_array, shape, dtype):
    def read(rows_per_block: int) -> Iterator[np.ndarray]:
        with open_array() as f:
            _npy_header(f)
            for start in range(0, shape[0], rows_per_block):
                rows = min(rows_per_block, shape[0] - start)
                raw = f.read(rows * shape[1] * dtype.itemsize)
                yield np.frombuffer(raw, dtype=dtype).reshape(rows, shape[1])

    return read


def read_numpy(path, *, label: str | None = None, x_key="X", y_key="y") -> Source:
    """A ``.npy`` 2-D array (the label a column of it), or a ``.npz`` with arrays
    ``x_key`` and ``y_key`` (or a single 2-D array, as for .npy). Read in row blocks from
    the file or the zip member, never whole. Collective: no."""
    path = str(path)
    if path.endswith(".npz") or zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            members = [m.removesuffix(".npy") for m in z.namelist()]

        def member(key):
            return lambda: zipfile.ZipFile(path).open(f"{key}.npy")

        if x_key in members:
            x_shape, keep, _, x_read = _array_blocks(f"{path}:{x_key}", member(x_key), "none")
            y_read = None
            if y_key in members:
                with member(y_key)() as f:
                    y_shape, _, y_dtype = _npy_header(f)
                if y_shape not in ((x_shape[0],), (x_shape[0], 1)):
                    raise MpigdError(f"{path}: '{y_key}' has shape {y_shape}; need ({x_shape[0]},)")
                y_read = _row_reader(member(y_key), (x_shape[0], 1), y_dtype)
            source = _numpy_source(path, x_shape, keep, None, x_read, y_read)
            source.notes = [f"label: array {y_key!r}" if y_read else "no label array"]
            return source
        if len(members) != 1:
            raise MpigdError(
                f"{path} has arrays {', '.join(members)}; need '{x_key}' (and '{y_key}')"
            )
        opener = member(members[0])
    else:

        def opener():
            return open(path, "rb")

    shape, keep, y_column, read = _array_blocks(path, opener, label)
    return _numpy_source(path, shape, keep, y_column, read, None)


def _numpy_source(path, shape, keep, y_column, x_read, y_read) -> Source:
    rows_per_block = max(1, BLOCK_BYTES // (8 * shape[1]))

    def blocks(progress: Progress):
        ys = y_read(rows_per_block) if y_read else None
        for block in x_read(rows_per_block):
            y = next(ys)[:, 0] if ys else None if y_column is None else block[:, y_column]
            X = block[:, keep]
            for name, values in (("X", X), ("y", y)):
                if (
                    values is not None
                    and values.dtype.kind == "f"
                    and not np.isfinite(values).all()
                ):
                    raise MpigdError(f"{path}: the {name} values hold NaN or infinity")
            progress(len(block))
            yield X, y

    notes = (
        []
        if y_read
        else ["no label column"]
        if y_column is None
        else [f"label: column index {y_column}"]
    )
    return Source(shape[0], len(keep), blocks, notes=notes)


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
    """Write ``source`` into ``output`` (atomically) as X and, if labelled, y."""
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as f:
        layout = {"contiguous": contiguous, "compression": compression}
        X = create_rows_dataset(f, "X", (source.n_rows, source.n_features), dtype, **layout)
        y = None
        start = 0
        for X_block, y_block in source.blocks(progress):
            stop = start + len(X_block)
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
    progress: Callable[[Source], Progress] | None = None,
) -> Source:
    """Convert ``input_path`` to mpigd's HDF5 layout at ``output``; returns what was read.
    ``progress(source)`` gives the callback of the conversion pass. Collective: no."""
    fmt = fmt or guess_format(input_path)
    if not Path(input_path).is_file():
        raise MpigdError(f"input file not found: {input_path}")
    try:
        if fmt == "csv":
            source = read_csv(input_path, label=label, header=header, delimiter=delimiter)
        elif fmt == "libsvm":
            source = read_libsvm(input_path, n_features=n_features, zero_based=zero_based)
        elif fmt in ("npy", "npz"):
            source = read_numpy(input_path, label=label)
        else:
            raise MpigdError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
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
        raise MpigdError(f"converting {input_path} failed: {exc}") from exc
    return source
