"""Shuffled train/test split of an HDF5 dataset, in bounded memory.

A uniformly random permutation of m rows that never holds more than one bucket of rows:
every row is sent to one of K buckets drawn at random, each bucket is then shuffled in
memory, and the buckets are concatenated. Multinomial bucket assignment followed by a
uniform shuffle within each bucket gives every permutation the same probability
(Rao, 1961; Sandelius, 1962). K is chosen from the data's size alone, so the result
depends only on the file and the seed. The first ceil(f m) rows of the permutation are
the test set, the rest the training set; every dataset with one entry per row (X, y,
weights) is permuted alike, and everything else is copied as it is.

An anndata ``.h5ad`` file stays one: ``obs`` (the labels: each column, its index, a
categorical column's codes beside its categories), ``obsm``, ``layers`` and ``raw/X`` are
split with X; ``var``, ``varm``, ``varp`` and ``uns`` describe the features or the whole
file and are copied; ``obsp`` (pairs of rows) cannot be split by rows and is left out,
with a warning.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

from ..errors import MpigdError
from ..partition import BLOCK_BYTES, rows_per_block
from . import sparse
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
        if not isinstance(source.get(x_key), h5py.Group):
            get_dataset(source, x_key)
        columns, groups, copies = _plan(source, x_key, path)
        m = columns[0].rows
        n_test = math.ceil(test_fraction * m)
        if not 0 < n_test < m:
            raise MpigdError(
                f"a test fraction of {test_fraction} of {m} rows leaves an empty "
                f"{'test' if n_test == 0 else 'training'} set"
            )
        row_bytes = sum(c.row_bytes for c in columns)
        n_buckets = max(1, math.ceil(m * row_bytes / BUCKET_BYTES))
        block = rows_per_block(row_bytes, BLOCK_BYTES)
        rng = np.random.default_rng(seed)
        folder = Path(train_out).resolve().parent
        if not any(c.compressed for c in columns):  # else the size is unknown
            problem = space_problem(train_out, 2 * m * row_bytes, "split (scratch and outputs)")
            if problem:
                raise MpigdError(problem)
        try:
            with tempfile.TemporaryDirectory(dir=folder, prefix=".mpigd-split-") as scratch:
                buckets = _scatter(columns, m, n_buckets, block, rng, scratch, progress)
                with (
                    atomic_path(test_out) as test_tmp,
                    atomic_path(train_out) as train_tmp,
                    h5py.File(test_tmp, "w") as test,
                    h5py.File(train_tmp, "w") as train,
                ):
                    outputs = []
                    for out, rows in ((test, n_test), (train, m - n_test)):
                        out.attrs.update(source.attrs)
                        out.attrs.update(split_of=os.path.abspath(path), seed=seed)
                        _copy_unsplit(source, out, groups, copies)
                        outputs.append(({c.key: c.create(out, rows) for c in columns}, rows))
                    _gather(buckets, columns, outputs, rng, progress)
        except OSError as exc:
            reason = environment_reason(exc)
            if reason is None:
                raise  # a read error of the source: open_input names it
            raise MpigdError(f"cannot write the split of {path} into {folder}: {reason}") from exc
    return m - n_test, n_test


class _Dense:
    """A dataset with one entry per row."""

    def __init__(self, dataset: h5py.Dataset):
        self.key, self.dataset, self.rows = dataset.name.lstrip("/"), dataset, dataset.shape[0]
        self.row_bytes = dataset.dtype.itemsize * math.prod(dataset.shape[1:])
        self.compressed = dataset.compression is not None

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.dataset[start:stop]

    def append(self, bucket: h5py.Group, values: np.ndarray) -> None:
        _append(bucket, self.key, values, self.dataset.dtype)

    def load(self, bucket: h5py.Group) -> np.ndarray:
        return bucket[self.key][:]

    def create(self, out: h5py.File, rows: int) -> h5py.Dataset:
        created = create_rows_dataset(
            out,
            self.key,
            (rows, *self.dataset.shape[1:]),
            self.dataset.dtype,
            contiguous=self.dataset.chunks is None,
            compression=self.dataset.compression,
        )
        created.attrs.update(self.dataset.attrs)
        return created


class _CSR:
    """A CSR group (:mod:`mpigd.io.sparse`): its rows move with their values."""

    def __init__(self, group: h5py.Group, path: str):
        self.key, self.group, self.path = group.name.lstrip("/"), group, path
        self.rows, self.n, self.layout = sparse.inspect_csr(group, self.key, path)
        values_per_row = self.layout.nnz / max(self.rows, 1)
        self.row_bytes = self.layout.bytes_per_value() * values_per_row + 8
        self.compressed = group["data"].compression is not None

    def read(self, start: int, stop: int) -> sp.csr_matrix:
        return sparse.read_rows(self.group, self.key, self.path, self.n, start, stop, finite=False)

    def append(self, bucket: h5py.Group, X: sp.csr_matrix) -> None:
        lengths = np.diff(X.indptr)
        for name, values in (("data", X.data), ("indices", X.indices), ("lengths", lengths)):
            _append(bucket, f"{self.key}/{name}", values)

    def load(self, bucket: h5py.Group) -> sp.csr_matrix:
        part = bucket[self.key]
        indptr = np.concatenate([[0], np.cumsum(part["lengths"][:])])
        shape = (len(indptr) - 1, self.n)
        return sp.csr_matrix((part["data"][:], part["indices"][:], indptr), shape=shape)

    def create(self, out: h5py.File, rows: int) -> sparse.CSRWriter:
        data = self.group["data"]
        writer = sparse.CSRWriter(out, self.key, rows, self.n, data.dtype, data.compression)
        writer.attrs.update({k: v for k, v in self.group.attrs.items() if k != "shape"})
        return writer


#: Groups of an anndata file that do not hold one entry per row: copied as they are.
ANNDATA_COPIED = frozenset({"var", "varm", "varp", "uns", "raw/var", "raw/varm"})
#: Groups of an anndata file indexed by pairs of rows, which a split by rows cannot keep.
ANNDATA_PAIRS = frozenset({"obsp"})


def _encoding(obj) -> str:
    value = obj.attrs.get("encoding-type", "")
    return value.decode() if isinstance(value, bytes) else str(value)


def _plan(source: h5py.File, x_key: str, path: str) -> tuple[list, list[str], list[str]]:
    """What the split does with each object of the file: the columns split by rows (X
    first, then every other dataset or CSR group with one entry per row), the groups
    made again with their attributes, and the objects copied as they are."""
    X = source[x_key]
    first = _CSR(X, path) if isinstance(X, h5py.Group) else _Dense(X)
    plan = ([first], [], [])
    anndata = _encoding(source) == "anndata"
    _walk(source, first.rows, path, anndata, {X.name}, plan)
    return plan


def _walk(group: h5py.Group, m: int, path: str, anndata: bool, done: set, plan) -> None:
    """Add the members of ``group`` to ``plan`` (see :func:`_plan`), depth first."""
    columns, groups, copies = plan
    for item in group.values():
        name = item.name.lstrip("/")
        if item.name in done:
            continue
        if anndata and name in ANNDATA_PAIRS:
            groups.append(name)
            _warn_left_out(item, path)
        elif (anndata and name in ANNDATA_COPIED) or not _has_rows(item, m):
            copies.append(name)
        elif isinstance(item, h5py.Dataset):
            columns.append(_Dense(item))
        elif _encoding(item) in ("csr_matrix", "csc_matrix"):
            columns.append(_CSR(item, path))  # a CSC matrix is refused with its conversion
        elif _encoding(item) == "categorical" and "categories" in item:
            groups.append(name)
            copies.append(item["categories"].name.lstrip("/"))
            _walk(item, m, path, anndata, {item["categories"].name}, plan)
        else:
            groups.append(name)
            _walk(item, m, path, anndata, done, plan)


def _has_rows(item, m: int) -> bool:
    """Whether ``item`` holds one entry per row: a dataset of m rows, a sparse matrix of
    m rows, or a group (whose members are then looked at one by one)."""
    if isinstance(item, h5py.Dataset):
        return item.shape is not None and item.ndim >= 1 and item.shape[0] == m
    if _encoding(item) in ("csr_matrix", "csc_matrix"):
        shape = np.ravel(item.attrs.get("shape", ()))
        return len(shape) >= 1 and shape[0] == m
    return True


def _warn_left_out(group: h5py.Group, path: str) -> None:
    if len(group):
        names = ", ".join(f"{group.name.lstrip('/')}/{key}" for key in group)
        warnings.warn(
            f"{path}: {names}: a matrix of pairs of rows cannot be split by rows, so both "
            "files leave it out; compute it again on each (e.g. scanpy's pp.neighbors)",
            stacklevel=4,
        )


def _copy_unsplit(source: h5py.File, out: h5py.File, groups: list[str], copies: list[str]):
    """Make the groups again, with their attributes, and copy what is not split."""
    for name in groups:
        out.require_group(name).attrs.update(source[name].attrs)
    for name in copies:
        parent, _, _ = name.rpartition("/")
        source.copy(source[name], out[parent] if parent else out, name.rpartition("/")[2])


def _scatter(columns, m, n_buckets, block, rng, scratch, progress) -> h5py.File:
    """Read the rows in order and append each to a random bucket in a scratch file."""
    buckets = h5py.File(Path(scratch) / "buckets.h5", "w")
    for start in range(0, m, block):
        stop = min(start + block, m)
        target = rng.integers(n_buckets, size=stop - start)
        order = np.argsort(target, kind="stable")
        bounds = np.searchsorted(target[order], np.arange(n_buckets + 1))
        for column in columns:
            values = column.read(start, stop)[order]
            for b in np.flatnonzero(np.diff(bounds)):
                column.append(buckets.require_group(str(b)), values[bounds[b] : bounds[b + 1]])
        progress(stop - start)
    return buckets


def _append(f: h5py.File, name: str, values: np.ndarray, dtype=None) -> None:
    if name not in f:
        f.create_dataset(
            name,
            data=values,
            dtype=dtype,  # needed for strings (an anndata index)
            maxshape=(None, *values.shape[1:]),
            chunks=(1024, *values.shape[1:]),
        )
        return
    dataset = f[name]
    old = dataset.shape[0]
    dataset.resize(old + len(values), axis=0)
    dataset[old:] = values


def _gather(buckets, columns, outputs, rng, progress) -> None:
    """Shuffle each bucket in memory and deal its rows to the test, then training file."""
    output, (out, room) = 0, outputs[0]
    written = 0
    for b in sorted(int(name) for name in buckets):
        group = buckets[str(b)]
        rows = {c.key: c.load(group) for c in columns}
        order = rng.permutation(rows[columns[0].key].shape[0])
        rows = {key: values[order] for key, values in rows.items()}
        taken = 0
        while taken < len(order):
            count = min(len(order) - taken, room - written)
            for key, values in rows.items():
                out[key][written : written + count] = values[taken : taken + count]
            taken, written = taken + count, written + count
            if written == room and output + 1 < len(outputs):
                output, written = output + 1, 0
                out, room = outputs[output]
        progress(len(order))
    buckets.close()
