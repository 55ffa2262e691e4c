"""Which fold each row belongs to, and what each fold's training rows imply.

A row's fold is ``hash(seed, global row index) mod F`` (:func:`hash_folds`), so it
depends neither on the rank count nor on how rows are split over ranks, or it is the
integer in a dataset of the file (:func:`read_fold_ids`, like scikit-learn's
``PredefinedSplit``). Model j of a cross-validation trains on the rows outside fold j;
its class weights and feature scaling come from those rows only (:func:`per_fold`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MpigdError, literal
from ..io.dataset import LocalData
from ..io.hdf5 import READ_ERRORS, get_dataset, open_input
from ..objective import Scaling, moment_sums, scaling_from_sums
from ..parallel import allreduce_sum, rank_local

_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def check_folds(folds: int, n_rows: int | None = None) -> None:
    """Raise for a fold count that cannot cross-validate. Collective: no."""
    if folds < 2:
        raise MpigdError(f"cross-validation needs at least 2 folds, got {folds}")
    if n_rows is not None and folds > n_rows:
        raise MpigdError(f"{folds} folds need at least {folds} rows; the data has {n_rows}")


def hash_folds(seed: int, start: int, stop: int, folds: int) -> np.ndarray:
    """Folds of the global rows ``start:stop``: SplitMix64 (Steele, Lea & Flood, OOPSLA
    2014) of ``seed`` and the row index, mod ``folds``; int64, shape (stop - start,).
    Collective: no."""
    with np.errstate(over="ignore"):
        i = np.arange(start, stop, dtype=np.uint64) + np.uint64(1)
        z = np.uint64(seed % 2**64) + i * np.uint64(_GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
        z ^= z >> np.uint64(31)
    return (z % np.uint64(folds)).astype(np.int64)


def read_fold_ids(comm, local: LocalData, key: str, folds: int) -> np.ndarray:
    """This rank's rows of the fold-id dataset ``key``: integers 0 .. folds - 1, one per
    row. Collective: yes (a bad value on any rank is one error on all)."""
    info = local.info
    with rank_local(comm):
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


@dataclass(frozen=True)
class FoldSetup:
    """What the rows outside each fold imply for its model; index j is model j."""

    rows: np.ndarray  # (F,) rows in each fold (validation rows of model j)
    class_weights: np.ndarray | None  # (F, classes), balanced class weights, or None
    scalings: list[Scaling] | None  # standardisation of each model's training rows
    training_classes: np.ndarray | None  # (F, classes) weight of each class, classifiers


def per_fold(
    comm, local: LocalData, fold, folds: int, n_classes: int, *, class_weight, shift
) -> FoldSetup:
    """Row counts per fold, and each model's class weights (``class_weight="balanced"``,
    as :func:`mpigd.train.labels.row_weights` computes them on its training rows), the
    weight of each class in its training rows (``n_classes`` > 0: a classifier) and
    feature scaling (with ``shift``, as :func:`mpigd.objective.standardization` does),
    in one ``Allreduce``. A fold with no rows is an error. Collective: yes."""
    n = local.X.shape[1]
    classes = n_classes
    blocks = [np.bincount(fold, minlength=folds).astype(np.float64)]
    if classes:
        index = fold * classes + local.y.astype(np.int64)
        counts = np.bincount(index, weights=local.weights, minlength=folds * classes)
        blocks.append(counts.astype(np.float64))
    if shift is not None:
        for j in range(folds):
            blocks.extend(moment_sums(local.X[fold == j], shift))
    sums = np.concatenate(blocks)
    allreduce_sum(comm, sums)
    rows, at = sums[:folds], folds
    empty = np.flatnonzero(rows == 0)
    if len(empty):
        raise MpigdError(
            f"fold {int(empty[0])} of {folds} has no rows; use fewer folds (or other fold ids)"
        )
    class_weights = train = None
    if classes:
        per_class = sums[at : at + folds * classes].reshape(folds, classes)
        at += folds * classes
        train = per_class.sum(axis=0) - per_class  # each model's training rows
    if class_weight:
        total = train.sum(axis=1, keepdims=True)
        class_weights = np.divide(total, classes * train, out=np.zeros_like(train), where=train > 0)
    scalings = None
    if shift is not None:
        moments = sums[at:].reshape(folds, 2, n)
        train_moments = moments.sum(axis=0) - moments
        scalings = [
            scaling_from_sums(train_moments[j, 0], train_moments[j, 1], rows.sum() - rows[j], shift)
            for j in range(folds)
        ]
    return FoldSetup(rows.astype(np.int64), class_weights, scalings, train)


def exclude_fold_rows(local: LocalData, fold: np.ndarray, held_out: int) -> LocalData:
    """This rank's rows outside fold ``held_out`` (a copy). Collective: no."""
    keep = fold != held_out
    weights = None if local.weights is None else local.weights[keep]
    return LocalData(local.info, local.start, local.stop, local.X[keep], local.y[keep], weights)


def fold_ids(comm, local: LocalData, folds: int, *, seed: int = 0, key: str | None = None):
    """Each of this rank's rows' fold: from dataset ``key``, else hashed with ``seed``.
    Collective: yes."""
    check_folds(folds, local.info.n_rows)
    if key is not None:
        return read_fold_ids(comm, local, key, folds)
    return hash_folds(seed, local.start, local.stop, folds)
