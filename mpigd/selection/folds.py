"""What each fold's training rows imply for its model: the rows outside fold j train
model j of a cross-validation, and its class weights and feature scaling come from those
rows only (:func:`per_fold`). Which fold a row is in: :mod:`mpigd.io.folds`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MpigdError
from ..io.dataset import LocalData
from ..io.stream import chunks
from ..parallel import allreduce_sum, rank_local
from ..scaling import Scaling, moment_sums, scaling_from_sums
from ..train.labels import balanced


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
    feature scaling (with ``shift``, as :func:`mpigd.scaling.standardization` does),
    in one ``Allreduce``. A fold with no rows is an error. Collective: yes."""
    n = local.X.shape[1]
    classes = n_classes
    blocks = [np.bincount(fold, minlength=folds).astype(np.float64)]
    if classes:
        index = fold * classes + local.y.astype(np.int64)
        counts = np.bincount(index, weights=local.weights, minlength=folds * classes)
        blocks.append(counts.astype(np.float64))
    if shift is not None:
        moments = np.zeros((folds, 2, n))
        with rank_local(comm):  # rows streamed from disk: a read that fails, on every rank
            for rows, X_b in chunks(local.X):
                for j in range(folds):
                    moments[j] += moment_sums(X_b[fold[rows] == j], shift)
        blocks.append(moments.ravel())
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
        class_weights = balanced(train)
    scalings = None
    if shift is not None:
        moments = sums[at:].reshape(folds, 2, n)
        train_moments = moments.sum(axis=0) - moments
        scalings = [
            scaling_from_sums(train_moments[j, 0], train_moments[j, 1], rows.sum() - rows[j], shift)
            for j in range(folds)
        ]
    return FoldSetup(rows.astype(np.int64), class_weights, scalings, train)
