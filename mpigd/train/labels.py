"""What the labels of all ranks' rows decide before training: the class count, warnings
for classes with no rows, and the row weights (the file's, times class weights)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import MpigdError
from ..io.dataset import LocalData
from ..kernels.losses import BINARY, CLASSIFIERS, model_name
from ..parallel import allreduce_sum, gather_all, max_over_ranks, warn0


class EmptyClassWarning(UserWarning):
    """A class of a classifier has no rows in the training data."""


def n_classes(comm, local: LocalData) -> int:
    """K = the largest label over all ranks + 1 (one Allreduce). Collective: yes."""
    largest = local.y.max() if len(local.y) else -1.0
    n_classes = int(max_over_ranks(comm, [largest])[0]) + 1
    if n_classes < 2:
        raise MpigdError(f"softmax needs at least 2 classes; the labels have {n_classes}")
    return n_classes


def warn_about_empty_classes(comm, local: LocalData, n_classes: int) -> None:
    """Warn (rank 0) when a class has no rows: legal, but its scores are pushed down
    without bound unless l2 > 0, and the model can never predict it. Collective: yes."""
    counts = np.bincount(local.y.astype(np.intp), minlength=n_classes).astype(np.float64)
    allreduce_sum(comm, counts)
    empty = np.flatnonzero(counts == 0)
    if len(empty) == 0:
        return
    if n_classes == 2:
        only = 1 - int(empty[0])
        message = f"every label is {only}: the model can only learn to predict {only}"
    else:
        listed = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
        message = (
            f"{len(empty)} of the {n_classes} classes have no rows ({listed}); the model "
            "never predicts them"
        )
    warn0(comm, f"{message} (with l2 = 0 its parameters grow without bound)", EmptyClassWarning)


def balanced(counts: np.ndarray) -> np.ndarray:
    """Balanced class weights ``S / (K S_k)`` from the weight ``S_k`` of each class k
    (the last axis; 0 for a class with none), as scikit-learn's
    ``class_weight="balanced"``; (F, K) counts give each model its own. Collective: no."""
    total = counts.sum(axis=-1, keepdims=True)
    classes = counts.shape[-1]
    return np.divide(total, classes * counts, out=np.zeros_like(counts), where=counts > 0)


def row_weights(comm, local: LocalData, class_weight, n_classes: int) -> np.ndarray | None:
    """Row weights: the file's, times balanced class weights ``S / (K S_k)``, with ``S_k``
    the weight of class k (its count without row weights; sums by Allreduce), as
    scikit-learn's ``class_weight="balanced"`` does. Collective: yes."""
    weights = local.weights
    if class_weight == "balanced":
        labels = local.y.astype(np.intp)
        counts = np.bincount(labels, weights=weights, minlength=n_classes).astype(np.float64)
        allreduce_sum(comm, counts)
        by_class = balanced(counts)[labels]
        weights = by_class if weights is None else weights * by_class
    if weights is not None:
        total = np.array([weights.sum()])
        allreduce_sum(comm, total)
        if not total[0] > 0:
            raise MpigdError(
                f"the row weights sum to {total[0]:g}: at least one weight must be more than zero"
            )
    return weights


def check_labels(labels: str, model: str) -> None:
    """Raise for a ``labels`` option that ``model`` cannot take. Collective: no."""
    if labels not in ("index", "auto"):
        raise MpigdError(f"labels must be 'index' or 'auto', got {labels!r}")
    if labels == "auto" and model not in CLASSIFIERS:
        raise MpigdError(
            f"--labels auto is for classifiers ({', '.join(CLASSIFIERS)}): {model} regression "
            "takes its labels as numbers"
        )


def global_classes(comm, y: np.ndarray) -> np.ndarray:
    """The sorted union of every rank's label values, which must be numbers on every
    rank or on none. Collective: yes (every rank sees the same and raises alike)."""
    per_rank = gather_all(comm, (np.asarray(y).dtype.kind in "iufb", np.unique(y)))
    if len({numeric for numeric, values in per_rank if len(values)}) > 1:
        raise MpigdError("Mix of label input types across ranks: numbers on some, not others")
    return np.unique(np.concatenate([values for _, values in per_rank]))


def encode(comm, local: LocalData, model: str) -> tuple[LocalData, np.ndarray]:
    """Map any label values to class indices 0 .. K-1 in sorted order (as scikit-learn's
    ``classes_``): this rank's rows with their indices, and the values. Logistic
    regression and the SVM need exactly 2 values, softmax at least 2. Collective: yes."""
    classes = global_classes(comm, local.y)
    wanted = "exactly 2" if model in BINARY else "at least 2"
    if (model in BINARY and len(classes) != 2) or len(classes) < 2:
        shown = ", ".join(f"{c:g}" for c in classes[:10]) + (" ..." if len(classes) > 10 else "")
        raise MpigdError(
            f"{model_name(model)} needs {wanted} label values; '{local.info.y_key}' has "
            f"{len(classes)}: {shown}"
        )
    y = np.searchsorted(classes, local.y).astype(np.float64)
    return replace(local, y=y), classes


def file_classes(comm, path, x_key: str = "X", y_key: str = "y") -> np.ndarray:
    """The label values of a file's rows: each rank reads its block of ``y``.
    Collective: yes."""
    from ..io.rows import read_labels

    return global_classes(comm, read_labels(comm, path, x_key, y_key))
