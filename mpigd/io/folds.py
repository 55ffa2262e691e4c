"""Each row's fold in a cross-validation, for this rank's rows: hashed from the global
row index (:func:`mpigd.partition.hash_folds`), or read from an integer dataset of the
file (like scikit-learn's ``PredefinedSplit``); and the rows outside a fold."""

from __future__ import annotations

import numpy as np

from ..errors import MpigdError, literal
from ..parallel import rank_local
from ..partition import check_folds, hash_folds
from .dataset import LocalData
from .hdf5 import READ_ERRORS, get_dataset, open_input


def fold_ids(comm, local: LocalData, folds: int, *, seed: int = 0, key: str | None = None):
    """Each of this rank's rows' fold: from dataset ``key``, else hashed with ``seed``.
    Collective: yes."""
    check_folds(folds, local.info.n_rows)
    if key is not None:
        return read_fold_ids(comm, local, key, folds)
    return hash_folds(seed, local.start, local.stop, folds)


def read_fold_ids(comm, local: LocalData, key: str, folds: int) -> np.ndarray:
    """This rank's rows of the fold-id dataset ``key``: integers 0 .. folds - 1, one per
    row. Collective: yes (a bad value on any rank is one error on all)."""
    info = local.info
    with rank_local(comm):
        if info.text:
            raise MpigdError(
                f"fold ids '{key}' come from a dataset of an HDF5 file, and {info.path} is "
                "text: convert it (mpigd data convert) and add the dataset, or use hashed folds"
            )
        try:
            with open_input(info.path) as f:
                dataset = get_dataset(f, key)
                if dataset.shape not in ((info.n_rows,), (info.n_rows, 1)):
                    raise MpigdError(
                        f"{info.path}: fold ids '{key}' have shape {dataset.shape}; they "
                        f"must be one integer per row ({info.n_rows},)"
                    )
                if dataset.dtype.kind not in "iuf":
                    raise MpigdError(
                        f"{info.path}: fold ids '{key}' have dtype {dataset.dtype}; they "
                        "must be integers"
                    )
                values = dataset.astype(np.float64)[local.start : local.stop].reshape(-1)
        except READ_ERRORS as exc:
            raise MpigdError(f"reading fold ids '{key}' of {info.path} failed: {exc}") from exc
        bad = ~((values >= 0) & (values < folds) & (values == np.round(values)))
        if bad.any():
            raise MpigdError.in_rows(
                f"{literal(info.path)}: fold ids '{literal(key)}' must be integers 0 .. "
                f"{folds - 1} (--folds {folds}); found {{count}} other values (e.g. "
                "{example}) in rows {rows}",
                np.count_nonzero(bad),
                local.start,
                local.stop,
                f"{values[bad][0]:g}",
            )
    return values.astype(np.int64)


def exclude_fold_rows(local: LocalData, fold: np.ndarray, held_out: int) -> LocalData:
    """This rank's rows outside fold ``held_out`` (a copy). Collective: no."""
    keep = fold != held_out
    weights = None if local.weights is None else local.weights[keep]
    return LocalData(local.info, local.start, local.stop, local.X[keep], local.y[keep], weights)
