"""Shuffled train/test split of an HDF5 dataset, in bounded memory.

A uniformly random permutation of m rows that never holds more than one bucket of rows:
every row is sent to one of K buckets drawn at random, each bucket is then shuffled in
memory, and the buckets are concatenated. Multinomial bucket assignment followed by a
uniform shuffle within each bucket gives every permutation the same probability
(Rao, 1961; Sandelius, 1962). K is chosen from the data's size alone, so the result
depends only on the file and the seed. The first ceil(f m) rows of the permutation are
the test set, the rest the training set; every dataset with one entry per row (X, y,
weights) is permuted alike.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

from ..errors import MpigdError
from ..partition import BLOCK_BYTES, rows_per_block
from .hdf5 import get_dataset, open_input
from .outputs import (
    atomic_path,
    check_outputs,
    create_rows_dataset,
    environment_reason,
    space_problem,
)

#: Bytes of rows in one bucket, the most held in memory (give or take a few percent).
BUCKET_BYTES = 64 * 2**20


def split(
    path: str | os.PathLike,
    train_out: str | os.PathLike,
    test_out: str | os.PathLike,
    *,
    test_fraction: float,
    seed: int = 0,
    x_key: str = "X",
    progress=lambda rows: None,
) -> tuple[int, int]:
    """Write shuffled training and test files; returns their row counts. ``progress`` is
    called with rows done (each row is read twice and written once). Collective: no."""
    if not 0 < test_fraction < 1:
        raise MpigdError(f"the test fraction must be between 0 and 1, got {test_fraction}")
    check_outputs({"the training file": train_out, "the test file": test_out}, {"the data": path})
    with open_input(path) as source:
        if isinstance(source.get(x_key), h5py.Group):
            raise MpigdError(
                f"{path}: '{x_key}' is a group (a sparse matrix?); data split moves dense "
                "datasets only, so far"
            )
        m = get_dataset(source, x_key).shape[0]
        keys = [
            key
            for key, item in source.items()
            if isinstance(item, h5py.Dataset) and item.ndim >= 1 and item.shape[0] == m
        ]
        n_test = math.ceil(test_fraction * m)
        if not 0 < n_test < m:
            raise MpigdError(
                f"a test fraction of {test_fraction} of {m} rows leaves an empty "
                f"{'test' if n_test == 0 else 'training'} set"
            )
        row_bytes = sum(source[k].dtype.itemsize * math.prod(source[k].shape[1:]) for k in keys)
        n_buckets = max(1, math.ceil(m * row_bytes / BUCKET_BYTES))
        block = rows_per_block(row_bytes, BLOCK_BYTES)
        rng = np.random.default_rng(seed)
        folder = Path(train_out).resolve().parent
        if not any(source[k].compression for k in keys):  # else the size is unknown
            problem = space_problem(train_out, 2 * m * row_bytes, "split (scratch and outputs)")
            if problem:
                raise MpigdError(problem)
        try:
            with tempfile.TemporaryDirectory(dir=folder, prefix=".mpigd-split-") as scratch:
                buckets = _scatter(source, keys, m, n_buckets, block, rng, scratch, progress)
                with (
                    atomic_path(test_out) as test_tmp,
                    atomic_path(train_out) as train_tmp,
                    h5py.File(test_tmp, "w") as test,
                    h5py.File(train_tmp, "w") as train,
                ):
                    outputs = [(test, n_test), (train, m - n_test)]
                    for out, rows in outputs:
                        out.attrs.update(source.attrs)
                        out.attrs.update(split_of=os.path.abspath(path), seed=seed)
                        for key in keys:
                            _create_like(out, source[key], rows)
                    _gather(buckets, keys, outputs, rng, progress)
        except OSError as exc:
            reason = environment_reason(exc)
            if reason is None:
                raise  # a read error of the source: open_input names it
            raise MpigdError(f"cannot write the split of {path} into {folder}: {reason}") from exc
    return m - n_test, n_test


def _create_like(out: h5py.File, dataset: h5py.Dataset, rows: int) -> None:
    created = create_rows_dataset(
        out,
        dataset.name,
        (rows, *dataset.shape[1:]),
        dataset.dtype,
        contiguous=dataset.chunks is None,
        compression=dataset.compression,
    )
    created.attrs.update(dataset.attrs)


def _scatter(source, keys, m, n_buckets, block, rng, scratch, progress) -> h5py.File:
    """Read the rows in order and append each to a random bucket in a scratch file."""
    buckets = h5py.File(Path(scratch) / "buckets.h5", "w")
    for start in range(0, m, block):
        stop = min(start + block, m)
        target = rng.integers(n_buckets, size=stop - start)
        order = np.argsort(target, kind="stable")
        bounds = np.searchsorted(target[order], np.arange(n_buckets + 1))
        for key in keys:
            values = source[key][start:stop][order]
            for b in np.flatnonzero(np.diff(bounds)):
                _append(buckets, f"{b}/{key}", values[bounds[b] : bounds[b + 1]])
        progress(stop - start)
    return buckets


def _append(f: h5py.File, name: str, values: np.ndarray) -> None:
    if name not in f:
        f.create_dataset(
            name, data=values, maxshape=(None, *values.shape[1:]), chunks=(1024, *values.shape[1:])
        )
        return
    dataset = f[name]
    old = dataset.shape[0]
    dataset.resize(old + len(values), axis=0)
    dataset[old:] = values


def _gather(buckets, keys, outputs, rng, progress) -> None:
    """Shuffle each bucket in memory and deal its rows to the test, then training file."""
    output, (out, room) = 0, outputs[0]
    written = 0
    for b in sorted(int(name) for name in buckets):
        group = buckets[str(b)]
        order = rng.permutation(group[keys[0]].shape[0])
        rows = {key: group[key][:][order] for key in keys}
        taken = 0
        while taken < len(order):
            count = min(len(order) - taken, room - written)
            for key in keys:
                out[key][written : written + count] = rows[key][taken : taken + count]
            taken, written = taken + count, written + count
            if written == room and output + 1 < len(outputs):
                output, written = output + 1, 0
                out, room = outputs[output]
        progress(len(order))
    buckets.close()
