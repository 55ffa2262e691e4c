"""Output files: checked before the work starts, written atomically when it ends.

:func:`check_outputs` refuses, before any work, an output that cannot be written or that
names an input or another output (by any path, symbolic link or hard link);
:func:`atomic_path` is how every output is written: under a temporary name beside it,
renamed into place when complete; :func:`writing` adds one clear
:class:`~mpigd.errors.MpigdError` naming the file for any ``OSError`` (conversion and
split, which read while they write, name only what the environment causes, with
:func:`environment_reason`).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import Interrupted, MpigdError
from ..partition import CHUNK_BYTES, rows_per_block

PathLike = str | os.PathLike


def output_problem(path: PathLike) -> str | None:
    """Why ``path`` cannot be written as an output file (a folder, a missing or
    unwritable folder), or None if it can; that it names no input is
    :func:`clash_problem`'s test. Checked before the work so that a bad output fails in
    seconds, not after the run. Collective: no.
    """
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        return f"output path is a folder: {path}"
    if not folder.is_dir():
        return f"output folder does not exist: {folder}"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"output folder is not writable: {folder}"
    return None


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file: the same path once links and ``..`` are
    resolved, or (when both exist) the same device and inode, so that a hard link counts
    too. Collective: no."""
    if Path(a).resolve() == Path(b).resolve():
        return True
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


Named = Mapping[str, PathLike | None] | Iterable[tuple[str, PathLike | None]]


def _pairs(named: Named | None) -> list[tuple[str, PathLike]]:
    items = named.items() if isinstance(named, Mapping) else (named or [])
    return [(name, path) for name, path in items if path is not None]


def clash_problem(
    outputs: Named, inputs: Named, may_share: Iterable[tuple[str, str]] = ()
) -> str | None:
    """Why these outputs cannot be written together, or None: an output that is the same
    file (:func:`same_file`) as an input or as another output. Both are mappings (or
    pairs) from what names a file in the message to its path; None paths are left out.
    ``may_share`` lists the ``(output, input)`` pairs that may be one file (a checkpoint
    that a resumed run rewrites). Collective: no."""
    allowed = set(may_share)
    written, read = _pairs(outputs), _pairs(inputs)
    for i, (name, path) in enumerate(written):
        for source_name, source in read:
            if (name, source_name) not in allowed and same_file(path, source):
                same = "" if str(path) == str(source) else f" {source}"
                return (
                    f"{name} {path} is an input file, {source_name}{same}; outputs never "
                    "replace inputs: choose another name"
                )
        for other_name, other in written[:i]:
            if same_file(path, other):
                return (
                    f"{other_name} {other} and {name} {path} are the same file; give each "
                    "output a name of its own"
                )
    return None


def check_outputs(
    outputs: Named, inputs: Named | None = None, may_share: Iterable[tuple[str, str]] = ()
) -> None:
    """Raise :class:`MpigdError` if the ``outputs`` clash with the ``inputs`` or with each
    other (:func:`clash_problem`) or one of them cannot be written (:func:`output_problem`).
    Collective: no."""
    problem = clash_problem(outputs, inputs, may_share)
    for _, path in _pairs(outputs):
        problem = problem or output_problem(path)
    if problem:
        raise MpigdError(problem)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary_beside(path: str | os.PathLike) -> str:
    """A new empty file beside ``path``, with the mode a new output gets, to be
    :func:`commit`-ted to ``path`` or removed. Collective: no."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
    return tmp


def commit(tmp: str, path: str | os.PathLike) -> None:
    """Sync the complete ``tmp`` and rename it to ``path`` (atomic: one folder), then
    sync the folder; not after an interrupt. Collective: no."""
    Interrupted.raise_pending()  # never commit an output after a SIGTERM
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        folder_fd = os.open(Path(path).parent, os.O_RDONLY)
        try:
            os.fsync(folder_fd)
        finally:
            os.close(folder_fd)
    except OSError as exc:  # the output is in place: say so, not that it was not written
        raise MpigdError(
            f"{path} is written, but syncing its folder failed ({os_error_reason(exc)}): "
            "a crash of the machine now could undo its rename"
        ) from exc


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary file name beside ``path``; on success it replaces ``path``.

    The temporary file lives in the same folder, so the final ``os.replace`` is an atomic
    rename: readers see the old file or the complete new one, never a partial one. On
    failure the temporary file is removed and ``path`` is left untouched.
    Collective: no.
    """
    tmp = temporary_beside(path)
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: Why a write fails that no retry mends: the device is full, the quota spent, the file
#: system mounted read-only, or the file grown past the largest the process may write.
_ENVIRONMENT = {
    errno.ENOSPC: "no space left on its device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "its file system is read-only",
    errno.EFBIG: "it would exceed the largest file this process may write (ulimit -f) "
    "or its file system holds",
}


def environment_reason(exc: Exception) -> str | None:
    """The environment's cause of an error, when it is one of ``_ENVIRONMENT`` (h5py
    puts the errno only in its message, and raises RuntimeError when HDF5 fails to flush
    a file), or None. Collective: no."""
    for number, reason in _ENVIRONMENT.items():
        if getattr(exc, "errno", None) == number or os.strerror(number) in str(exc):
            return reason
    return None


def os_error_reason(exc: OSError) -> str:
    """A short reason for a write error: :func:`environment_reason`, else the error's
    text, without the file names an ``OSError`` carries (the caller names the output; a
    temporary name would only confuse). Collective: no."""
    named = isinstance(exc, OSError) and exc.filename is not None and exc.strerror
    return environment_reason(exc) or (f"[Errno {exc.errno}] {exc.strerror}" if named else str(exc))


def space_problem(path: PathLike, n_bytes: float, what: str = "output") -> str | None:
    """Why ``n_bytes`` will not fit in the free space of ``path``'s folder, or None.
    Collective: no."""
    try:
        free = shutil.disk_usage(Path(path).resolve().parent).free
    except OSError:
        return None
    if n_bytes <= free:
        return None
    return (
        f"the {what} {path} would take about {human_bytes(n_bytes)} but its folder has "
        f"{human_bytes(free)} free"
    )


def human_bytes(n_bytes: float) -> str:
    """``n_bytes`` in B, KiB, MiB, GiB or TiB. Collective: no."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n_bytes) < 1024:
            return f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} TiB"


@contextmanager
def write_errors(path: str | os.PathLike, what: str = "") -> Iterator[None]:
    """Turn an ``OSError`` of the block (disk full, permissions, a lock) into one
    :class:`MpigdError`: ``cannot write [what ]PATH: reason``; so too h5py's
    ``RuntimeError`` or ``ValueError`` (creating a dataset whose space is written at
    once) when the environment caused it. Collective: no."""
    try:
        yield
    except (OSError, RuntimeError, ValueError) as exc:
        if not isinstance(exc, OSError) and environment_reason(exc) is None:
            raise  # an HDF5 failure that is not the environment's: a bug
        reason = os_error_reason(exc)
        raise MpigdError(f"cannot write {what + ' ' if what else ''}{path}: {reason}") from exc


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
    """Write ``record`` as JSON to ``path``, atomically. NaN and infinite numbers, which
    JSON cannot hold, are written as ``null``. Collective: no."""
    with writing(path) as tmp, open(tmp, "w") as f:
        json.dump(_json_safe(record), f, indent=1, allow_nan=False)


def _json_safe(value):
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


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
