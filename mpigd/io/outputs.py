"""Output files: checked before the work starts, written atomically when it ends.

:func:`check_output` refuses an output that cannot be written or that names an input;
:func:`writing` is how every output is written: under a temporary name beside it,
renamed into place when complete, with any ``OSError`` turned into one clear
:class:`~mpigd.errors.MpigdError` naming the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import MpigdError
from ..partition import CHUNK_BYTES, rows_per_block


def output_problem(path: str | os.PathLike, inputs=()) -> str | None:
    """Why ``path`` cannot be written as an output file, or None if it can. It must not
    be one of the ``inputs``: input files are never written to.

    Checked before training so that a bad ``--out`` fails in seconds, not after the run.
    Collective: no.
    """
    path = Path(path)
    folder = path.parent
    if any(path.resolve() == Path(i).resolve() for i in inputs):
        return f"output {path} is an input file; choose another name"
    if path.is_dir():
        return f"output path is a folder: {path}"
    if not folder.is_dir():
        return f"output folder does not exist: {folder}"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"output folder is not writable: {folder}"
    return None


def check_output(path: str | os.PathLike, inputs=()) -> None:
    """Raise :class:`MpigdError` with :func:`output_problem`'s reason, if there is one.
    Collective: no."""
    problem = output_problem(path, inputs)
    if problem:
        raise MpigdError(problem)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary file name beside ``path``; on success it replaces ``path``.

    The temporary file lives in the same folder, so the final ``os.replace`` is an atomic
    rename: readers see the old file or the complete new one, never a partial one. On
    failure the temporary file is removed and ``path`` is left untouched.
    Collective: no.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder_fd)
    finally:
        os.close(folder_fd)


@contextmanager
def write_errors(path: str | os.PathLike, what: str = "") -> Iterator[None]:
    """Turn an ``OSError`` of the block (disk full, permissions, a lock) into one
    :class:`MpigdError`: ``cannot write [what ]PATH: reason``. Collective: no."""
    try:
        yield
    except OSError as exc:
        raise MpigdError(f"cannot write {what + ' ' if what else ''}{path}: {exc}") from exc


@contextmanager
def writing(path: str | os.PathLike, what: str = "") -> Iterator[str]:
    """Yield a temporary file name to write ``path`` through (:func:`atomic_path`); a
    failure leaves ``path`` untouched and becomes one :class:`MpigdError`
    (:func:`write_errors`). The block should only write: a read error in it would be
    reported as a write error. Collective: no."""
    with write_errors(path, what), atomic_path(path) as tmp:
        yield tmp


def read_attrs(obj) -> dict[str, Any]:
    """An HDF5 object's attributes as Python scalars, strings and arrays. Collective: no."""
    return {key: _plain(value) for key, value in obj.attrs.items()}


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_json(path: str | os.PathLike, record) -> None:
    """Write ``record`` as JSON to ``path``, atomically. Collective: no."""
    with writing(path) as tmp, open(tmp, "w") as f:
        json.dump(record, f, indent=1)


def create_rows_dataset(
    f: h5py.Group,
    name: str,
    shape: tuple[int, ...],
    dtype,
    *,
    contiguous: bool = False,
    compression: str | None = None,
    fixed_layout: bool = False,
) -> h5py.Dataset:
    """An empty dataset of ``shape`` (rows, ...) chunked in blocks of whole rows of about
    ``CHUNK_BYTES`` (or ``contiguous``; ``compression`` needs chunks). ``fixed_layout``
    allocates every chunk now, in order, and stores no time stamps, so the file's bytes
    do not depend on the order of the writes that follow. Collective: no."""
    dtype = np.dtype(dtype)
    if contiguous:
        if compression:
            raise MpigdError("compression needs a chunked layout, not a contiguous one")
        return f.create_dataset(name, shape, dtype=dtype)
    row_bytes = dtype.itemsize * int(np.prod(shape[1:]))
    rows = rows_per_block(row_bytes, CHUNK_BYTES, shape[0])
    layout = {}
    if fixed_layout:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        layout = {"dcpl": dcpl, "track_times": False}
    return f.create_dataset(
        name,
        shape,
        dtype=dtype,
        chunks=(rows, *shape[1:]),
        compression=compression,
        shuffle=compression is not None,
        **layout,
    )
