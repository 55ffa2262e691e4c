"""Opening HDF5 inputs read-only, with one clear message for each way it can fail.

Every reader of an input file (data, model, checkpoint) opens it through
:func:`open_input`, and finds its datasets through :func:`get_dataset`, so that a missing
file, a folder, a file that is not HDF5, a file locked by a writer, a truncated or corrupt
file, a dangling soft or external link, a null dataspace and a virtual dataset whose
source is missing are each named as such, never as a library traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py

from ..errors import MpigdError

#: What h5py raises for unreadable, truncated or corrupt files and chunks.
READ_ERRORS = (OSError, RuntimeError, KeyError, ValueError)


def read_problem(path, what: str, exc: Exception) -> str:
    """One line for an error that h5py raised while opening or reading ``path``.
    Collective: no."""
    text = str(exc)
    if "unable to lock file" in text:
        return (
            f"cannot read {what} {path}: another process has it open for writing (HDF5 "
            "file locking); wait until it has finished"
        )
    if isinstance(exc, PermissionError) or "Permission denied" in text:
        return f"cannot read {what} {path}: permission denied"
    return f"cannot read {what} {path} (truncated or corrupt?): {exc}"


@contextmanager
def open_input(path: str | os.PathLike, what: str = "data file") -> Iterator[h5py.File]:
    """``path`` opened read-only; any failure, opening it or in the block reading it, is
    one :class:`MpigdError` naming ``what`` the file is. Collective: no."""
    path = str(path)
    if not Path(path).exists():
        raise MpigdError(f"{what} not found: {path}")
    if Path(path).is_dir():
        raise MpigdError(f"{what} is a folder, not an HDF5 file: {path}")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as exc:
        raise MpigdError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if not is_hdf5:
        raise MpigdError(f"not an HDF5 file: {path}")
    try:
        with h5py.File(path, "r") as f:
            yield f
    except READ_ERRORS as exc:
        raise MpigdError(read_problem(path, what, exc)) from exc


def get_dataset(f: h5py.File, key: str) -> h5py.Dataset:
    """The dataset ``key`` of ``f``, checked: it exists, is a dataset, has a dataspace,
    and, if virtual, all its sources exist. Collective: no."""
    path = f.filename
    link = f.get(key, getlink=True) if key.strip("/") else None
    if link is None:
        names = ", ".join(sorted(f.keys())) or "none"
        raise MpigdError(f"{path}: no dataset '{key}' (the file has: {names})")
    try:
        obj = f[key]
    except KeyError as exc:
        if isinstance(link, h5py.SoftLink):
            raise MpigdError(
                f"{path}: '{key}' is a soft link to '{link.path}', which does not exist"
            ) from exc
        if isinstance(link, h5py.ExternalLink):
            raise MpigdError(
                f"{path}: '{key}' is an external link to '{link.path}' in {link.filename}, "
                "which cannot be opened (a missing file or object)"
            ) from exc
        raise
    if not isinstance(obj, h5py.Dataset):
        raise MpigdError(f"{path}: '{key}' is a group, not a dataset")
    if obj.shape is None:
        raise MpigdError(f"{path}: '{key}' has a null dataspace: it holds no values")
    if obj.is_virtual:
        _check_sources(obj, key, path)
    return obj


def _source_file(name: str, vds_file: str) -> Path | None:
    """Where HDF5 finds a virtual dataset's source file: the same file ('.'), an absolute
    path, or a path relative to the virtual dataset's folder or the working folder."""
    if name == ".":
        return Path(vds_file)
    for folder in (Path(vds_file).parent, Path.cwd()):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def _check_sources(dataset: h5py.Dataset, key: str, path: str) -> None:
    """HDF5 reads a missing source of a virtual dataset as fill values, silently: refuse."""
    for source in dataset.virtual_sources():
        found = _source_file(source.file_name, path)
        missing = found is None
        if not missing:
            try:
                with h5py.File(found, "r") as f:
                    missing = not isinstance(f.get(source.dset_name), h5py.Dataset)
            except READ_ERRORS:
                missing = True
        if missing:
            raise MpigdError(
                f"{path}: '{key}' is a virtual dataset whose source '{source.dset_name}' in "
                f"{source.file_name} is missing; HDF5 would read it as fill values"
            )
