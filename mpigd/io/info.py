"""``mpigd data info``: a dataset's layout and per-feature statistics, computed in parallel.

Each rank reads its own rows in blocks (bounded memory) and keeps running minima, maxima,
sums and counts of non-finite values; one reduction of each kind combines them. Labels
are summarised as class counts when they are few integers, else like a feature.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from ..errors import MpigdError
from ..parallel import (
    allreduce_sum,
    gather_to_root,
    min_max_over_ranks,
    on_root,
    rank_local,
)
from ..partition import block_range, rows_per_block
from .dataset import READ_ERRORS, DatasetInfo, check_codes, inspect_dataset, read_csr_rows
from .outputs import read_attrs

#: Most distinct integer labels reported as classes.
MAX_CLASSES = 20

#: Most features whose statistics are computed. Each costs about 200 bytes on every rank
#: (running minima, maxima, sums and counts, their reductions and the JSON lists), so a
#: CSR file 2^40 features wide would ask for hundreds of terabytes: beyond this width the
#: summary leaves the per-feature statistics out and says so.
MAX_STAT_FEATURES = 2**22


def _layout(path: str, keys: list[str]) -> dict:
    """Shapes, dtypes, chunks, compression, size and attributes. Collective: no."""
    try:
        with h5py.File(path, "r") as f:
            datasets = {key: _dataset_layout(f[key]) for key in keys}
            names = f[keys[0]].attrs.get("feature_names", f.attrs.get("feature_names"))
            return {
                "file_bytes": os.path.getsize(path),
                "attributes": {k: v for k, v in read_attrs(f).items() if np.ndim(v) == 0},
                "datasets": datasets,
                "feature_names": None if names is None else [str(n) for n in names],
            }
    except READ_ERRORS as exc:
        raise MpigdError(f"cannot read {path}: {exc}") from exc


def _dataset_layout(obj) -> dict:
    """Shape, dtype, chunks and compression; of ``data`` for a CSR group."""
    shape = list(obj.shape) if isinstance(obj, h5py.Dataset) else list(obj.attrs["shape"])
    values = obj if isinstance(obj, h5py.Dataset) else obj["data"]
    out = {
        "shape": [int(s) for s in shape],
        "dtype": str(values.dtype),
        "chunks": list(values.chunks) if values.chunks else "contiguous",
        "compression": values.compression or "none",
    }
    return out if isinstance(obj, h5py.Dataset) else {**out, "format": "csr"}


class _Running:
    """Minimum, maximum, sum and non-finite count per column, over blocks."""

    def __init__(self, width: int):
        self.low = np.full(width, np.inf)
        self.high = np.full(width, -np.inf)
        self.sum = np.zeros(width)
        self.bad = np.zeros(width)

    def add(self, block: np.ndarray) -> None:
        finite = np.isfinite(block)
        self.bad += block.shape[0] - finite.sum(axis=0)
        clean = np.where(finite, block, np.nan)
        if len(block):
            self.low = np.fmin(self.low, np.nanmin(clean, axis=0, initial=np.inf))
            self.high = np.fmax(self.high, np.nanmax(clean, axis=0, initial=-np.inf))
            self.sum += np.nansum(clean, axis=0)

    def add_csr(self, X) -> None:
        """The same for CSR rows: stored values per column, and a 0 for each column that
        has a row without a value."""
        columns, values = X.indices, X.data.astype(np.float64)
        finite = np.isfinite(values)
        self.bad += np.bincount(columns, weights=~finite, minlength=len(self.sum))
        self.sum += np.bincount(
            columns, weights=np.where(finite, values, 0), minlength=len(self.sum)
        )
        np.fmin.at(self.low, columns[finite], values[finite])
        np.fmax.at(self.high, columns[finite], values[finite])
        has_zero = np.bincount(columns, minlength=len(self.sum)) < X.shape[0]
        self.low[has_zero] = np.fmin(self.low[has_zero], 0.0)
        self.high[has_zero] = np.fmax(self.high[has_zero], 0.0)

    def reduce(self, comm) -> dict:
        low, high = min_max_over_ranks(comm, self.low, self.high)
        sums = np.concatenate([self.sum, self.bad])
        allreduce_sum(comm, sums)
        width = len(self.sum)
        return {
            "min": low,
            "max": high,
            "sum": sums[:width],
            "non_finite": sums[width:],
        }


def describe(comm, path, x_key: str = "X", y_key: str | None = "y") -> dict:
    """Layout and statistics of ``path``; the same dict on every rank. The labels may be
    anything training reads (an anndata ``obs`` column, booleans, a categorical column's
    codes); per-feature statistics are left out (None) beyond :data:`MAX_STAT_FEATURES`
    features. Collective: yes."""
    with rank_local(comm):
        info = inspect_dataset(path, x_key, y_key)
    keys = [key for key in (x_key, info.y_key) if key]
    layout = on_root(comm, lambda: _layout(info.path, keys), share=True)
    if info.csr:
        summary = _describe_csr(comm, info, layout)
    else:
        summary = _describe_dense(comm, info, layout)
    if info.categorical and summary["classes"] is not None:
        names = on_root(comm, lambda: _category_names(info, summary["classes"]), share=True)
        summary["class_names"] = names
    return summary


def _feature_stats(info: DatasetInfo) -> _Running | None:
    """Running per-feature statistics, or None for a file too wide to keep them."""
    return _Running(info.n_features) if info.n_features <= MAX_STAT_FEATURES else None


def _describe_dense(comm, info: DatasetInfo, layout: dict) -> dict:
    """:func:`describe` for a dense X: each rank reads its block of rows in blocks (of the
    labels alone when the statistics are left out). Collective: yes."""
    start, stop = block_range(info.n_rows, comm.size, comm.rank)
    features, labels = _feature_stats(info), _Running(1)
    classes: dict[float, int] | None = {}
    rows = rows_per_block(8 * (info.n_features if features else 1))
    with rank_local(comm):
        try:
            with h5py.File(info.path, "r") as f:
                for a in range(start, stop, rows):
                    b = min(a + rows, stop)
                    if features:
                        features.add(f[info.x_key][a:b].astype(np.float64))
                    if info.y_key:
                        y = f[info.y_key][a:b].astype(np.float64).reshape(-1)
                        check_codes(info, y, a, b, missing=True)
                        labels.add(y[:, None])
                        classes = _count_classes(classes, y)
        except READ_ERRORS as exc:
            raise MpigdError(f"reading rows {start}:{stop} of {info.path} failed: {exc}") from exc
    return _summary(comm, info, layout, features, labels, classes)


def _category_names(info: DatasetInfo, classes: dict[str, int]) -> dict[str, str]:
    """The category of each code counted (a few single reads). Collective: no."""
    try:
        with h5py.File(info.path, "r") as f:
            categories = f[info.y_key.removesuffix("/codes") + "/categories"]
            names = {code: categories[int(float(code))] for code in classes if float(code) >= 0}
    except READ_ERRORS as exc:
        raise MpigdError(f"reading the categories of {info.path} failed: {exc}") from exc
    return {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in names.items()}


def _summary(comm, info: DatasetInfo, layout: dict, features, labels, classes) -> dict:
    """The statistics reduced over ranks, as :func:`describe` returns them. Collective: yes."""
    y_key = info.y_key
    summary = {
        "path": os.path.abspath(info.path),
        "rows": info.n_rows,
        "features": info.n_features,
        **layout,
        "feature_stats": None,
    }
    if features is None:
        summary["note"] = (
            f"per-feature statistics left out: {info.n_features:,} features are more than "
            f"the {MAX_STAT_FEATURES:,} data info computes them for"
        )
    else:
        x_stats = features.reduce(comm)
        summary["feature_stats"] = {
            "min": x_stats["min"].tolist(),
            "mean": (x_stats["sum"] / info.n_rows).tolist(),
            "max": x_stats["max"].tolist(),
            "non_finite": x_stats["non_finite"].astype(int).tolist(),
        }
    if y_key:
        y_stats = labels.reduce(comm)
        summary["label_stats"] = {
            "min": float(y_stats["min"][0]),
            "mean": float(y_stats["sum"][0] / info.n_rows),
            "max": float(y_stats["max"][0]),
            "non_finite": int(y_stats["non_finite"][0]),
        }
        summary["classes"] = _merge_classes(comm, classes)
    return summary


def _describe_csr(comm, info: DatasetInfo, layout: dict) -> dict:
    """:func:`describe` for a CSR group: each rank reads its rows (balanced by values),
    and the summary adds the sparsity: values per row and per feature, density."""
    features, labels = _feature_stats(info), _Running(1)
    classes: dict[float, int] | None = {}
    with rank_local(comm):
        X, start, stop = read_csr_rows(info, comm.rank, comm.size, finite=False)
        try:
            with h5py.File(info.path, "r") as f:
                y = f[info.y_key][start:stop].astype(np.float64).reshape(-1) if info.y_key else None
        except READ_ERRORS as exc:
            raise MpigdError(f"reading rows {start}:{stop} of {info.path} failed: {exc}") from exc
        if y is not None:
            check_codes(info, y, start, stop, missing=True)
    if features:
        features.add_csr(X)
    if y is not None:
        labels.add(y[:, None])
        classes = _count_classes(classes, y)
    row_nnz = X.getnnz(axis=1)
    stored = None
    if features:
        stored = np.bincount(X.indices, minlength=info.n_features).astype(np.float64)
        allreduce_sum(comm, stored)
    low, high = min_max_over_ranks(
        comm,
        [row_nnz.min() if len(row_nnz) else np.inf],
        [row_nnz.max() if len(row_nnz) else -np.inf],
    )
    summary = _summary(comm, info, layout, features, labels, classes)
    summary["sparse"] = {
        "nnz": info.csr.nnz,
        "density": info.csr.nnz / (info.n_rows * info.n_features),
        "values_per_row": {
            "min": int(low[0]),
            "mean": info.csr.nnz / info.n_rows,
            "max": int(high[0]),
        },
        "values_per_feature": None if stored is None else stored.astype(int).tolist(),
    }
    return summary


def _count_classes(classes, y):
    """Add a block's label counts, or give up (None) past MAX_CLASSES or on non-integers."""
    if classes is None or not np.all(y == np.round(y)):
        return None
    values, counts = np.unique(y, return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        classes[value] = classes.get(value, 0) + count
    return classes if len(classes) <= MAX_CLASSES else None


def _merge_classes(comm, classes) -> dict[str, int] | None:
    """Class counts over all ranks (as {label: rows}), or None for continuous labels.
    Collective: yes."""
    gathered = gather_to_root(comm, classes)

    def merge() -> dict[float, int] | None:
        if any(part is None for part in gathered):
            return None
        merged: dict[float, int] = {}
        for part in gathered:
            for value, count in part.items():
                merged[value] = merged.get(value, 0) + count
        return merged if len(merged) <= MAX_CLASSES else None

    merged = on_root(comm, merge, share=True)
    return None if merged is None else {f"{k:g}": v for k, v in sorted(merged.items())}
